"""`llamaops deploy render`: a LlamaDeployment manifest -> the objects the operator would apply."""
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from llamaops.cli.main import app

CHART_VALUES = Path(__file__).parents[3] / "charts" / "llamaops" / "values.yaml"  # its nodePools: h100, 8 GPUs


def _render(tmp_path: Path, spec: dict, *extra: str):
    manifest = {"apiVersion": "llamaops.io/v1alpha1", "kind": "LlamaDeployment",
                "metadata": {"name": "llama", "namespace": "serving"}, "spec": spec}
    path = tmp_path / "llama.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return CliRunner().invoke(app, ["deploy", "render", str(path), "--pools", str(CHART_VALUES), *extra])


def _objects(result) -> dict[str, dict]:
    assert result.exit_code == 0, result.output
    return {o["kind"]: o for o in yaml.safe_load_all(result.stdout)}


def _pod(objects: dict[str, dict]) -> dict:
    return objects["Deployment"]["spec"]["template"]["spec"]


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


@pytest.mark.parametrize("kubernetes", ["1.27.0", "1.33.0"])
def test_the_llamaops_engine_runs_on_the_pods_gpus_split_over_all_of_them(tmp_path, kubernetes):
    objects = _objects(_render(tmp_path, {"model": "models:/llama@production", "nodePool": "h100",
                                          "tensorParallelSize": 8, "quantization": "fp8",
                                          "autoscaling": {"minReplicas": 1, "maxReplicas": 3}}))
    assert set(objects) == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    server = _pod(objects)["containers"][0]
    assert server["command"][:3] == ["llamaops", "serve", "models:/llama@production"]
    assert (_option(server["command"], "--device"), _option(server["command"], "--tensor-parallel")) == ("cuda", "8")
    assert _option(server["command"], "--quantization") == "fp8"
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in server["volumeMounts"]
    assert "ownerReferences" not in objects["Deployment"]["metadata"]  # nothing to own them in GitOps
    for body in objects.values():
        kubernetes_validate.validate(body, kubernetes, strict=True)


@pytest.mark.parametrize("kubernetes", ["1.27.0", "1.33.0"])
def test_vllm_serves_the_export_its_init_container_writes(tmp_path, kubernetes):
    objects = _objects(_render(tmp_path, {"model": "s3://models/llama-405b", "nodePool": "h100", "engine": "vllm",
                                          "tensorParallelSize": 8, "quantization": "fp8", "apiKeySecret": "serving-key"}))
    pod = _pod(objects)
    export, server = pod["initContainers"][0], pod["containers"][0]
    assert export["command"] == ["llamaops", "model", "export-hf", "s3://models/llama-405b", "/models/hf", "--overwrite"]
    assert _option(server["command"], "--model") == "/models/hf"
    assert _option(server["command"], "--tensor-parallel-size") == "8"
    assert _option(server["command"], "--served-model-name") == "llama"
    assert _option(server["command"], "--quantization") == "fp8"  # 405B on one 8-GPU node, as the paper served it
    assert {"name": "hf-model", "mountPath": "/models"} in export["volumeMounts"]
    assert {"name": "hf-model", "mountPath": "/models", "readOnly": True} in server["volumeMounts"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in server["volumeMounts"]
    # The key reaches vLLM where it reads it, by reference; the export never sees it.
    key = [e for e in server["env"] if e["name"] == "VLLM_API_KEY"]
    assert key == [{"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "serving-key", "key": "api-key"}}}]
    assert not [e for e in export["env"] if "secretKeyRef" in e.get("valueFrom", {}) and e["name"].endswith("API_KEY")]
    for body in objects.values():
        kubernetes_validate.validate(body, kubernetes, strict=True)


@pytest.mark.parametrize("spec, words", [
    ({"model": "s3://models/m", "nodePool": "a100"}, "UnknownNodePool"),
    ({"model": "s3://models/m", "nodePool": "h100", "tensorParallelSize": 16}, "PoolTooSmall"),
    ({"model": "s3://models/m", "nodePool": "h100", "replicas": -1}, "spec.replicas"),
])
def test_a_manifest_the_operator_would_refuse_is_one_line(tmp_path, spec, words):
    result = _render(tmp_path, spec)
    assert result.exit_code == 2
    assert words in result.output and len(result.output.strip().splitlines()) == 1
