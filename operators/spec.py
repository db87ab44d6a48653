"""The LlamaDeployment custom resource: its typed spec and the CRD that makes the API server
reject invalid specs (API 1.20 has no CEL, so every rule is a structural-schema rule)."""
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

GROUP, VERSION, PLURAL, KIND = "llamaops.io", "v1alpha1", "llamadeployments", "LlamaDeployment"
# s3:// checkpoint, MLflow registry model (models:/NAME@ALIAS or models:/NAME/VERSION), or
# file:// (dev clusters where operator and server share a filesystem).
MODEL_PATTERN = r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+|models:/[A-Za-z0-9._-]+(@[A-Za-z0-9._-]+|/[0-9]+)|file:///.+)$"


class Autoscaling(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    minReplicas: int = Field(1, ge=1)
    maxReplicas: int = Field(1, ge=1, le=64)
    targetCPUUtilization: int = Field(70, ge=1, le=100)
    # Load: the pods' average requests in flight (llamaops_requests_in_flight through a metrics
    # adapter); set, it replaces CPU, which says little about a GPU server's load.
    targetRequestsInFlight: int | None = Field(None, ge=1, le=1024)

    @model_validator(mode="after")
    def _bounds(self) -> "Autoscaling":
        if self.minReplicas > self.maxReplicas:
            raise ValueError("autoscaling.minReplicas must be <= autoscaling.maxReplicas")
        return self


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    cpu: str = "2"
    memory: str = "8Gi"


class StorageSecretKeys(BaseModel):
    """The keys of storageSecret that hold the S3 access key id and secret (the chart's s3.secretKeys)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    accessKey: str = Field("access-key", pattern=r"^[-._a-zA-Z0-9]{1,253}$")
    secretKey: str = Field("secret-key", pattern=r"^[-._a-zA-Z0-9]{1,253}$")


class DeploymentSpec(BaseModel):
    """What a user asks for; the operator validates again (defence in depth) before building."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str = Field(pattern=MODEL_PATTERN)
    nodePool: str = Field(min_length=1, max_length=63)
    replicas: int = Field(1, ge=0, le=64)
    tensorParallelSize: int = Field(1, ge=1, le=16)
    engine: Literal["llamaops", "vllm"] = "llamaops"
    quantization: Literal["fp8"] | None = None  # either engine's --quantization
    servedModelName: str = Field("llama", pattern=r"^[A-Za-z0-9._-]{1,63}$")
    resources: Resources = Resources()
    autoscaling: Autoscaling | None = None
    apiKeySecret: str | None = Field(None, min_length=1, max_length=253)
    # Secret in this namespace holding credentials for s3:// models, under storageSecretKeys.
    storageSecret: str | None = Field(None, min_length=1, max_length=253)
    storageSecretKeys: StorageSecretKeys = StorageSecretKeys()


def _schema() -> dict:
    quantity = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti)?$"}
    spec = {
        "type": "object",
        "required": ["model", "nodePool"],
        "properties": {
            "model": {"type": "string", "pattern": MODEL_PATTERN},
            "nodePool": {"type": "string", "minLength": 1, "maxLength": 63},
            "replicas": {"type": "integer", "minimum": 0, "maximum": 64, "default": 1},
            "tensorParallelSize": {"type": "integer", "minimum": 1, "maximum": 16, "default": 1},
            "engine": {"type": "string", "enum": ["llamaops", "vllm"], "default": "llamaops"},
            "quantization": {"type": "string", "enum": ["fp8"]},
            "servedModelName": {"type": "string", "pattern": r"^[A-Za-z0-9._-]{1,63}$", "default": "llama"},
            "resources": {
                "type": "object",
                "properties": {"cpu": quantity, "memory": quantity},
            },
            "apiKeySecret": {"type": "string", "minLength": 1, "maxLength": 253},
            "storageSecret": {"type": "string", "minLength": 1, "maxLength": 253},
            "storageSecretKeys": {
                "type": "object",
                "properties": {
                    "accessKey": {"type": "string", "pattern": r"^[-._a-zA-Z0-9]{1,253}$", "default": "access-key"},
                    "secretKey": {"type": "string", "pattern": r"^[-._a-zA-Z0-9]{1,253}$", "default": "secret-key"},
                },
            },
            "autoscaling": {
                "type": "object",
                "required": ["maxReplicas"],
                "properties": {
                    "minReplicas": {"type": "integer", "minimum": 1, "maximum": 64, "default": 1},
                    "maxReplicas": {"type": "integer", "minimum": 1, "maximum": 64},
                    "targetCPUUtilization": {"type": "integer", "minimum": 1, "maximum": 100, "default": 70},
                    "targetRequestsInFlight": {"type": "integer", "minimum": 1, "maximum": 1024},
                },
            },
        },
    }
    status = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {"type": "object", "required": ["spec"], "properties": {"spec": spec, "status": status}}


def crd() -> dict:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition (the chart ships this same object)."""
    column = lambda name, path, kind="string": {"name": name, "type": kind, "jsonPath": path}  # noqa: E731
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": PLURAL, "singular": "llamadeployment", "kind": KIND, "shortNames": ["llamadep"]},
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": _schema()},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        column("Model", ".spec.model"),
                        column("Pool", ".spec.nodePool"),
                        column("Ready", '.status.conditions[?(@.type=="Ready")].status'),
                    ],
                }
            ],
        },
    }
