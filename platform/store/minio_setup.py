"""Provision the chart's bundled MinIO: the bucket, and one MinIO user per component with its
bucket-scoped policy (s3_access.py). Run by the chart's hook Job after every install and upgrade
(`python -m llamaops.platform.store.minio_setup`), the only pod besides MinIO that holds the root
key. Idempotent: users and policies are created or updated, the bucket made if missing.

Environment: LLAMAOPS_S3_ENDPOINT, MinIO's root key as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, LLAMAOPS_S3_BUCKET,
LLAMAOPS_MLFLOW_PREFIX, and for each component C of s3_access.COMPONENTS the key pair its pods use:
LLAMAOPS_S3_<C>_ACCESS_KEY, LLAMAOPS_S3_<C>_SECRET_KEY.
"""
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlparse

import urllib3
from minio import Minio, MinioAdmin
from minio.credentials import StaticProvider
from minio.error import MinioAdminException, MinioException

from .s3 import S3Settings
from .s3_access import COMPONENTS, component_policy, policy_name
from .uri import ArtifactError

READY_SECONDS = 300.0  # MinIO starts alongside this Job


@dataclass(frozen=True)
class ComponentKeys:
    access_key: str
    secret_key: str = field(repr=False)


def provision(admin: MinioAdmin, client: Minio, bucket: str, mlflow_prefix: str,
              keys: Mapping[str, ComponentKeys]) -> None:
    """Make the bucket if missing; for every component, its policy, its user, and the one on the other."""
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    for component in COMPONENTS:
        name = policy_name(component)
        admin.policy_add(name, policy=component_policy(component, bucket, mlflow_prefix))
        admin.user_add(keys[component].access_key, keys[component].secret_key)
        admin.policy_set(name, user=keys[component].access_key)


def keys_from_env(env: Mapping[str, str]) -> dict[str, ComponentKeys]:
    keys, missing = {}, []
    for component in COMPONENTS:
        names = [f"LLAMAOPS_S3_{component.upper()}_{part}_KEY" for part in ("ACCESS", "SECRET")]
        missing += [name for name in names if not env.get(name)]
        keys[component] = ComponentKeys(env.get(names[0], ""), env.get(names[1], ""))
    if missing:
        raise ArtifactError(f"minio setup needs {', '.join(missing)}; the chart's hook Job sets them from the Secrets")
    distinct = {k.access_key for k in keys.values()}
    if len(distinct) != len(COMPONENTS):
        raise ArtifactError("minio setup: the components share an access key; give each its own Secret")
    return keys


def main() -> int:
    env = os.environ
    try:
        root = S3Settings.from_env()  # the endpoint, and MinIO's root key as AWS_* (one parser for both)
        bucket, prefix = env.get("LLAMAOPS_S3_BUCKET", ""), env.get("LLAMAOPS_MLFLOW_PREFIX", "mlflow")
        if not bucket:
            raise ArtifactError("minio setup needs LLAMAOPS_S3_BUCKET")
        keys = keys_from_env(env)
        client = root.client()
        endpoint = urlparse(root.endpoint)
        admin = MinioAdmin(endpoint=endpoint.netloc, credentials=StaticProvider(root.access_key, root.secret_key),
                           secure=endpoint.scheme == "https")
        _wait_until_ready(client, bucket)
        provision(admin, client, bucket, prefix, keys)
    except ArtifactError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (MinioException, MinioAdminException, urllib3.exceptions.HTTPError, OSError) as error:
        print(f"error: MinIO at {env.get('LLAMAOPS_S3_ENDPOINT')} refused the setup: {error}", file=sys.stderr)
        return 1
    print(f"minio setup: bucket {bucket}, users {', '.join(k.access_key for k in keys.values())}")
    return 0


def _wait_until_ready(client: Minio, bucket: str) -> None:
    """Until MinIO answers at all; an answer that refuses (a wrong root key) fails at once."""
    deadline = time.monotonic() + READY_SECONDS
    while True:
        try:
            client.bucket_exists(bucket)
            return
        except (urllib3.exceptions.HTTPError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())
