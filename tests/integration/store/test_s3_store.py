"""s3:// artifacts against a real SigV4-checking S3 server (SeaweedFS)."""
import os
import time
from pathlib import Path

import pytest

from llamaops.platform.store import ArtifactError, fetched, is_complete, staged_output
from llamaops.platform.store.s3 import check_s3_access, published_files


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMAOPS_HOME", str(tmp_path / "home"))


def test_roundtrip_publishes_files_and_marker_last(s3_bucket: str, s3_server) -> None:
    uri = f"{s3_bucket}/run-1/model"
    big = os.urandom(6 * 1024 * 1024 + 123)  # above minio's multipart threshold
    with staged_output(uri) as out:
        (out / "weights.bin").write_bytes(big)
        (out / "nested").mkdir()
        (out / "nested" / "config.json").write_text('{"dim": 64}')
        assert not is_complete(uri)
    assert is_complete(uri)
    with fetched(uri) as local:
        assert (local / "weights.bin").read_bytes() == big
        assert (local / "nested" / "config.json").read_text() == '{"dim": 64}'
        assert (local / "_COMPLETE").is_file()
        first_copy_mtime = (local / "weights.bin").stat().st_mtime_ns
    with fetched(uri) as again:  # cached: not downloaded twice
        assert again == local and (again / "weights.bin").stat().st_mtime_ns == first_copy_mtime
    listing = s3_server.client().list_objects(s3_bucket[5:], prefix="run-1/", recursive=True)
    keys = sorted(o.object_name for o in listing)
    assert keys == ["run-1/model/_COMPLETE", "run-1/model/nested/config.json", "run-1/model/weights.bin"]


def test_failed_block_publishes_nothing_and_missing_artifact_is_refused(s3_bucket: str, s3_server) -> None:
    uri = f"{s3_bucket}/run-2/model"
    with pytest.raises(RuntimeError, match="boom"):
        with staged_output(uri) as out:
            (out / "weights.bin").write_bytes(b"partial")
            raise RuntimeError("boom")
    assert not is_complete(uri)
    assert list(s3_server.client().list_objects(s3_bucket[5:], prefix="run-2/", recursive=True)) == []
    with pytest.raises(ArtifactError, match="does not exist or is unfinished"):
        with fetched(uri):
            pass


def test_objects_without_marker_are_unfinished_and_overwrite_replaces_cached_copy(s3_bucket: str, s3_server) -> None:
    import io

    bucket = s3_bucket[5:]
    s3_server.client().put_object(bucket, "run-3/model/weights.bin", io.BytesIO(b"half"), 4)
    uri = f"{s3_bucket}/run-3/model"
    assert not is_complete(uri)
    with pytest.raises(ArtifactError, match="unfinished"):
        with fetched(uri):
            pass
    with pytest.raises(ArtifactError, match="unfinished"):
        published_files(uri)
    with staged_output(uri) as out:  # an unfinished leftover may be replaced without overwrite
        (out / "a.txt").write_text("v1")
    s3_server.client().put_object(bucket, "run-3/model/leftover.bin", io.BytesIO(b"x"), 1)
    assert published_files(uri) == {"a.txt": 2}  # the marker's list, not what else lies there
    with pytest.raises(ArtifactError, match="already exists"):
        with staged_output(uri):
            pass
    with fetched(uri) as local:
        assert sorted(p.name for p in local.iterdir()) == ["_COMPLETE", "a.txt"]
    with staged_output(uri, overwrite=True) as out:
        (out / "b.txt").write_text("v2")
    with fetched(uri) as local:
        assert sorted(p.name for p in local.iterdir()) == ["_COMPLETE", "b.txt"]
    keys = sorted(o.object_name for o in s3_server.client().list_objects(bucket, prefix="run-3/", recursive=True))
    assert keys == ["run-3/model/_COMPLETE", "run-3/model/b.txt"]


def test_wrong_secret_is_one_line_without_the_secret(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-4711")
    with pytest.raises(ArtifactError) as error:
        check_s3_access(f"{s3_bucket}/x")
    message = str(error.value)
    assert "rejected the credentials" in message and "AWS_SECRET_ACCESS_KEY" in message
    assert "\n" not in message and "not-the-secret-4711" not in message
    with pytest.raises(ArtifactError, match="rejected the credentials"):
        with staged_output(f"{s3_bucket}/x"):
            pytest.fail("the block must not run with bad credentials")


def test_missing_bucket_is_one_line(s3_bucket: str) -> None:
    with pytest.raises(ArtifactError, match="bucket 'no-such-bucket-xyz' does not exist .*create it first$"):
        check_s3_access("s3://no-such-bucket-xyz/x")


def test_unreachable_endpoint_is_one_quick_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("LLAMAOPS_S3_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-4711")
    started = time.monotonic()
    with pytest.raises(ArtifactError) as error:
        check_s3_access("s3://bucket/x")
    assert time.monotonic() - started < 5
    assert str(error.value) == (
        f"cannot reach S3 endpoint http://127.0.0.1:{port}; check LLAMAOPS_S3_ENDPOINT and that the server is running"
    )
