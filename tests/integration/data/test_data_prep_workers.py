"""Data prep on Ray Data across 2 workers gives the in-process result; the report reaches MLflow."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from llamaops.cli.main import app
from llamaops.platform.config import load_preset
from llamaops.platform.data.prep import prepare_data
from llamaops.platform.data.timings import collecting

VOCABULARY = [f"word{i}" for i in range(3000)]


def write_corpus(folder, documents: int = 120) -> None:
    rng = np.random.default_rng(1)
    texts = [" ".join(rng.choice(VOCABULARY, 120)) + f". Mail me: person{i}@example.org" for i in range(documents)]
    texts += [texts[3], texts[5] + " extra", "Der schnelle braune Fuchs springt über den faulen Hund und läuft weiter."]
    folder.mkdir()
    (folder / "docs.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in texts) + "\n")


@pytest.fixture(scope="module")
def local_ray():
    import ray

    from llamaops.platform.train.ray_runner import ensure_ray

    ensure_ray(workers=2)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_two_ray_workers_give_the_in_process_output(tmp_path, local_ray):
    write_corpus(tmp_path / "in")
    data = load_preset(
        "tiny", overrides=[f"data.sources=['{(tmp_path / 'in').as_uri()}']", "data.validation_fraction=0.2", "data.min_chars=10"]
    ).data
    with collecting() as in_process:
        one = prepare_data(data, (tmp_path / "one").as_uri(), workers=1)
    with collecting() as on_ray:
        two = prepare_data(data, (tmp_path / "two").as_uri(), workers=2)
    assert one.report == two.report and one.metrics == two.metrics
    # Where the time went: every Ray task's CPU came back from a worker process, the rest is the driver's.
    assert in_process.tasks == [] and in_process.driver_cpu_s["clean+scrub_pii+language"] > 0
    assert {task.kind for task in on_ray.tasks} == {"document_steps", "shuffle_map", "shuffle_reduce"}
    assert os.getpid() not in on_ray.worker_cpu_s() and all(task.cpu_s >= 0 for task in on_ray.tasks)
    summary = on_ray.summary()
    assert {"read", "near_dedup", "write_shards", "other"} <= set(summary["driver_cpu_s_by_phase"])
    assert 0 < summary["serial_fraction"] < 1 and summary["task_cpu_s_max_worker"] <= summary["task_cpu_s_sum"]
    for name in ("train.tokens.npy", "train.starts.npy", "validation.tokens.npy", "validation.starts.npy"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    removed = {r for step in one.report["steps"] for r in step["removed"]}
    assert {"exact_duplicate", "near_duplicate"} <= removed
    assert "de" in one.report["by_source_in"][data.sources[0]]  # language identified


def test_cli_logs_the_report_to_mlflow(tmp_path):
    from mlflow.tracking import MlflowClient

    write_corpus(tmp_path / "in", documents=30)
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = CliRunner().invoke(app, ["data", "prep", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                                      "-s", "validation_fraction=0.2", "--tracking-uri", tracking_uri, "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    client = MlflowClient(tracking_uri)
    [stage] = client.search_runs(
        [client.get_experiment_by_name("data-prep").experiment_id], filter_string="tags.`llamaops.stage` = 'data'"
    )
    assert stage.data.metrics["documents_in"] == report["documents_in"] == 33
    assert stage.data.metrics["tokens_out"] == report["tokens_out"]
    assert stage.data.metrics["removed_documents_exact_duplicate"] == 1
    logged = client.download_artifacts(stage.info.run_id, "", str(tmp_path / "artifacts"))
    saved = [json.loads(p.read_text()) for p in Path(logged).rglob("*.json")]
    assert report in saved


def test_cli_inside_a_pipeline_logs_the_data_stage_under_the_pipelines_run(tmp_path, monkeypatch):
    """What the data RayJob's entrypoint does: `--parent-run-id` makes the report the `data` child of
    the pipeline's MLflow run, which stays open for the next steps."""
    from mlflow.tracking import MlflowClient

    from llamaops.platform.tracking.runs import PipelineTracker

    write_corpus(tmp_path / "in", documents=30)
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = PipelineTracker(tracking_uri, "llamaops", "run-1", "8b")
    argv = ["data", "prep", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-s", "validation_fraction=0.2", "--json"]
    result = CliRunner().invoke(app, argv + ["--tracking-uri", tracking_uri, "--parent-run-id", parent.run_id])
    assert result.exit_code == 0, result.output
    client = MlflowClient(tracking_uri)
    [stage] = client.search_runs([parent.experiment_id], filter_string="tags.`llamaops.stage` = 'data'")
    assert stage.data.tags["mlflow.parentRunId"] == parent.run_id and stage.info.status == "FINISHED"
    assert stage.data.metrics["documents_in"] == json.loads(result.stdout)["documents_in"]
    assert client.get_run(parent.run_id).info.status == "RUNNING"
    assert client.get_experiment_by_name("data-prep") is None  # no run of its own
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    alone = CliRunner().invoke(app, argv[:4] + ["-o", str(tmp_path / "out2"), "--parent-run-id", parent.run_id])
    assert alone.exit_code == 2 and "--parent-run-id needs --tracking-uri (or MLFLOW_TRACKING_URI)" in alone.output


def write_duplicated_corpus(folder) -> dict[str, int]:
    """Originals first, their copies last (so each copy sits in another Ray block than its original);
    returns how many documents each de-duplication should remove."""
    rng = np.random.default_rng(2)
    originals = [list(rng.choice(VOCABULARY, 120)) for _ in range(120)]
    nav = ["Navigation home products contact imprint", "Follow us on the blog for updates every week"]
    records = []
    for i, words in enumerate(originals):
        text = " ".join(words) + (f"\n{nav[0]}\n{nav[1]}" if i % 10 == 0 else "")  # 12 holders: > 6 repeats
        records.append({"text": text, "url": f"https://example.org/{i}"})
    records.insert(60, {"text": f"{nav[0]}\n{nav[1]}"})  # only repeated lines: dropped
    records.insert(90, {"text": f"{nav[1]}\n{nav[0]}"})
    for i in (2, 17, 40, 77):  # same URL, other text
        records.append({"text": " ".join(rng.choice(VOCABULARY, 120)), "url": f"https://example.org/{i}"})
    for i in (3, 33, 63, 93, 111):  # same text, no URL
        records.append({"text": records[i if i < 60 else i + 1 if i < 89 else i + 2]["text"]})
    for i in (5, 25, 45, 65, 85, 105):  # one word edited: 5-gram Jaccard 111/121
        words = list(originals[i])
        words[60] = "edited"
        records.append({"text": " ".join(words)})
    folder.mkdir()
    (folder / "docs.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return {"duplicate_url": 4, "exact_duplicate": 5, "only_repeated_lines": 2, "near_duplicate": 6}


@pytest.mark.slow
def test_hash_sharded_dedup_on_two_workers_is_exact_and_byte_identical(tmp_path, local_ray):
    expected = write_duplicated_corpus(tmp_path / "in")
    data = load_preset("tiny", overrides=[
        f"data.sources=['{(tmp_path / 'in').as_uri()}']", "data.validation_fraction=0.2", "data.min_chars=10",
        "data.max_token_kl_zscore=null",
    ]).data
    one = prepare_data(data, (tmp_path / "one").as_uri(), workers=1)
    two = prepare_data(data, (tmp_path / "two").as_uri(), workers=2)
    assert one.report == two.report
    for name in ("train.tokens.npy", "train.starts.npy", "validation.tokens.npy", "validation.starts.npy"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    removed = {reason: counts["documents"] for step in two.report["steps"] for reason, counts in step["removed"].items()}
    assert {reason: removed.get(reason) for reason in expected} == expected
    line_dedup = next(step for step in two.report["steps"] if step["step"] == "line_dedup")
    assert line_dedup["out"]["chars"] < line_dedup["in"]["chars"] - 12 * 80  # the lines left the 12 holders
