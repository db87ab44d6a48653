"""A checkpoint's files are checked against its SHA-256 manifest before they are parsed: a
same-size corruption of a data file fails the restore and the run resumes from the previous
checkpoint; damaged metadata is never unpickled; a checkpoint without a manifest is refused; a
reader checks only the blocks it reads."""
import json
import pickle
from pathlib import Path

import pytest
import torch

from llamaops.platform.model.transformer import Transformer
from llamaops.platform.store import ArtifactError
from llamaops.platform.store.uri import local_path
from llamaops.platform.train import safe_dcp
from llamaops.platform.train.checkpointing import (
    STATE_DIR,
    is_valid_checkpoint,
    latest_checkpoint,
    load_checkpoint_model,
    restore_checkpoint,
    step_uri,
)

from ..store.damage import overwrite_in_place
from .parallel_worker import MICRO
from .test_checkpoint_safety import _CreatesAFile
from .test_checkpointing import _saved

NANS = torch.full((1024,), float("nan")).numpy().tobytes()  # 1,024 float32 NaNs: 4 KiB


def _largest_data_file(root: str, step: int) -> Path:
    state = local_path(step_uri(root, step)) / STATE_DIR
    return max((p for p in state.iterdir() if p.suffix == ".distcp"), key=lambda p: p.stat().st_size)


def _fresh() -> tuple[Transformer, torch.optim.Optimizer]:
    model = Transformer(MICRO)
    return model, torch.optim.AdamW(model.parameters())


def test_a_same_size_corruption_of_a_data_file_fails_the_restore_and_resume_takes_the_previous_one(tmp_path: Path):
    root = (tmp_path / "ckpt").as_uri()
    _saved(root, [1, 2])
    data = _largest_data_file(root, 2)
    overwrite_in_place(data, data.stat().st_size // 2, NANS)
    with pytest.raises(ArtifactError, match=r"\.distcp is corrupt: its SHA-256 does not match manifest.json"):
        restore_checkpoint(root, 2, *map(lambda x: [x], _fresh()))

    from llamaops.platform.train.resume import resume_checkpoint

    model, optimizer = _fresh()
    progress = resume_checkpoint(root, [1, 2], [model], [optimizer])
    assert progress.step == 1 and latest_checkpoint(root, [1, 2]) == 1  # step 2 withdrawn
    for want, got in zip(load_checkpoint_model(root, 1).parameters(), model.parameters()):
        assert torch.equal(want, got)


def test_a_damaged_only_checkpoint_stops_the_resume_rather_than_train_from_its_partial_load(tmp_path: Path):
    root = (tmp_path / "ckpt").as_uri()
    _saved(root, [1])
    data = _largest_data_file(root, 1)
    overwrite_in_place(data, 0, NANS)
    from llamaops.platform.train.resume import resume_checkpoint

    with pytest.raises(ArtifactError, match="no earlier one is intact.*restart the run"):
        resume_checkpoint(root, [1], *map(lambda x: [x], _fresh()))
    assert latest_checkpoint(root, [1]) is None


def test_damaged_metadata_is_refused_before_it_is_unpickled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Even by a reader with no allow-list (plain pickle), the crafted bytes are never unpickled."""
    root = (tmp_path / "ckpt").as_uri()
    _saved(root, [1, 2])
    marker = tmp_path / "pwned"
    (local_path(step_uri(root, 2)) / STATE_DIR / ".metadata").write_bytes(pickle.dumps(_CreatesAFile(marker)))
    monkeypatch.setattr(safe_dcp, "_MetadataUnpickler", pickle.Unpickler)
    assert not is_valid_checkpoint(root, 2)
    assert latest_checkpoint(root, [1, 2]) == 1
    with pytest.raises(ArtifactError, match="damaged"):
        restore_checkpoint(root, 2, *map(lambda x: [x], _fresh()))
    assert not marker.exists()


def test_same_size_damage_to_progress_or_config_makes_the_checkpoint_skipped(tmp_path: Path):
    root = (tmp_path / "ckpt").as_uri()
    _saved(root, [1, 2])
    progress = local_path(step_uri(root, 2)) / "progress.json"
    text = progress.read_text()
    progress.write_text(text.replace('"cursor": 20', '"cursor": 99'))  # valid JSON, same size, wrong
    assert json.loads(progress.read_text())["cursor"] == 99
    assert latest_checkpoint(root, [1, 2]) == 1


def test_a_checkpoint_without_a_manifest_is_refused_with_what_to_do(tmp_path: Path):
    root = (tmp_path / "ckpt").as_uri()
    _saved(root, [1, 2])
    (local_path(step_uri(root, 2)) / "manifest.json").unlink()
    assert latest_checkpoint(root, [1, 2]) == 1
    with pytest.raises(ArtifactError, match="manifest.json is missing.*older llamaops.*delete it") as info:
        restore_checkpoint(root, 2, *map(lambda x: [x], _fresh()))
    assert "\n" not in str(info.value)


def test_the_manifest_names_every_file_every_rank_wrote(tmp_path: Path):
    root = (tmp_path / "ckpt").as_uri()
    _saved(root, [1])
    directory = local_path(step_uri(root, 1))
    listed = json.loads((directory / "manifest.json").read_text())["files"]
    files = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    assert listed.keys() == files - {"manifest.json", "_COMPLETE"}
    assert {"state/.metadata", "rng/rank_00000.pt", "progress.json", "model_config.json"} <= listed.keys()


def test_a_reader_checks_only_the_blocks_it_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from llamaops.platform.store import manifest as manifests

    monkeypatch.setattr(manifests, "BLOCK_BYTES", 4096)
    root = (tmp_path / "ckpt").as_uri()
    written = _saved(root, [1])
    directory = local_path(step_uri(root, 1))
    metadata = safe_dcp.read_metadata(directory / STATE_DIR, None)
    stored = {index.fqn: info for index, info in metadata.storage_data.items()}
    embedding, norm = stored["model.tok_embeddings.weight"], stored["model.norm.weight"]
    assert embedding.relative_path == norm.relative_path and embedding.length > 4 * 4096
    damaged_block = (embedding.offset + embedding.length // 2) // 4096
    assert damaged_block not in {norm.offset // 4096, (norm.offset + norm.length - 1) // 4096}
    overwrite_in_place(directory / STATE_DIR / embedding.relative_path, damaged_block * 4096, NANS)

    state = manifests.read_manifest(directory).under(STATE_DIR)
    part = {"model": {"norm.weight": torch.empty_like(written.norm.weight)}}
    safe_dcp.load(part, directory / STATE_DIR, True, state)  # its blocks are intact
    assert torch.equal(part["model"]["norm.weight"], written.norm.weight)
    assert state.hashed_bytes <= 3 * 4096 + len((directory / STATE_DIR / ".metadata").read_bytes())
    whole = {"model": {"tok_embeddings.weight": torch.empty_like(written.tok_embeddings.weight)}}
    with pytest.raises(manifests.ManifestError, match="is corrupt"):
        safe_dcp.load(whole, directory / STATE_DIR, True, state)


def test_a_checkpoint_is_not_published_unless_every_written_file_was_hashed(tmp_path: Path, monkeypatch):
    from llamaops.platform.train.hashing_writer import HashingWriter

    hashed = HashingWriter._hash
    monkeypatch.setattr(HashingWriter, "_hash", lambda self, names: hashed(self, {n for n in names if n != "__0_0.distcp"}))
    root = (tmp_path / "ckpt").as_uri()
    with pytest.raises(ArtifactError, match=r"no rank hashed state/__0_0.distcp; nothing was published"):
        _saved(root, [1])
    assert latest_checkpoint(root, [1]) is None and not local_path(step_uri(root, 1)).exists()
