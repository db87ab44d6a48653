"""Each component's S3 policy allows what the component does and nothing of what it must not,
read with a small evaluator of the policy language (Allow statements, `*` wildcards, s3:prefix)."""
from fnmatch import fnmatchcase

import pytest

from llamaops.platform.store.s3_access import component_policy

BUCKET = "arn:aws:s3:::llamaops"


def allowed(policy: dict, action: str, resource: str, prefix: str | None = None) -> bool:
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow" or action not in statement["Action"]:
            continue
        if not any(fnmatchcase(resource, pattern) for pattern in statement["Resource"]):
            continue
        wanted = statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
        if wanted is None or (prefix is not None and any(fnmatchcase(prefix, p) for p in wanted)):
            return True
    return False


@pytest.mark.parametrize("component, action, resource, prefix, expected", [
    ("pipelines", "s3:PutObject", f"{BUCKET}/runs/r1/pretrain/model.safetensors", None, True),
    ("pipelines", "s3:DeleteObject", f"{BUCKET}/runs/r1/pretrain-checkpoints/step_000010/_COMPLETE", None, True),
    ("pipelines", "s3:ListBucket", BUCKET, "runs/", True),
    ("pipelines", "s3:PutObject", "arn:aws:s3:::another-bucket/x", None, False),
    ("mlflow", "s3:PutObject", f"{BUCKET}/mlflow/1/abc/artifacts/report.json", None, True),
    ("mlflow", "s3:ListBucket", BUCKET, "mlflow/1/", True),
    ("mlflow", "s3:GetObject", f"{BUCKET}/runs/r1/pretrain/model.safetensors", None, False),
    ("mlflow", "s3:PutObject", f"{BUCKET}/models/llama/model.safetensors", None, False),
    ("mlflow", "s3:ListBucket", BUCKET, "runs/", False),
    ("reader", "s3:GetObject", f"{BUCKET}/runs/r1/safety/_COMPLETE", None, True),
    ("reader", "s3:ListBucket", BUCKET, "runs/", True),
    ("reader", "s3:PutObject", f"{BUCKET}/runs/r1/safety/_COMPLETE", None, False),
    ("reader", "s3:DeleteObject", f"{BUCKET}/runs/r1/safety/_COMPLETE", None, False),
])
def test_each_component_may_do_its_work_and_no_more(component, action, resource, prefix, expected):
    assert allowed(component_policy(component, "llamaops", "mlflow/"), action, resource, prefix) is expected


def test_an_unknown_component_is_named_in_the_error():
    with pytest.raises(ValueError, match="unknown S3 component 'operator'; one of pipelines, mlflow, reader"):
        component_policy("operator", "llamaops", "mlflow")
