"""s3:// artifacts on any S3 API (MinIO, SeaweedFS, AWS) through the minio client.

Configuration comes from the environment: LLAMAOPS_S3_ENDPOINT (http(s)://host:port),
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and optionally AWS_REGION.

An artifact `s3://bucket/prefix` is the objects under `prefix/` plus `prefix/_COMPLETE`, written
last. The marker holds a JSON manifest (upload id, relative path -> size), so readers download
exactly the published files, ignore leftovers of an interrupted upload, and can tell whether a
cached local copy is still the current version.
"""
import io
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error
from minio.helpers import check_bucket_name

from .manifest import merged
from .paths import home
from .uri import COMPLETE_MARKER, ArtifactError

_CREDENTIAL_ERRORS = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken"}
_UNFINISHED = ("artifact {uri} does not exist or is unfinished (no completion marker); "
               "run the stage that produces it first")
_MISSING_OBJECT_ERRORS = {"NoSuchKey", "NoSuchObject", "NoSuchBucket", "ResourceNotFound"}


@dataclass(frozen=True)
class S3Settings:
    endpoint: str  # http(s)://host:port, without credentials
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    region: str

    @classmethod
    def from_env(cls) -> "S3Settings":
        endpoint = os.environ.get("LLAMAOPS_S3_ENDPOINT", "").strip()
        if not endpoint:
            raise ArtifactError("s3:// artifacts need LLAMAOPS_S3_ENDPOINT (e.g. http://127.0.0.1:8333); set it")
        parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
        if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.path not in ("", "/"):
            raise ArtifactError("LLAMAOPS_S3_ENDPOINT must look like http(s)://host:port")
        access_key = os.environ.get("AWS_ACCESS_KEY_ID", "")
        secret_key = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
        if not access_key or not secret_key:
            raise ArtifactError("s3:// artifacts need AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; set both")
        host = parsed.hostname if parsed.port is None else f"{parsed.hostname}:{parsed.port}"
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        return cls(f"{parsed.scheme}://{host}", access_key, secret_key, region)

    def client(self) -> Minio:
        parsed = urlparse(self.endpoint)
        # Few, quick retries: an unreachable endpoint must fail in about a second, not minutes.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=120),
            retries=urllib3.Retry(total=2, connect=1, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
        )
        return Minio(
            parsed.netloc,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=parsed.scheme == "https",
            region=self.region,
            http_client=http,
        )


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # no leading or trailing slash

    @classmethod
    def parse(cls, uri: str) -> "S3Location":
        parsed = urlparse(uri)
        prefix = parsed.path.strip("/")
        if parsed.scheme != "s3" or not parsed.netloc or not prefix:
            raise ArtifactError(f"artifact URI '{uri}' must look like s3://bucket/path")
        if any(part in ("", ".", "..") for part in prefix.split("/")):
            raise ArtifactError(f"artifact URI '{uri}' has an empty, '.' or '..' path segment")
        try:
            check_bucket_name(parsed.netloc, strict=True)
        except ValueError:
            raise ArtifactError(f"'{parsed.netloc}' in {uri} is not a valid S3 bucket name") from None
        return cls(parsed.netloc, prefix)

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}"

    @property
    def marker_key(self) -> str:
        return self.key(COMPLETE_MARKER)


def _explain(error: Exception, settings: S3Settings, where: S3Location) -> ArtifactError:
    """One line saying what went wrong and what to do; never the credentials."""
    if isinstance(error, S3Error):
        if error.code in _CREDENTIAL_ERRORS:
            return ArtifactError(
                f"S3 at {settings.endpoint} rejected the credentials for bucket '{where.bucket}' ({error.code}); "
                "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        if error.code == "NoSuchBucket":
            return ArtifactError(f"S3 bucket '{where.bucket}' does not exist at {settings.endpoint}; create it first")
        return ArtifactError(f"S3 at {settings.endpoint} refused s3://{where.bucket}/{where.prefix}: {error.code}")
    if isinstance(error, urllib3.exceptions.HTTPError):
        return ArtifactError(
            f"cannot reach S3 endpoint {settings.endpoint}; check LLAMAOPS_S3_ENDPOINT and that the server is running"
        )
    return ArtifactError(f"S3 request to {settings.endpoint} failed: {type(error).__name__}")


_S3_FAILURES = (MinioException, urllib3.exceptions.HTTPError)


def check_s3_access(uri: str) -> None:
    """Fail fast, before any compute, if `uri`'s endpoint, credentials or bucket are not usable."""
    where = S3Location.parse(uri)
    settings = S3Settings.from_env()
    try:
        exists = settings.client().bucket_exists(where.bucket)
    except _S3_FAILURES as error:
        raise _explain(error, settings, where) from None
    if not exists:
        raise ArtifactError(f"S3 bucket '{where.bucket}' does not exist at {settings.endpoint}; create it first")


def _read_marker(client: Minio, where: S3Location) -> bytes | None:
    try:
        response = client.get_object(where.bucket, where.marker_key)
    except S3Error as error:
        if error.code in _MISSING_OBJECT_ERRORS:
            return None
        raise
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def _manifest_files(marker: bytes, uri: str) -> dict[str, int]:
    try:
        files = json.loads(marker)["files"]
    except (ValueError, KeyError, TypeError):
        raise ArtifactError(f"artifact {uri} has an unreadable completion marker; republish it") from None
    for relative in files:
        if any(part in ("", ".", "..") for part in relative.split("/")):
            raise ArtifactError(f"artifact {uri} lists an unsafe file path '{relative}'; republish it")
    return files


def is_complete(uri: str) -> bool:
    where = S3Location.parse(uri)
    settings = S3Settings.from_env()
    try:
        settings.client().stat_object(where.bucket, where.marker_key)
        return True
    except S3Error as error:
        if error.code in _MISSING_OBJECT_ERRORS:
            return False
        raise _explain(error, settings, where) from None
    except _S3_FAILURES as error:
        raise _explain(error, settings, where) from None


def published_files(uri: str) -> dict[str, int]:
    """The files of the complete artifact at `uri` (relative path -> bytes), as its completion
    marker lists them, without downloading any; leftovers of an interrupted upload are not among them."""
    where = S3Location.parse(uri)
    settings = S3Settings.from_env()
    try:
        marker = _read_marker(settings.client(), where)
    except _S3_FAILURES as error:
        raise _explain(error, settings, where) from None
    if marker is None:
        raise ArtifactError(_UNFINISHED.format(uri=uri))
    return _manifest_files(marker, uri)


def _cache_dir(where: S3Location, settings: S3Settings) -> Path:
    endpoint = urlparse(settings.endpoint).netloc.replace(":", "_")
    return home() / "cache" / "s3" / endpoint / where.bucket / where.prefix


@contextmanager
def fetched(uri: str) -> Iterator[Path]:
    """Download the complete artifact at `uri` into the local cache (once per version) and yield it."""
    where = S3Location.parse(uri)
    settings = S3Settings.from_env()
    client = settings.client()
    cached = _cache_dir(where, settings)
    try:
        marker = _read_marker(client, where)
        if marker is None:
            raise ArtifactError(_UNFINISHED.format(uri=uri))
        local_marker = cached / COMPLETE_MARKER
        if not (local_marker.is_file() and local_marker.read_bytes() == marker):
            _download(client, where, _manifest_files(marker, uri), marker, cached)
    except _S3_FAILURES as error:
        raise _explain(error, settings, where) from None
    yield cached


def _download(client: Minio, where: S3Location, files: dict[str, int], marker: bytes, cached: Path) -> None:
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cached.name}.tmp-", dir=cached.parent))
    try:
        for relative, size in files.items():
            target = tmp / relative
            client.fget_object(where.bucket, where.key(relative), str(target))
            if target.stat().st_size != size:
                raise ArtifactError(f"s3://{where.bucket}/{where.key(relative)} changed while downloading; retry")
        (tmp / COMPLETE_MARKER).write_bytes(marker)  # last: a cache dir with this marker is whole
        if cached.exists():
            shutil.rmtree(cached)
        tmp.rename(cached)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _staging_dir(prefix: str) -> Path:
    staging_root = home() / "cache" / "s3-staging"
    staging_root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=staging_root))


@contextmanager
def staged_output(uri: str, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty local directory; on success upload it to `uri` and write the marker last.

    Access is checked before the block runs, so bad credentials fail before any compute. On
    failure nothing is marked complete and uploaded objects are removed (best effort).
    """
    where = S3Location.parse(uri)
    settings = S3Settings.from_env()
    check_s3_access(uri)
    if is_complete(uri) and not overwrite:
        raise ArtifactError(f"artifact {uri} already exists; write to a new URI")
    local = _staging_dir("stage-")
    try:
        yield local
        client = settings.client()
        _unfinish(client, where, settings)
        files = _upload(client, where, local, settings)
        _finish(client, where, files, settings)
    finally:
        shutil.rmtree(local, ignore_errors=True)


def begin_parts(uri: str) -> None:
    """Before any part of a sharded artifact is uploaded (one writer calls it): access checked and a
    previous version at `uri` made unfinished, so no reader mixes its files with the new ones."""
    where = S3Location.parse(uri)
    settings = S3Settings.from_env()
    check_s3_access(uri)
    _unfinish(settings.client(), where, settings)


class PartUpload:
    """One writer's share of a sharded artifact (a rank's checkpoint shards): staged in a directory
    on the writer's own filesystem, uploaded without a marker. Once every writer's part is in, one
    writer calls `publish_parts` with all their file lists."""

    def __init__(self, uri: str):
        self.uri = uri
        self.directory = _staging_dir("part-")

    def upload(self) -> dict[str, int]:
        """Upload the staged files (relative path -> size) and drop the local copy."""
        where = S3Location.parse(self.uri)
        settings = S3Settings.from_env()
        try:
            return _upload(settings.client(), where, self.directory, settings)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


def publish_parts(uri: str, parts: list[dict[str, int]]) -> None:
    """Mark the sharded artifact at `uri` complete: the marker names every part's files."""
    where = S3Location.parse(uri)
    settings = S3Settings.from_env()
    _finish(settings.client(), where, merged(parts, uri), settings)


def _unfinish(client: Minio, where: S3Location, settings: S3Settings) -> None:
    try:
        client.remove_object(where.bucket, where.marker_key)  # an overwritten artifact is unfinished from here on
    except _S3_FAILURES as error:
        raise _explain(error, settings, where) from None


def _upload(client: Minio, where: S3Location, local: Path, settings: S3Settings) -> dict[str, int]:
    """Upload every file under `local` but a marker; on failure remove what was uploaded."""
    files = {
        path.relative_to(local).as_posix(): path.stat().st_size
        for path in sorted(local.rglob("*"))
        if path.is_file() and path.relative_to(local).as_posix() != COMPLETE_MARKER
    }
    uploaded: list[str] = []
    try:
        for relative in files:
            client.fput_object(where.bucket, where.key(relative), str(local / relative))
            uploaded.append(relative)
    except BaseException as error:
        _remove_quietly(client, where, uploaded)
        if isinstance(error, _S3_FAILURES):
            raise _explain(error, settings, where) from None
        raise
    return files


def _finish(client: Minio, where: S3Location, files: dict[str, int], settings: S3Settings) -> None:
    """The marker last, naming exactly `files`; then objects of earlier uploads are dropped."""
    marker = json.dumps({"upload": uuid.uuid4().hex, "files": files}, sort_keys=True).encode()
    try:
        client.put_object(where.bucket, where.marker_key, io.BytesIO(marker), len(marker),
                          content_type="application/json")
    except _S3_FAILURES as error:
        _remove_quietly(client, where, list(files))
        raise _explain(error, settings, where) from None
    _remove_stale(client, where, set(files))


def _remove_quietly(client: Minio, where: S3Location, relatives: list[str]) -> None:
    for relative in relatives:
        try:
            client.remove_object(where.bucket, where.key(relative))
        except _S3_FAILURES:
            pass  # best effort: without a marker these objects are never read


def _remove_stale(client: Minio, where: S3Location, current: set[str]) -> None:
    """Drop objects an earlier (overwritten or interrupted) upload left under the prefix."""
    try:
        stale = [
            relative
            for obj in client.list_objects(where.bucket, prefix=f"{where.prefix}/", recursive=True)
            if (relative := obj.object_name[len(where.prefix) + 1:]) not in current and relative != COMPLETE_MARKER
        ]
    except _S3_FAILURES:
        return
    _remove_quietly(client, where, stale)


class RangeReader:
    """Fills a sparse local copy of an artifact's large files with the byte ranges a reader asks
    for (ranged GETs; Manifest.fill asks for each block once); `downloaded_bytes` counts them."""

    def __init__(self, client: Minio, where: S3Location, settings: S3Settings, local: Path):
        self._client, self._where, self._settings, self._local = client, where, settings, local
        self.downloaded_bytes = 0

    def __call__(self, relative: str, offset: int, length: int) -> None:
        if length <= 0:
            return
        try:
            response = self._client.get_object(self._where.bucket, self._where.key(relative), offset=offset, length=length)
            try:
                data = response.read()
            finally:
                response.close()
                response.release_conn()
        except _S3_FAILURES as error:
            raise _explain(error, self._settings, self._where) from None
        if len(data) != length:
            raise ArtifactError(f"s3://{self._where.bucket}/{self._where.key(relative)} changed while reading; retry")
        with open(self._local / relative, "r+b") as stream:
            stream.seek(offset)
            stream.write(data)
        self.downloaded_bytes += length


@contextmanager
def opened_in_part(uri: str, large: Callable[[str], bool]) -> Iterator[tuple[Path, RangeReader]]:
    """The complete artifact at `uri` as a private local directory in which the files that are not
    `large` are downloaded whole and the large ones are sparse files of their full size, holding
    only what the yielded RangeReader has fetched; removed afterwards. For a reader that needs a
    part of each large file (a rank's shards of a model), never all of it."""
    where = S3Location.parse(uri)
    settings = S3Settings.from_env()
    client = settings.client()
    files = published_files(uri)
    local = _staging_dir(".part-")
    try:
        try:
            for relative, size in files.items():
                target = local / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                if large(relative):
                    with open(target, "wb") as stream:
                        stream.truncate(size)  # sparse: takes no disk until filled
                else:
                    client.fget_object(where.bucket, where.key(relative), str(target))
        except _S3_FAILURES as error:
            raise _explain(error, settings, where) from None
        yield local, RangeReader(client, where, settings, local)
    finally:
        shutil.rmtree(local, ignore_errors=True)
