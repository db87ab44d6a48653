"""Each component reaches S3 with its own key: with the bundled MinIO the chart makes one per
component (a hook Job turns them into MinIO users with scoped policies) and only MinIO and that Job
hold the root key; with an external S3 the user names them, or the pipelines' key serves all."""
import json

import pytest
from chart_render import render

pytestmark = pytest.mark.cluster


def _secret_refs(doc: dict) -> dict[str, set[str]]:
    """Container name -> the Secrets its environment reads."""
    spec = doc["spec"]["template"]["spec"] if "template" in doc["spec"] else doc["spec"]
    return {c["name"]: {e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", []) if "valueFrom" in e
                        and "secretKeyRef" in e["valueFrom"]} for c in spec["containers"]}


def _readers_of(r, secret: str) -> set[str]:
    return {d["metadata"]["name"] for d in r.docs if d["kind"] in {"Deployment", "StatefulSet", "Job", "Pod"}
            for refs in _secret_refs(d).values() if secret in refs}


def test_bundled_minio_gives_each_component_its_own_user_and_keeps_the_root_key_to_itself(helm):
    r = render(helm, "ml", "platform")
    assert _readers_of(r, "ml-llamaops-minio-root") == {"ml-llamaops-minio", "ml-llamaops-minio-setup"}
    assert _readers_of(r, "ml-llamaops-s3-mlflow") == {"ml-llamaops-mlflow", "ml-llamaops-minio-setup"}
    assert _readers_of(r, "ml-llamaops-s3-reader") == {"ml-llamaops-operator", "ml-llamaops-test-platform",
                                                       "ml-llamaops-minio-setup"}
    assert _readers_of(r, "ml-llamaops-s3") == {"ml-llamaops-minio-setup"}  # pipelines: through the contract
    assert r.contract().s3Secret.name == "ml-llamaops-s3"
    job = r.get("Job", "ml-llamaops-minio-setup")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python3", "-m", "llamaops.platform.store.minio_setup"]
    env = {e["name"] for e in container["env"]}
    assert {f"LLAMAOPS_S3_{c}_{k}_KEY" for c in ("PIPELINES", "MLFLOW", "READER") for k in ("ACCESS", "SECRET")} <= env
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/part-of"] == "llamaops"  # MinIO lets it in
    # Distinct MinIO users: the Job refuses components that share an access key.
    access = {name: r.get("Secret", name)["data"]["access-key"]
              for name in ("ml-llamaops-s3", "ml-llamaops-s3-mlflow", "ml-llamaops-s3-reader")}
    assert len(set(access.values())) == 3
    hook = r.get("Pod", "ml-llamaops-test-platform")["spec"]["containers"][0]["args"][0]
    assert "the read-only S3 key could write" in hook  # helm test checks the reader cannot write


def test_external_s3_uses_the_named_component_keys_or_the_pipelines_key(helm):
    external = {"s3": {"existingSecret": "s3-pipelines", "external": {"enabled": True, "endpoint": "https://s3.example"}}}
    r = render(helm, "ml", "platform", external)
    assert not [d for d in r.docs if d["kind"] == "Job"] and "ml-llamaops-minio-root" not in json.dumps(r.docs)
    assert _readers_of(r, "s3-pipelines") >= {"ml-llamaops-mlflow", "ml-llamaops-operator", "ml-llamaops-test-platform"}
    assert "the read-only S3 key could write" not in r.get("Pod", "ml-llamaops-test-platform")["spec"]["containers"][0]["args"][0]

    external["s3"]["componentSecrets"] = {"mlflow": "s3-mlflow", "reader": "s3-readonly"}
    r = render(helm, "ml", "platform", external)
    assert _readers_of(r, "s3-mlflow") == {"ml-llamaops-mlflow"}
    assert _readers_of(r, "s3-readonly") == {"ml-llamaops-operator", "ml-llamaops-test-platform"}
    assert _readers_of(r, "s3-pipelines") == set()
