import json

import pytest
from typer.testing import CliRunner

from llamaops.cli.main import app
from llamaops.platform.config import load_preset
from llamaops.platform.model.sizing import size_preset

runner = CliRunner()


def info(*args: str) -> dict:
    result = runner.invoke(app, ["model", "info", *args, "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_info_json_for_405b():
    report = info("405b")
    assert report["parameters"] == 405_853_388_800
    assert sum(report["parameters_breakdown"].values()) == report["parameters"]
    assert report["flops_per_token"] == pytest.approx(2.44e12, rel=0.1)
    assert report["memory_per_gpu_bytes"] == report["memory_breakdown"]["total_bytes"]
    assert report["fits"] is True and report["accelerator_memory_bytes"] == 80 * 2**30
    assert report["layout"] == {"tp": 8, "cp": 1, "pp": 16, "dp": 64, "activation_checkpointing": "none",
                                "param_dtype": "bf16", "compile": False,
                                "pp_schedule": "1f1b", "pp_stages_per_rank": 1, "pp_microbatches": 32, "accumulation_steps": 1,
                                "world_size": 8192}
    assert report["seq_len"] == 8192 and report["mfu"] == 0.4
    assert report == json.loads(json.dumps(size_preset(load_preset("405b")).to_dict()))


def test_info_options_reach_the_estimate():
    base = info("full-405b")
    long = info("full-405b", "--stage", "long_context")
    assert long["seq_len"] == 131_072 and long["layout"]["cp"] == 16
    assert info("full-405b", "--mfu", "0.2")["training_days"] == pytest.approx(2 * base["training_days"])
    assert info("full-405b", "--seq-len", "4096")["flops_per_token"] < base["flops_per_token"]
    checkpointed = info("full-405b", "--set", "pretrain.layout.activation_checkpointing=true")
    assert checkpointed["memory_per_gpu_bytes"] < base["memory_per_gpu_bytes"] / 3


def test_info_text_report():
    result = runner.invoke(app, ["model", "info", "full-405b"])
    assert result.exit_code == 0
    assert "405,853,388,800" in result.stdout
    assert "TP 8 x CP 1 x PP 16 x DP 128 = 16,384 GPUs" in result.stdout
    assert "fits" in result.stdout and "days" in result.stdout


def test_info_rejects_a_bad_mfu_as_a_usage_error():
    result = runner.invoke(app, ["model", "info", "tiny", "--mfu", "0"])
    assert result.exit_code == 2


def test_export_then_import_hf_roundtrips_a_tiny_random_model(tmp_path):
    import torch

    from llamaops.platform.config import ModelConfig
    from llamaops.platform.model import Transformer
    from llamaops.platform.model.checkpoint import load_model, save_model
    from llamaops.platform.model.hf import load_hf

    cfg = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden_dim=160, vocab_size=300, max_seq_len=64)
    model = Transformer(cfg)
    model.init_weights(seed=0)
    save_model(model, tmp_path / "native")

    exported = runner.invoke(app, ["model", "export-hf", str(tmp_path / "native"), str(tmp_path / "hf")])
    assert exported.exit_code == 0, exported.stderr
    assert exported.stdout.strip() == f"{tmp_path / 'hf'} (bfloat16 weights)"
    assert (tmp_path / "hf" / "config.json").is_file()
    imported = runner.invoke(app, ["model", "import-hf", str(tmp_path / "hf"), str(tmp_path / "back")])
    assert imported.exit_code == 0, imported.stderr

    back = load_model(tmp_path / "back").state_dict()
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(back[name], tensor.to(torch.bfloat16), rtol=0, atol=0, msg=name)

    again = runner.invoke(app, ["model", "import-hf", str(tmp_path / "hf"), str(tmp_path / "back")])
    assert again.exit_code == 2
    assert again.stderr.startswith("error: ") and again.stderr.count("\n") == 1 and "not empty" in again.stderr
    assert runner.invoke(app, ["model", "import-hf", str(tmp_path / "hf"), str(tmp_path / "back"), "--overwrite"]).exit_code == 0
    missing = runner.invoke(app, ["model", "export-hf", str(tmp_path / "nowhere"), str(tmp_path / "hf2")])
    assert missing.exit_code == 2 and f"model {tmp_path / 'nowhere'}: does not exist" in missing.stderr
    full = runner.invoke(app, ["model", "export-hf", str(tmp_path / "native"), str(tmp_path / "hf32"), "--dtype", "float32"])
    assert full.stdout.strip() == f"{tmp_path / 'hf32'} (float32 weights)"
    assert {t.dtype for t in load_hf(tmp_path / "hf32").state_dict().values()} == {torch.float32}


def test_seal_writes_the_manifest_of_a_model_directory_that_has_none(tmp_path):
    from llamaops.platform.config import ModelConfig
    from llamaops.platform.model import Transformer
    from llamaops.platform.model.checkpoint import load_model, save_model

    cfg = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden_dim=160, vocab_size=300, max_seq_len=64)
    directory = save_model(Transformer(cfg), tmp_path / "native")
    (directory / "manifest.json").unlink()
    refused = runner.invoke(app, ["model", "export-hf", str(directory), str(tmp_path / "hf")])
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1 and "llamaops model seal" in refused.stderr
    sealed = runner.invoke(app, ["model", "seal", str(directory)])
    assert sealed.exit_code == 0, sealed.stderr
    assert load_model(directory).cfg == cfg
    again = runner.invoke(app, ["model", "seal", str(directory)])
    assert again.exit_code == 2 and "already exists" in again.stderr


@pytest.mark.parametrize("reference, reason", [
    ("typo", "does not exist; pass models:/NAME@ALIAS"),
    ("models:/x@production", "there is no model registry at sqlite:///"),
])
def test_a_reference_to_no_model_is_one_line_and_creates_no_registry(tmp_path, monkeypatch, reference, reason):
    monkeypatch.setenv("LLAMAOPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["model", "export-hf", reference, str(tmp_path / "hf")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: model {reference}: {reason}")
    assert not (tmp_path / "home" / "mlflow.db").exists() and not (tmp_path / "hf").exists()
