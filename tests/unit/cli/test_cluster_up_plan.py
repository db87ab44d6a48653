"""`llamaops cluster up` without Docker: the plan of commands and the one-line refusal."""
from typer.testing import CliRunner

from llamaops.cli.main import app
from llamaops.cluster import kind


def test_plan_creates_kind_then_kuberay_kfp_and_the_chart_in_that_context():
    plan = kind.up_commands("e2e", "ml")
    assert plan[0] == ["kind", "create", "cluster", "--name", "e2e", "--wait", "180s"]
    assert all("kind-e2e" in argv for argv in plan[1:])
    assert any("kuberay/kuberay-operator" in argv for argv in plan)
    assert plan[-1][plan[-1].index("--namespace") + 1] == "ml"
    assert (kind.CHART / "Chart.yaml").is_file()


def test_up_refuses_in_one_line_when_tools_are_missing(monkeypatch):
    monkeypatch.setattr(kind.shutil, "which", lambda tool: None if tool == "kind" else f"/usr/bin/{tool}")
    result = CliRunner().invoke(app, ["cluster", "up"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: kind not found on PATH: `cluster up` needs Docker, kind, kubectl and helm"
