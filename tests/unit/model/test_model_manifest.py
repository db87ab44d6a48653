"""A model directory's files are checked against its SHA-256 manifest: a same-size corruption of
its weights (1,024 NaNs in the embedding) is refused by load_model and by a shard reader, in one
line; a reader of a box checks only the blocks it reads; a directory without a manifest is
refused until re-created or sealed."""
import json
import struct
from pathlib import Path

import pytest
import torch

from llamaops.platform.model import checkpoint
from llamaops.platform.model.checkpoint import ModelDirectoryError, load_model, save_model, write_model_shards
from llamaops.platform.model.transformer import Transformer

from ..store.damage import overwrite_in_place
from .test_checkpoint import CFG

NANS = torch.full((1024,), float("nan")).numpy().tobytes()  # 1,024 float32 NaNs: 4 KiB


@pytest.fixture(scope="module")
def model() -> Transformer:
    m = Transformer(CFG)
    m.init_weights(seed=0)
    return m


def _written(model: Transformer, directory: Path, groups: int) -> Path:
    if groups == 1:
        return save_model(model, directory)
    names = list(model.state_dict())
    shards = [{name: model.state_dict()[name] for name in names[i::groups]} for i in range(groups)]
    return write_model_shards(CFG, shards, groups, directory)


def _span(directory: Path, tensor: str) -> tuple[Path, int, int]:
    """The weights file holding `tensor`, and its first byte and length there."""
    for path in sorted(directory.glob("*.safetensors")):
        with open(path, "rb") as stream:
            (length,) = struct.unpack("<Q", stream.read(8))
            header = json.loads(stream.read(length))
        if tensor in header:
            begin, end = header[tensor]["data_offsets"]
            return path, 8 + length + begin, end - begin
    raise KeyError(tensor)


@pytest.mark.parametrize("groups", [1, 3])
def test_1024_nans_in_the_embedding_are_refused_by_every_reader(model, tmp_path, groups):
    directory = _written(model, tmp_path / "model", groups)
    path, start, length = _span(directory, "tok_embeddings.weight")
    assert length > len(NANS)
    overwrite_in_place(path, start, NANS)
    with pytest.raises(ModelDirectoryError, match=f"{path.name} is corrupt.*re-create the model directory") as info:
        load_model(directory)
    assert "\n" not in str(info.value)
    with pytest.raises(ModelDirectoryError, match=f"{path.name} is corrupt") as info:
        with checkpoint.weight_slices(directory) as (_, slices):  # one block: its header's, refused at open
            slices["tok_embeddings.weight"][0:4]
    assert "\n" not in str(info.value)


def test_a_box_read_checks_only_the_blocks_it_reads(model, tmp_path, monkeypatch):
    from llamaops.platform.store import manifest as manifests

    monkeypatch.setattr(manifests, "BLOCK_BYTES", 4096)
    directory = save_model(model, tmp_path / "model")
    path, start, length = _span(directory, "output.weight")
    rows, row_bytes = CFG.vocab_size, length // CFG.vocab_size
    assert row_bytes * 10 < 4096 < length // 4
    overwrite_in_place(path, start + length - 4096, NANS)  # the last rows' blocks
    with checkpoint.weight_slices(directory) as (_, slices):
        assert torch.equal(slices["output.weight"][0:10, 0:8], model.output.weight[0:10, 0:8])
        checked = slices["output.weight"]._manifest.hashed_bytes
        assert checked < 4 * 4096 + sum(p.stat().st_size for p in directory.glob("*.json"))
        with pytest.raises(ModelDirectoryError, match="is corrupt"):
            slices["output.weight"][rows - 10:rows, 0:8]


def test_a_model_directory_without_a_manifest_is_refused_until_sealed(model, tmp_path):
    directory = save_model(model, tmp_path / "model")
    (directory / "manifest.json").unlink()
    for read in (load_model, checkpoint.read_model_config):
        with pytest.raises(ModelDirectoryError, match="manifest.json is missing.*llamaops model seal") as info:
            read(directory)
        assert "\n" not in str(info.value)
    from llamaops.platform.model.checkpoint import seal_model_directory

    seal_model_directory(directory)
    assert torch.equal(load_model(directory).output.weight, model.output.weight)
    with pytest.raises(ModelDirectoryError, match="already exists"):
        seal_model_directory(directory)
