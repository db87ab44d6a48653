"""Registration on a real (sqlite) MLflow registry: candidate always, production only past the gate."""
import pytest

from llamaops.platform.config import load_preset
from llamaops.platform.deploy import DeployError, run_register
from llamaops.platform.store import staged_output
from llamaops.platform.tracking import model_uri_for


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAOPS_HOME", str(tmp_path / "home"))
    return f"sqlite:///{tmp_path}/mlflow.db"


def _model(tmp_path, name: str) -> str:
    uri = (tmp_path / "artifacts" / name).as_uri()
    with staged_output(uri) as folder:
        (folder / "llamaops_model.json").write_text("{}")
    return uri


def _report(model_uri: str, passed: bool) -> dict:
    return {"model_uri": model_uri, "gate": {"passed": passed, "failed": [] if passed else ["violation_rate"]}}


def test_gate_decides_promotion_and_reruns_reuse_the_version(tmp_path, tracking):
    preset = load_preset("tiny")
    good, bad = _model(tmp_path, "good"), _model(tmp_path, "bad")
    first = run_register(preset, good, _report(good, True), tracking_uri=tracking)
    assert first.aliases == ["candidate", "production"] and first.model_name == "llamaops-tiny"
    assert first.serve_command == "llamaops serve models:/llamaops-tiny@production --host 127.0.0.1 --port 8000"
    second = run_register(preset, bad, _report(bad, False), tracking_uri=tracking)
    assert second.version != first.version and second.aliases == ["candidate"] and second.serve_command is None
    assert second.failed_thresholds == ["violation_rate"]
    assert model_uri_for("models:/llamaops-tiny@production", tracking) == good
    assert model_uri_for("models:/llamaops-tiny@candidate", tracking) == bad
    again = run_register(preset, good, _report(good, True), tracking_uri=tracking)
    assert again.version == first.version
    assert model_uri_for("models:/llamaops-tiny@candidate", tracking) == good


def test_a_report_about_another_model_is_refused(tmp_path, tracking):
    model = _model(tmp_path, "m")
    with pytest.raises(DeployError, match="judged"):
        run_register(load_preset("tiny"), model, _report("file:///other", True), tracking_uri=tracking)
