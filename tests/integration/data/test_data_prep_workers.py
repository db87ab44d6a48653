"""Data prep on Ray Data across 2 workers gives the in-process result; the report reaches MLflow."""
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from llamaops.cli.main import app
from llamaops.platform.config import load_preset
from llamaops.platform.data.prep import prepare_data

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
    one = prepare_data(data, (tmp_path / "one").as_uri(), workers=1)
    two = prepare_data(data, (tmp_path / "two").as_uri(), workers=2)
    assert one.report == two.report and one.metrics == two.metrics
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
