"""s3:// configuration and URI checks that need no server."""
import pytest

from llamaops.platform.store import ArtifactError, check_access, fetched, staged_output
from llamaops.platform.store.s3 import S3Location, S3Settings, _manifest_files


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMAOPS_S3_ENDPOINT", "https://minio.example:9000/")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "top-secret-4711")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)


def test_settings_from_env_hide_the_secret(s3_env: None) -> None:
    settings = S3Settings.from_env()
    assert (settings.endpoint, settings.region) == ("https://minio.example:9000", "us-east-1")
    assert "top-secret-4711" not in repr(settings)
    client = settings.client()
    assert client._base_url.is_https and client._base_url.host == "minio.example:9000"


@pytest.mark.parametrize(
    "unset, set_to, message",
    [
        ("LLAMAOPS_S3_ENDPOINT", None, "need LLAMAOPS_S3_ENDPOINT"),
        ("AWS_SECRET_ACCESS_KEY", None, "need AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        (None, ("LLAMAOPS_S3_ENDPOINT", "ftp://host:1"), "must look like http"),
        (None, ("LLAMAOPS_S3_ENDPOINT", "http://host:1/sub/path"), "must look like http"),
    ],
)
def test_missing_or_bad_settings_are_one_line(s3_env, monkeypatch, unset, set_to, message) -> None:
    if unset:
        monkeypatch.delenv(unset)
    if set_to:
        monkeypatch.setenv(*set_to)
    with pytest.raises(ArtifactError, match=message) as error:
        check_access("s3://bucket/x")
    assert "top-secret-4711" not in str(error.value)
    with pytest.raises(ArtifactError, match=message):
        with staged_output("s3://bucket/x"):
            pytest.fail("the block must not run without S3 settings")


@pytest.mark.parametrize(
    "uri",
    ["s3://bucket", "s3://bucket/", "s3:///x", "s3://bucket/a/../b", "s3://bucket/a//b", "s3://b1/x", "s3://Bad_B/x"],
)
def test_malformed_s3_uris_are_refused(uri: str) -> None:
    with pytest.raises(ArtifactError, match="artifact URI|not a valid S3 bucket name"):
        S3Location.parse(uri)


def test_location_keys() -> None:
    where = S3Location.parse("s3://bucket/runs/r1/model/")
    assert (where.bucket, where.key("a/b.bin"), where.marker_key) == ("bucket", "runs/r1/model/a/b.bin",
                                                                     "runs/r1/model/_COMPLETE")


def test_manifest_rejects_paths_outside_the_artifact() -> None:
    assert _manifest_files(b'{"upload": "u", "files": {"a/b.bin": 3}}', "s3://b/x") == {"a/b.bin": 3}
    with pytest.raises(ArtifactError, match="unsafe file path '../evil'"):
        _manifest_files(b'{"upload": "u", "files": {"../evil": 3}}', "s3://b/x")
    with pytest.raises(ArtifactError, match="unreadable completion marker"):
        _manifest_files(b"", "s3://b/x")


def test_local_uris_pass_the_preflight_and_bad_schemes_do_not(tmp_path) -> None:
    check_access(tmp_path.as_uri())
    with pytest.raises(ArtifactError, match="unsupported artifact URI 'gs://b/x'"):
        check_access("gs://b/x")
    with pytest.raises(ArtifactError, match="does not exist"):
        with fetched((tmp_path / "nothing").as_uri()):
            pass
