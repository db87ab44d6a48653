"""Every command that reads a model takes the same references (platform/tracking/model_reference.py):
a registry alias or version of a model on S3; a missing alias is one line."""
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from llamaops.cli.main import app
from llamaops.platform.config.model import ModelConfig
from llamaops.platform.model import Transformer
from llamaops.platform.model.checkpoint import save_model
from llamaops.platform.model.hf import load_hf
from llamaops.platform.store import staged_output
from llamaops.platform.tracking import register_model

runner = CliRunner()


@pytest.fixture
def published(s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Transformer]:
    """A small model with the tokenizer's vocabulary, on S3."""
    monkeypatch.setenv("LLAMAOPS_HOME", str(tmp_path / "home"))
    model = Transformer(ModelConfig(dim=32, n_layers=1, n_heads=2, n_kv_heads=1, ffn_hidden_dim=64, max_seq_len=512))
    model.init_weights(seed=0)
    uri = f"{s3_bucket}/models/refs"
    with staged_output(uri) as directory:
        save_model(model, directory, overwrite=True)
    return uri, model


@pytest.fixture
def registered(published, mlflow_server) -> tuple[str, Transformer]:
    """The model as the newest version of `refs` (the server lives for the session), alias production."""
    uri, model = published
    return register_model("refs", uri, alias="production", tracking_uri=mlflow_server.uri), model


def test_registry_references_reach_export_eval_and_averaging(registered, mlflow_server, tmp_path):
    version, model = registered
    tracking = ["--tracking-uri", mlflow_server.uri]
    exported = runner.invoke(app, ["model", "export-hf", "models:/refs@production", str(tmp_path / "hf"),
                                   "--dtype", "float32", *tracking])
    assert exported.exit_code == 0, exported.stderr
    assert exported.stdout.strip() == f"{tmp_path / 'hf'} (float32 weights)"
    hf_weights = load_hf(tmp_path / "hf").state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(hf_weights[name], tensor), name  # float32: exact

    needle = runner.invoke(app, ["eval", "needle", f"models:/refs/{version}", "--lengths", "64", "--depths", "0", "--json",
                                 *tracking])
    assert needle.exit_code == 0, needle.stderr
    assert f'"model": "models:/refs/{version}"' in needle.stdout

    averaged = runner.invoke(app, ["model", "average", f"models:/refs/{version}", "models:/refs@production",
                                   "--output", str(tmp_path / "avg"), *tracking])
    assert averaged.exit_code == 0, averaged.stderr


@pytest.mark.parametrize("command", [
    ["eval", "run", "models:/refs@missing", "--tasks", "mmlu_dev_de"],
    ["eval", "needle", "models:/refs@missing"],
    ["model", "export-hf", "models:/refs@missing", "DST"],
    ["model", "average", "models:/refs@production", "models:/refs@missing", "--output", "DST"],
], ids=["eval-run", "eval-needle", "export-hf", "average"])
def test_a_missing_alias_fails_every_command_in_one_line(registered, mlflow_server, tmp_path, command):
    argv = [str(tmp_path / "out") if part == "DST" else part for part in command]
    result = runner.invoke(app, [*argv, "--tracking-uri", mlflow_server.uri])
    assert result.exit_code == 2
    assert result.stderr == "error: model models:/refs@missing: registered model 'refs' has no alias 'missing'\n"
    assert not (tmp_path / "out").exists()


def test_model_list_shows_versions_aliases_and_gated_metrics(published, mlflow_server):
    from llamaops.platform.deploy.registration import METRIC_TAG
    from llamaops.platform.tracking import tracking_client

    uri, _ = published
    register_model("listed", uri, alias="production", tracking_uri=mlflow_server.uri)
    register_model("listed", uri, alias="candidate", tracking_uri=mlflow_server.uri)
    tracking_client(mlflow_server.uri).set_model_version_tag("listed", "2", METRIC_TAG + "validation_perplexity", "12.5")

    listed = runner.invoke(app, ["model", "list", "listed", "--tracking-uri", mlflow_server.uri, "--json"])
    assert listed.exit_code == 0, listed.stderr
    rows = [(r["name"], r["version"], r["aliases"], r["source"], r["metrics"]) for r in json.loads(listed.stdout)]
    assert rows == [("listed", "1", ["production"], uri, {}),
                    ("listed", "2", ["candidate"], uri, {"validation_perplexity": 12.5})]
    everything = runner.invoke(app, ["model", "list", "--tracking-uri", mlflow_server.uri]).stdout
    assert "models:/listed/2" in everything and "validation_perplexity=12.5" in everything
    missing = runner.invoke(app, ["model", "list", "nothing", "--tracking-uri", mlflow_server.uri])
    assert missing.exit_code == 2 and missing.stderr == (
        "error: no registered model 'nothing'; `llamaops model list` shows those there are\n")
