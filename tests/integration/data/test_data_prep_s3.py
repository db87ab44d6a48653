"""Data prep reading a corpus from, and writing shards to, a real S3 server (SeaweedFS)."""
import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llamaops.pipelines.data_rayjob import data_step_rayjob
from llamaops.platform.config import load_preset
from llamaops.platform.config.cluster import ClusterContract
from llamaops.platform.data.documents import DataError
from llamaops.platform.data.prep import run_data_prep
from llamaops.platform.data.shards import TokenStream
from llamaops.platform.store import fetched, staged_output


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMAOPS_HOME", str(tmp_path / "home"))


def test_corpus_artifact_on_s3_becomes_shards_on_s3(s3_bucket: str) -> None:
    corpus_uri, shards_uri = f"{s3_bucket}/corpus", f"{s3_bucket}/run-1/data"
    rng = np.random.default_rng(0)
    with staged_output(corpus_uri) as out:
        for i in range(30):
            (out / f"doc{i}.txt").write_text(" ".join(f"w{n}" for n in rng.integers(0, 2000, 150)))
    preset = load_preset("tiny", overrides=[f"data.sources=['{corpus_uri}']", "data.validation_fraction=0.2"])

    result = run_data_prep(preset, shards_uri)

    with fetched(shards_uri) as directory:
        train, validation = TokenStream.open(directory, "train"), TokenStream.open(directory, "validation")
        assert len(train.starts) + len(validation.starts) == 30
        assert len(train.tokens) == result.metrics["train_tokens"] > 0


def test_unfinished_s3_corpus_is_refused(s3_bucket: str, s3_server) -> None:
    bucket = s3_bucket.removeprefix("s3://")
    s3_server.client().put_object(bucket, "half/doc.txt", io.BytesIO(b"text"), 4)
    preset = load_preset("tiny", overrides=[f"data.sources=['{s3_bucket}/half']"])
    with pytest.raises(DataError, match="not a complete artifact"):
        run_data_prep(preset, f"{s3_bucket}/run-2/data")


@pytest.mark.slow
def test_the_data_rayjob_entrypoint_prepares_s3_data_on_two_ray_workers(s3_bucket: str, tmp_path: Path) -> None:
    corpus_uri = f"{s3_bucket}/corpus-rayjob"
    rng = np.random.default_rng(1)
    with staged_output(corpus_uri) as out:
        for i in range(40):
            (out / f"doc{i}.txt").write_text(" ".join(f"w{n}" for n in rng.integers(0, 2000, 150)))
        (out / "copy.txt").write_text((out / "doc7.txt").read_text())
    preset = load_preset("8b", overrides=[f"data.sources=['{corpus_uri}']", "data.workers=2", "data.validation_fraction=0.2"])
    job = data_step_rayjob(preset, "run-9", s3_bucket, "", "default", ClusterContract())
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in json.dumps(job)  # credentials come from the Secret

    argv = shlex.split(job["spec"]["entrypoint"])
    argv[0] = str(Path(sys.executable).parent / argv[0])  # the llamaops console script of this environment
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env={**os.environ, "RAY_ADDRESS": ""})

    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["documents_in"] == 41 and report["documents_out"] == 40
    with fetched(f"{s3_bucket}/run-9/data") as directory:
        train, validation = TokenStream.open(directory, "train"), TokenStream.open(directory, "validation")
        assert len(train.starts) + len(validation.starts) == 40
