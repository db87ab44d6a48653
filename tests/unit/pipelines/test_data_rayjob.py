"""The data step's RayJob: its entrypoint is `llamaops data prep` and carries the exact data settings."""
import shlex

import pytest
from typer.testing import CliRunner

from llamaops.cli.main import app
from llamaops.pipelines.data_rayjob import build_data_rayjob, data_prep_command
from llamaops.pipelines.dry_run import dry_run_manifests
from llamaops.platform.config import load_preset
from llamaops.platform.config.cluster import ClusterContract


def parsed_by_the_cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple:
    """Run the CLI on `argv` up to the point where it would prepare data; return what it would prepare with."""
    import llamaops.platform.data.prep as prep

    seen = []

    def capture(data, output_uri, metrics=None, workers=1):  # stands in for the run: this test checks parsing only
        seen.append((data, output_uri, workers))
        raise SystemExit(0)

    monkeypatch.setattr(prep, "prepare_data", capture)
    result = CliRunner().invoke(app, argv[1:])
    assert result.exit_code == 0, result.output
    return seen[0]


@pytest.mark.parametrize("overrides", [[], ["data.min_chars=200", "data.languages=[en, de]", "data.max_token_kl_zscore=null",
                                            "data.source_categories={s3://b/web: general}", "data.workers=3",
                                            "data.language_rules={de: {min_chars: 500, dirty_words: [x]}}"]])
def test_the_entrypoint_gives_the_cli_the_same_data_settings(overrides, monkeypatch):
    preset = load_preset("8b", overrides=overrides)
    job = build_data_rayjob(preset, "run-1", "s3://bucket/run-1/data", "image:1", ClusterContract())
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:3] == ["llamaops", "data", "prep"]
    data, output_uri, workers = parsed_by_the_cli(argv, monkeypatch)
    assert data == preset.data and output_uri == "s3://bucket/run-1/data" and workers == preset.data.workers


def test_worker_pods_fit_the_workers_and_credentials_come_from_the_secret():
    preset = load_preset("405b", overrides=["data.workers=10"])
    job = build_data_rayjob(preset, "run-1", "s3://b/d", "image:1", ClusterContract())
    cluster = job["spec"]["rayClusterSpec"]
    (group,) = cluster["workerGroupSpecs"]
    assert group["replicas"] == 3 and group["rayStartParams"]["num-cpus"] == "4"  # ceil(10 / 4) pods of 4 CPUs
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    for spec in (cluster["headGroupSpec"]["template"]["spec"], group["template"]["spec"]):
        (container,) = spec["containers"]
        assert all("valueFrom" in item for item in container["env"])  # references only, no values
        assert {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "llamaops-s3", "key": "access-key"}}} \
            in container["env"]
        assert "nvidia.com/gpu" not in container["resources"]["requests"]
    assert "AWS_SECRET" not in job["spec"]["entrypoint"]


def test_dry_run_lists_the_data_rayjob_first_for_gpu_presets():
    docs = dry_run_manifests(load_preset("8b"), "run-3", "team", artifact_root="s3://artifacts")
    jobs = [doc for doc in docs if doc.get("kind") == "RayJob"]
    assert [job["metadata"]["labels"]["llamaops.io/step"] for job in jobs][0] == "data"
    assert "--output s3://artifacts/run-3/data" in jobs[0]["spec"]["entrypoint"]
    tiny = dry_run_manifests(load_preset("tiny"), "run-4", "team")  # one data worker: in the step's own pod
    assert "data" not in [doc["metadata"]["labels"]["llamaops.io/step"] for doc in tiny if doc.get("kind") == "RayJob"]


def test_a_custom_preset_name_starts_from_tiny():
    preset = load_preset("tiny").model_copy(update={"name": "mine"})
    assert data_prep_command(preset, "s3://b/d")[data_prep_command(preset, "s3://b/d").index("--preset") + 1] == "tiny"


def test_the_data_stage_joins_the_runs_mlflow_run_on_the_pods_own_tracking_server():
    argv = data_prep_command(load_preset("8b"), "s3://b/d", tracking_uri="", parent_run_id="parent-1")
    assert "--tracking-uri" not in argv and argv[argv.index("--parent-run-id") + 1] == "parent-1"
