import json

from typer.testing import CliRunner

from llamaops.cli.main import app

runner = CliRunner()


def test_plan_json_has_the_layout_memory_fit_and_days():
    result = runner.invoke(app, ["train", "plan", "full-405b", "--stage", "long_context", "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["tp"], report["cp"], report["pp"], report["dp"], report["gpus"]) == (8, 16, 16, 8, 16_384)
    assert report["fits"] is True and 0 < report["memory_per_gpu_bytes"] <= 80 * 2**30
    assert report["memory_per_gpu_bytes"] == report["memory_breakdown"]["total_bytes"]
    assert report["training_days"] > 0 and report["mfu"] == 0.4


def test_plan_text_and_options():
    result = runner.invoke(app, ["train", "plan", "405b", "--gpus", "16384", "--mfu", "0.5"])
    assert result.exit_code == 0, result.stderr
    assert "TP 8 x CP 1 x PP 16 x DP 128 = 16,384 GPUs" in result.stdout and "fits" in result.stdout
    assert "at 50% MFU" in result.stdout


def test_plan_bad_gpu_count_is_one_line_exit_2():
    result = runner.invoke(app, ["train", "plan", "405b", "--gpus", "100"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --gpus 100 is not a multiple of TP x CP x PP = 128; use a multiple of 128"
    )


def test_plan_a_gpu_count_beyond_any_cluster_is_refused_without_a_traceback():
    result = runner.invoke(app, ["train", "plan", "tiny", "--gpus", "99999999999999999999999"])
    assert result.exit_code == 2 and "16777216" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
