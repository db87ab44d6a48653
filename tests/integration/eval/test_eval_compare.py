"""`llamaops eval run --compare models:/NAME@production` against a real MLflow server and S3
(seaweedfs): both models' metrics, the paired delta, the relative gate, all in the tracked report."""
import json

import pytest
from typer.testing import CliRunner

from llamaops.cli.main import app
from llamaops.platform.config.model import ModelConfig
from llamaops.platform.model import Transformer
from llamaops.platform.model.checkpoint import save_model
from llamaops.platform.store import staged_output
from llamaops.platform.tokenizer import load_tokenizer
from llamaops.platform.tracking import register_model, tracking_client

runner = CliRunner()


def _model(seed: int) -> Transformer:
    cfg = ModelConfig(dim=16, n_layers=1, n_heads=2, n_kv_heads=1, ffn_hidden_dim=32,
                      vocab_size=load_tokenizer().vocab_size, max_seq_len=256, rope_scaling=None)
    model = Transformer(cfg)
    model.init_weights(seed=seed)
    return model


@pytest.fixture
def tasks(tmp_path) -> str:
    records = [{"question": f"q{i}", "choices": ["yes", "no", "maybe"], "answer": i % 3} for i in range(12)]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "choice.yaml").write_text("data_file: items.jsonl\n")
    (tmp_path / "sums.yaml").write_text("kind: generation\narithmetic: {items: 10}\nnum_fewshot: 2\nmax_new_tokens: 8\n")
    return f"{tmp_path / 'choice.yaml'},{tmp_path / 'sums.yaml'}"


def test_compare_with_the_production_model(s3_bucket, mlflow_server, tasks, tmp_path):
    production_uri = f"{s3_bucket}/models/production"
    with staged_output(production_uri) as folder:
        save_model(_model(seed=0), folder, overwrite=True)
    register_model("cmp", production_uri, alias="production", tracking_uri=mlflow_server.uri)
    candidate = save_model(_model(seed=1), tmp_path / "candidate")

    result = runner.invoke(app, ["eval", "run", str(candidate), "--tasks", tasks, "--compare", "models:/cmp@production",
                                 "--max-drop", "0.5", "--track", "--tracking-uri", mlflow_server.uri, "--json"])
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.stdout)
    compared = report["compare"]
    assert compared["baseline"] == "models:/cmp@production" and compared["source"] == production_uri
    assert set(compared["tasks"]) == {"choice", "sums"}
    assert set(compared["tasks"]["choice"]) == {"acc", "acc_norm"} and set(compared["tasks"]["sums"]) == {"exact_match"}
    acc = compared["tasks"]["choice"]["acc"]
    assert acc["model"] == report["tasks"]["choice"]["acc"]
    assert acc["delta"] == pytest.approx(acc["model"] - acc["baseline"])
    # The relative gate: one verdict per compared metric, failing exactly where the drop exceeds 0.5.
    drops = {v["metric"]: v for v in report["gate"]["verdicts"]}
    assert set(drops) == {"choice.acc.delta", "choice.acc_norm.delta", "sums.exact_match.delta"}
    assert all(v["passed"] == (v["value"] >= -0.5) for v in drops.values())
    assert (result.exit_code == 0) == report["gate"]["passed"]

    client = tracking_client(mlflow_server.uri)
    run = client.get_run(report["mlflow_run_id"])
    assert run.data.metrics["choice.acc.baseline"] == acc["baseline"]
    assert run.data.metrics["choice.acc.delta"] == pytest.approx(acc["delta"])
    assert run.data.params["compare"] == "models:/cmp@production"
    markdown = client.download_artifacts(run.info.run_id, "report.md", str(tmp_path))
    assert "## Compared with models:/cmp@production" in open(markdown).read()

    # The production model against itself: every delta and its paired error is exactly 0.
    itself = runner.invoke(app, ["eval", "run", str(tmp_path / "candidate"), "--tasks", tasks,
                                 "--compare", str(candidate), "--max-drop", "0", "--json"])
    assert itself.exit_code == 0, itself.output
    deltas = [d for metrics in json.loads(itself.stdout)["compare"]["tasks"].values() for d in metrics.values()]
    assert all(d["delta"] == 0 and d["delta_stderr"] == 0 for d in deltas)


def test_a_missing_production_model_is_one_line_unless_optional(mlflow_server, tasks, tmp_path):
    candidate = save_model(_model(seed=1), tmp_path / "candidate")
    args = ["eval", "run", str(candidate), "--tasks", tasks, "--compare", "models:/never-registered@production",
            "--tracking-uri", mlflow_server.uri, "--json"]
    strict = runner.invoke(app, args)
    assert strict.exit_code == 2 and strict.stderr.count("\n") == 1
    assert strict.stderr.startswith("error: cannot compare with models:/never-registered@production: registered model "
                                    "'never-registered' has no alias 'production'; pass --compare-optional")
    optional = runner.invoke(app, [*args, "--compare-optional"])
    assert optional.exit_code == 0, optional.output
    report = json.loads(optional.stdout)
    assert "has no alias 'production'" in report["compare"]["skipped"] and "choice" in report["tasks"]
    no_baseline = runner.invoke(app, ["eval", "run", str(candidate), "--tasks", tasks, "--max-drop", "0.1"])
    assert no_baseline.exit_code == 2 and no_baseline.stderr == "error: --max-drop needs --compare (the model whose metrics may not drop)\n"
