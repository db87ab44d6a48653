"""The deploy step where nothing reaches a cluster: a local run and a preset with deploy off report
the serve command, and the KFP component carries the step's parameters."""
import json

from llamaops.pipelines import components
from llamaops.pipelines.deploy_step import deploy_step
from llamaops.pipelines.events import EVENTS_ENV, EventFollower
from llamaops.platform.config import load_preset
from llamaops.platform.tracking import PipelineTracker, tracking_client


def test_local_or_disabled_reports_the_serve_command_pinned_to_the_version(tmp_path, monkeypatch, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv(EVENTS_ENV, str(tmp_path / "events.jsonl"))
    follower = EventFollower(tmp_path / "events.jsonl")
    client = tracking_client(uri)
    for preset, to_cluster, why in [("8b", False, "a local run"), ("tiny", True, "preset tiny has deploy.enabled false")]:
        parent_run_id = PipelineTracker(uri, "llamaops", f"run-{preset}", preset).run_id
        result = deploy_step(load_preset(preset).model_dump_json(), f"run-{preset}", uri, parent_run_id,
                             "llamaops-8b", "4", True, "not json: never read", to_cluster)
        assert result.startswith("llamaops serve models:/llamaops-8b/4 ")
        assert f"deploy: {result}" in capsys.readouterr().out
        events = follower.new_events()
        assert [(e.step, e.status) for e in events] == [("deploy", "started"), ("deploy", "finished")]
        assert events[1].detail["deployed"] is False and events[1].detail["serve_command"] == result
        assert events[1].detail["reason"].startswith(why)
        child = client.search_runs([client.get_run(parent_run_id).info.experiment_id],
                                   filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'")[0]
        assert child.info.run_name == "deploy" and child.info.status == "FINISHED"
        saved = client.download_artifacts(child.info.run_id, "deployment.json", str(tmp_path / preset))
        assert json.loads(open(saved).read())["serve_command"] == result


def test_the_component_takes_the_steps_parameters():
    inputs = components.deploy.component_spec.inputs
    assert list(inputs) == ["preset_json", "run_id", "tracking_uri", "parent_run_id", "model_name", "version",
                            "promoted", "cluster_json", "to_cluster"]
    types = {name: spec.type for name, spec in inputs.items()}
    assert types.pop("promoted") == types.pop("to_cluster") == "Boolean"
    assert set(types.values()) == {"String"}
