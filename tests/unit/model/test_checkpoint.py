import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from llamaops.platform.config import ModelConfig, RopeScaling
from llamaops.platform.model import Transformer, checkpoint
from llamaops.platform.model.checkpoint import CONFIG_FILE, WEIGHTS_FILE, ModelDirectoryError, load_model, save_model
from llamaops.platform.store.manifest import MANIFEST_FILE, read_manifest, seal

CFG = ModelConfig(
    dim=64,
    n_layers=2,
    n_heads=4,
    n_kv_heads=2,
    ffn_hidden_dim=160,
    vocab_size=300,
    max_seq_len=128,
    rope_scaling=RopeScaling(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_seq_len=32),
)


@pytest.fixture(scope="module")
def model() -> Transformer:
    m = Transformer(CFG)
    m.init_weights(seed=0)
    return m.eval()


@pytest.fixture
def saved(model, tmp_path):
    return save_model(model, tmp_path / "native")


def test_roundtrip_gives_identical_tensors_buffers_and_logits(model, saved):
    assert sorted(p.name for p in saved.iterdir()) == sorted([CONFIG_FILE, MANIFEST_FILE, WEIGHTS_FILE])
    header = json.loads((saved / CONFIG_FILE).read_text())
    assert header["format_version"] == checkpoint.FORMAT_VERSION and header["config"]["dim"] == 64
    loaded = load_model(saved).eval()
    assert loaded.cfg == CFG
    expected, got = model.state_dict(), loaded.state_dict()
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    assert torch.equal(loaded.rotary, model.rotary)
    assert not any(p.is_meta for p in loaded.parameters())
    tokens = torch.randint(0, CFG.vocab_size, (2, 100))
    with torch.no_grad():
        assert torch.equal(loaded(tokens), model(tokens))


def test_load_can_cast(saved):
    loaded = load_model(saved, dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    assert loaded.rotary.dtype == torch.float32


def test_existing_destination_needs_overwrite(model, saved, tmp_path):
    with pytest.raises(ModelDirectoryError, match="not empty"):
        save_model(model, saved)
    (saved / "stale").write_text("x")
    save_model(model, saved, overwrite=True)
    assert not (saved / "stale").exists() and (saved / WEIGHTS_FILE).exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    save_model(model, empty)
    assert sorted(tmp_path.iterdir()) == [empty, saved]  # no temp siblings left


def test_failed_save_leaves_no_directory(model, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_model(model, tmp_path / "native")
    assert list(tmp_path.iterdir()) == []


def _read_slices(directory) -> None:
    with checkpoint.weight_slices(directory):
        pass


def _resealed(directory) -> None:
    """A directory edited on purpose, its manifest re-written: checks past the manifest's are reached."""
    (directory / MANIFEST_FILE).unlink()
    seal(directory)


def _one_line_error(directory, match: str) -> str:
    """The error both readers give: the whole model's (load_model) and a shard reader's (weight_slices)."""
    for read in (load_model, _read_slices):
        with pytest.raises(ModelDirectoryError, match=match) as info:
            read(directory)
        assert "\n" not in str(info.value)
    return str(info.value)


def test_a_box_read_through_weight_slices_is_that_box_of_the_tensor(model, saved):
    with checkpoint.weight_slices(saved) as (cfg, slices):
        assert cfg == CFG and slices.keys() == model.state_dict().keys()
        assert torch.equal(slices["output.weight"][10:20, 8:16], model.output.weight[10:20, 8:16])
        assert torch.equal(slices["norm.weight"][3:5], model.norm.weight[3:5])


def test_missing_inputs_are_one_line_errors(saved, tmp_path):
    assert str(tmp_path / "nope") in _one_line_error(tmp_path / "nope", "is not a directory")
    (saved / WEIGHTS_FILE).unlink()
    _one_line_error(saved, "model.safetensors is missing")
    (saved / CONFIG_FILE).unlink()
    _one_line_error(saved, "llamaops_model.json is missing")


def test_corrupt_inputs_are_one_line_errors(saved):
    config, weights = saved / CONFIG_FILE, saved / WEIGHTS_FILE
    good_config = config.read_text()
    config.write_text("{not json")
    _resealed(saved)
    _one_line_error(saved, "corrupt")
    header = json.loads(good_config)
    config.write_text(json.dumps({**header, "format_version": 99}))
    _resealed(saved)
    _one_line_error(saved, "format version 99")
    config.write_text(json.dumps({**header, "config": {**header["config"], "n_heads": 5}}))
    _resealed(saved)
    _one_line_error(saved, "invalid model config")
    config.write_text(good_config)
    _resealed(saved)
    weights.write_bytes(weights.read_bytes()[:1000])
    _one_line_error(saved, "model.safetensors is corrupt")
    _resealed(saved)
    _one_line_error(saved, "model.safetensors is corrupt")


def test_weights_that_do_not_fit_the_config_are_one_line_errors(saved):
    config, weights = saved / CONFIG_FILE, saved / WEIGHTS_FILE
    header = json.loads(config.read_text())
    config.write_text(json.dumps({**header, "config": {**header["config"], "ffn_hidden_dim": 128}}))
    _resealed(saved)
    _one_line_error(saved, r"feed_forward.w1.weight has shape \[160, 64\] but the config needs \[128, 64\]")
    config.write_text(json.dumps({**header, "config": {**header["config"], "n_layers": 3}}))
    _resealed(saved)
    _one_line_error(saved, r"missing \['layers.2")
    config.write_text(json.dumps(header))
    tensors = load_file(weights)
    del tensors["norm.weight"]
    save_file(tensors, weights)
    _resealed(saved)
    _one_line_error(saved, r"missing \['norm.weight'\]")


def test_cli_reports_model_directory_errors_as_usage_errors():
    from llamaops.cli.errors import is_user_error

    assert is_user_error(ModelDirectoryError("x"))


def _groups(model: Transformer, count: int) -> list[dict[str, torch.Tensor]]:
    names = list(model.state_dict())
    return [{name: model.state_dict()[name] for name in names[i::count]} for i in range(count)]


def test_a_model_written_in_groups_loads_whole_and_a_missing_weights_file_is_named(model, tmp_path):
    written = checkpoint.write_model_shards(CFG, _groups(model, 3), 3, tmp_path / "sharded")
    assert sorted(p.name for p in written.glob("*.safetensors")) == [checkpoint.shard_file(i, 3) for i in (1, 2, 3)]
    for (name, want), got in zip(model.state_dict().items(), load_model(written).state_dict().values()):
        assert torch.equal(want, got), name
    (written / checkpoint.shard_file(2, 3)).unlink()
    with pytest.raises(ModelDirectoryError, match=r"model-00002-of-00003.safetensors is missing"):
        load_model(written)


def test_fewer_groups_than_announced_leave_no_model_directory(model, tmp_path):
    with pytest.raises(ValueError, match="2 groups of tensors given, 3 announced"):
        checkpoint.write_model_shards(CFG, _groups(model, 2), 3, tmp_path / "short")
    assert not (tmp_path / "short").exists()


@pytest.mark.parametrize("named", ["../outside.safetensors", "/etc/passwd", "sub/dir.safetensors", ".."])
def test_a_weights_index_naming_a_path_outside_the_directory_is_refused(tmp_path, named):
    from llamaops.platform.model.checkpoint import INDEX_FILE, weight_files
    from llamaops.platform.model.hf import INDEX_FILE as HF_INDEX_FILE
    from llamaops.platform.model.hf import _weight_files as hf_weight_files

    (tmp_path / "outside.safetensors").write_bytes(b"")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / INDEX_FILE).write_text(json.dumps({"weight_map": {"tok_embeddings.weight": named}}))
    seal(model_dir)
    with pytest.raises(ModelDirectoryError, match="which is not a file in"):
        weight_files(model_dir, read_manifest(model_dir))
    (model_dir / HF_INDEX_FILE).write_text(json.dumps({"weight_map": {"model.embed_tokens.weight": named}}))
    with pytest.raises(ModelDirectoryError, match="which is not a file in"):
        hf_weight_files(model_dir)


def test_weights_files_are_readable_as_the_umask_allows_not_owner_only(model, tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    try:
        directory = save_model(model, tmp_path / "shared")
    finally:
        os.umask(umask)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in directory.iterdir() if path.is_file()}
    assert modes and set(modes.values()) == {0o644}, modes
