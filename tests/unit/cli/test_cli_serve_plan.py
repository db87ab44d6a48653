"""`llamaops model serve-plan`: what serving a preset's model needs per GPU, bf16 and FP8."""
import json

from typer.testing import CliRunner

from llamaops.cli.main import app


def _plan(*args: str) -> dict[str, dict]:
    result = CliRunner().invoke(app, ["model", "serve-plan", *args, "--json"])
    assert result.exit_code == 0, result.output
    return {row["weights"]: row for row in json.loads(result.stdout)}


def test_405b_fits_one_8_gpu_node_in_fp8_and_not_in_bf16():
    plan = _plan("405b", "--batch", "1", "--context", "131072")
    assert plan["fp8"]["tp"] == 8 and plan["fp8"]["fits"] and not plan["bf16"]["fits"]
    assert plan["bf16"]["weights_bytes"] > 80 * 2**30 > plan["fp8"]["total_bytes"]
    assert plan["fp8"]["kv_tokens_free"] >= 131_072  # the full context has room


def test_8b_fits_one_gpu_in_bf16():
    plan = _plan("8b")
    assert plan["bf16"]["tp"] == 1 and plan["bf16"]["fits"]
    assert 14 * 2**30 < plan["bf16"]["weights_bytes"] < 16 * 2**30  # 8.03B parameters at two bytes


def test_a_split_the_model_cannot_take_is_one_line():
    result = CliRunner().invoke(app, ["model", "serve-plan", "8b", "--tensor-parallel", "3"])
    assert result.exit_code == 2 and "does not divide the model's n_heads 32" in result.output
