"""Data prep reading a corpus from, and writing shards to, a real S3 server (SeaweedFS)."""
import io
from pathlib import Path

import numpy as np
import pytest

from llamaops.platform.config import load_preset
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
