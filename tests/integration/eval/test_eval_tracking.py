"""`llamaops eval run --track` logs metrics, report.json and report.md to a real MLflow server."""
import json

from typer.testing import CliRunner

from llamaops.cli.main import app
from llamaops.platform.config.model import ModelConfig
from llamaops.platform.model import Transformer
from llamaops.platform.model.checkpoint import save_model
from llamaops.platform.tokenizer import load_tokenizer
from llamaops.platform.tracking import tracking_client


def test_eval_run_logs_report_to_mlflow(mlflow_server, tmp_path):
    cfg = ModelConfig(dim=16, n_layers=1, n_heads=2, n_kv_heads=1, ffn_hidden_dim=32,
                      vocab_size=load_tokenizer().vocab_size, max_seq_len=1024, rope_scaling=None)
    model = Transformer(cfg)
    model.init_weights(seed=0)
    model_dir = save_model(model, tmp_path / "m")
    task = tmp_path / "de.yaml"
    task.write_text("mmlu_dev: [de]\nlimit: 8\n")

    result = CliRunner().invoke(app, ["eval", "run", str(model_dir), "--tasks", str(task), "--json", "--track",
                                      "--tracking-uri", mlflow_server.uri])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)

    client = tracking_client(mlflow_server.uri)
    run = client.get_run(report["mlflow_run_id"])
    assert run.data.metrics["de.acc"] == report["tasks"]["de"]["acc"]
    assert run.data.params["tasks"] == "de"
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"report.json", "report.md"}
