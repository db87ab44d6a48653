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


def _rated(model_uri: str, violation_rate: float, accuracy: float = 0.5) -> dict:
    metrics = {"validation_perplexity": 100.0, "multiple_choice_accuracy": accuracy, "violation_rate": violation_rate,
               "false_refusal_rate": 0.1}
    return _report(model_uri, True) | {"metrics": metrics}


def test_no_rate_may_worsen_past_the_preset_bound_against_production(tmp_path, tracking):
    preset = load_preset("tiny")
    preset = preset.model_copy(update={"eval_gate": preset.eval_gate.model_copy(update={"max_worsening_vs_production": 0.1})})
    first, worse, fine = _model(tmp_path, "first"), _model(tmp_path, "worse"), _model(tmp_path, "fine")
    assert run_register(preset, first, _rated(first, 0.2), tracking_uri=tracking).compared_with is None  # nothing to compare yet
    # Past its absolute gate, but VR 0.2 -> 0.5 is worse than production's by more than 0.1.
    refused = run_register(preset, worse, _rated(worse, 0.5), tracking_uri=tracking)
    assert refused.aliases == ["candidate"] and not refused.gate_passed
    assert refused.failed_thresholds == ["violation_rate.worsening"]
    assert refused.compared_with["metrics"]["violation_rate"] == 0.2
    verdicts = {v["metric"]: v for v in refused.compared_with["verdicts"]}
    assert verdicts["violation_rate.worsening"]["value"] == pytest.approx(0.3)
    assert set(verdicts) == {"multiple_choice_accuracy.worsening", "violation_rate.worsening", "false_refusal_rate.worsening"}
    assert model_uri_for("models:/llamaops-tiny@production", tracking) == first
    # Within the bound on every rate (accuracy 0.5 -> 0.45, VR 0.2 -> 0.25): promoted.
    promoted = run_register(preset, fine, _rated(fine, 0.25, accuracy=0.45), tracking_uri=tracking)
    assert promoted.aliases == ["candidate", "production"] and promoted.compared_with["version"] == "1"
