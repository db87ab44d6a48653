"""`llamaops eval run` on the generation tasks (GSM8K chain of thought, arithmetic) with the tiny
preset's model: every item is generated greedily, scored and reported, and the gate is judged.
Integration tier: generating 68 replies with a 128K-vocabulary model takes most of a minute."""
import json

from typer.testing import CliRunner

from llamaops.cli.main import app
from llamaops.platform.model import Transformer
from llamaops.platform.model.checkpoint import save_model

runner = CliRunner()


def test_generation_tasks_run_on_the_tiny_model(tmp_path):
    from llamaops.platform.config.presets import tiny

    model = Transformer(tiny().model)
    model.init_weights(seed=0)
    model_dir = save_model(model, tmp_path / "tiny")
    result = runner.invoke(app, ["eval", "run", str(model_dir), "--tasks", "gsm8k_cot,arithmetic", "--json", "--items",
                                 "--gate", "arithmetic.exact_match>=0", "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    gsm8k, arithmetic = report["tasks"]["gsm8k_cot"], report["tasks"]["arithmetic"]
    assert gsm8k["kind"] == arithmetic["kind"] == "generation"
    assert gsm8k["items"] == 8 and arithmetic["items"] == 60
    for task in (gsm8k, arithmetic):
        assert 0 <= task["exact_match"] <= 1 and 0 <= task["extracted"] <= 1 and "exact_match_stderr" in task
    completions = [i["completion"] for i in report["items"]["arithmetic"]]
    assert len(completions) == 60 and report["gate"]["passed"]
    assert "| exact_match | ± stderr | extracted |" in (tmp_path / "out" / "report.md").read_text()
