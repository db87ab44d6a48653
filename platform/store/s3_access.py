"""Who may do what in the platform's bucket: one S3 policy (AWS IAM JSON, as MinIO reads it) per
component, so a leaked key opens only what its component needs.

- pipelines: read and write the whole bucket (runs, checkpoints, models) — steps, RayJobs, deploy.
- mlflow: read and write only the run artifacts it proxies, under its prefix.
- reader: read only — the operator's existence checks of s3:// models, `helm test`.
"""
from typing import Any

COMPONENTS = ("pipelines", "mlflow", "reader")
_READ = ["s3:GetObject"]
_WRITE = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
_BUCKET_READ = ["s3:ListBucket", "s3:GetBucketLocation"]


def component_policy(component: str, bucket: str, mlflow_prefix: str) -> dict[str, Any]:
    """The policy of `component` (one of COMPONENTS) on `bucket`."""
    bucket_arn, prefix = f"arn:aws:s3:::{bucket}", mlflow_prefix.strip("/")
    if component == "pipelines":
        statements = [_allow(_BUCKET_READ + ["s3:ListBucketMultipartUploads"], bucket_arn),
                      _allow(_WRITE, f"{bucket_arn}/*")]
    elif component == "mlflow":
        statements = [_allow(["s3:GetBucketLocation"], bucket_arn),
                      _allow(["s3:ListBucket"], bucket_arn, {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}}),
                      _allow(_WRITE, f"{bucket_arn}/{prefix}/*")]
    elif component == "reader":
        statements = [_allow(_BUCKET_READ, bucket_arn), _allow(_READ, f"{bucket_arn}/*")]
    else:
        raise ValueError(f"unknown S3 component {component!r}; one of {', '.join(COMPONENTS)}")
    return {"Version": "2012-10-17", "Statement": statements}


def policy_name(component: str) -> str:
    return f"llamaops-{component}"


def _allow(actions: list[str], resource: str, condition: dict | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": actions, "Resource": [resource]}
    if condition:
        statement["Condition"] = condition
    return statement
