"""`eval code --sandbox pod`: the code-sandbox Pod and ConfigMaps as built, and the caller's flow
against a SIMULATED Kubernetes API (simulated_core_api.py): one pod per evaluation, outcomes in
order, one line for every failure, and nothing left behind."""
import json

import kubernetes_validate
import pytest
from typer.testing import CliRunner

from llamaops.cli.main import app
from llamaops.platform.eval import sandbox
from llamaops.platform.eval.humaneval import evaluate_humaneval, load_humaneval
from llamaops.platform.eval.sandbox import SandboxLimits
from llamaops.platform.eval.sandbox_pod import PodSandbox, SandboxPodError
from llamaops.platform.eval.sandbox_pod_manifests import (
    CONFIG_MAP_BYTES,
    config_maps,
    deadline_seconds,
    pod,
    program_key,
)

from .simulated_core_api import UNSCHEDULABLE, SimulatedAuthorizationV1Api, SimulatedCoreV1Api, status

CANARY = "canary-91b4"
LIMITS = SandboxLimits(cpu_seconds=1, wall_seconds=3, memory_bytes=512 << 20, max_processes=8)


def test_the_pod_is_restricted_tokenless_and_carries_nothing_of_the_caller(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CANARY)
    manifest = pod("cs", "team-a", "llamaops:1", ["cs-0", "cs-1"], 10, LIMITS)
    kubernetes_validate.validate(manifest, "1.30.0", strict=True)  # no misspelt field passes silently
    assert CANARY not in json.dumps(manifest)
    spec, [container] = manifest["spec"], manifest["spec"]["containers"]
    assert manifest["metadata"]["labels"] == {"app.kubernetes.io/part-of": "llamaops", "llamaops.io/component": "code-sandbox"}
    assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
    assert spec["restartPolicy"] == "Never" and "serviceAccountName" not in spec
    assert not {"hostNetwork", "hostPID", "hostIPC"} & set(spec)
    security = spec["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] > 0 and security["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                            "readOnlyRootFilesystem": True}
    assert [e["name"] for e in container["env"]] == ["HOME"] and "envFrom" not in container
    assert set(container["resources"]["limits"]) >= {"cpu", "memory"}
    assert container["command"][:4] == ["python3", "-I", "-m", "llamaops.platform.eval.sandbox_batch"]
    assert {m["mountPath"]: m.get("readOnly", False) for m in container["volumeMounts"]} == {"/tmp": False, "/programs": True}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["tmp"] == {"name": "tmp", "emptyDir": {}}
    assert volumes["programs"]["projected"]["sources"] == [{"configMap": {"name": "cs-0"}}, {"configMap": {"name": "cs-1"}}]


def test_the_deadline_covers_every_program_running_to_its_wall_limit():
    assert pod("cs", "ns", "i", ["cs-0"], 164, LIMITS)["spec"]["activeDeadlineSeconds"] == deadline_seconds(164, LIMITS)
    assert deadline_seconds(164, LIMITS) > 164 * LIMITS.wall_seconds
    assert deadline_seconds(328, LIMITS) > deadline_seconds(164, LIMITS)


def test_programs_are_split_across_config_maps_under_the_size_bound():
    sources = [f"# {i}\n" + "x = 1\n" * (20_000 + i) for i in range(40)]  # ~120 KiB each
    maps = config_maps("cs", "ns", sources)
    assert len(maps) > 1
    for m in maps:
        kubernetes_validate.validate(m, "1.30.0", strict=True)
        assert sum(len(k) + len(v.encode()) for k, v in m["data"].items()) <= CONFIG_MAP_BYTES
        assert m["metadata"]["labels"]["llamaops.io/component"] == "code-sandbox"
    merged = {k: v for m in maps for k, v in m["data"].items()}
    assert sorted(merged) == [program_key(i) for i in range(40)] and [merged[program_key(i)] for i in range(40)] == sources
    with pytest.raises(ValueError, match="more than a ConfigMap holds"):
        config_maps("cs", "ns", ["x" * (CONFIG_MAP_BYTES + 1)])


def test_an_evaluation_runs_in_one_pod_in_order_and_leaves_nothing_simulated(monkeypatch, tmp_path):
    # Namespaces refused here, as in a restricted pod: the pod mode does not need them.
    monkeypatch.setattr(sandbox, "_probe", lambda: "unshare user, mount, PID and network namespaces: Operation not permitted")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CANARY)
    api = SimulatedCoreV1Api(tmp_path)
    picked = load_humaneval()[:2]

    def complete(prompts, n):
        by_prompt = {p.prompt: p for p in picked}
        return [[by_prompt[prompt].canonical_solution, "    return None\n"] for prompt in prompts]

    metrics, results = evaluate_humaneval(complete, picked, samples=2, ks=[1], limits=LIMITS,
                                          run_programs=PodSandbox("team-a", "llamaops:1", api=api))
    assert [r.statuses for r in results] == [["passed", "failed"], ["passed", "failed"]]
    assert metrics["pass@1"] == 0.5
    assert len(api.created_pods) == 1 and api.pods == {} and api.config_maps == {}
    assert CANARY not in json.dumps(api.created_pods)


def test_outcomes_come_back_in_program_order_simulated(tmp_path):
    api = SimulatedCoreV1Api(tmp_path)
    outcomes = PodSandbox("ns", "i", api=api)(["print(0)", "raise SystemExit(3)", "print('two')"], LIMITS)
    assert [(o.status, o.exit_code, o.output) for o in outcomes] == [
        ("passed", 0, "0\n"), ("failed", 3, ""), ("passed", 0, "two\n")]


def _fails(api: SimulatedCoreV1Api, **kwargs) -> str:
    with pytest.raises(SandboxPodError) as failed:
        PodSandbox("team-a", "llamaops:1", api=api, **kwargs)(["print(1)"], LIMITS)
    assert "\n" not in str(failed.value)
    assert api.pods == {} and api.config_maps == {}, "objects left behind"
    return str(failed.value)


def test_a_failed_pod_is_one_line_and_leaves_nothing_simulated(tmp_path):
    ended = status("Failed", "DeadlineExceeded", "Pod was active on the node longer than the specified deadline")
    message = _fails(SimulatedCoreV1Api(tmp_path, ends=ended, log="partial\n"))
    assert "failed (DeadlineExceeded: Pod was active" in message and "'partial'" in message and "kubectl get events" in message
    # A pod that never ran has no log to read: its reason is still what the line says.
    evicted = status("Failed", "Evicted", "The node was low on resource: ephemeral-storage.")
    message = _fails(SimulatedCoreV1Api(tmp_path, ends=evicted, forbid=("read_namespaced_pod_log",)))
    assert "failed (Evicted: The node was low on resource" in message and "last log line: none" in message


def test_forbidden_names_the_rbac_the_caller_needs_and_leaves_nothing_simulated(tmp_path):
    message = _fails(SimulatedCoreV1Api(tmp_path, forbid=("create_namespaced_pod",)))
    assert message.startswith("not allowed to create pods in namespace team-a (Forbidden)")
    assert "create and delete on configmaps and pods, get on pods and pods/log" in message


def test_missing_permissions_are_named_before_anything_is_generated_simulated(tmp_path):
    api, authz = SimulatedCoreV1Api(tmp_path), SimulatedAuthorizationV1Api({("get", "pods", "log"), ("delete", "pods", "")})
    with pytest.raises(SandboxPodError) as refused:
        PodSandbox("team-a", "llamaops:1", api=api, authz=authz)
    assert str(refused.value).startswith("not allowed to delete pods, get pods/log in namespace team-a:")
    assert "\n" not in str(refused.value) and api.created_pods == [] and api.config_maps == {}
    allowed = SimulatedAuthorizationV1Api()
    PodSandbox("team-a", "llamaops:1", api=api, authz=allowed)
    assert {r for _, r, _ in allowed.asked} == {"configmaps", "pods"} and ("get", "pods", "log") in allowed.asked


def test_an_unschedulable_pod_is_given_up_after_its_deadline_simulated(tmp_path):
    now = [0.0]
    message = _fails(SimulatedCoreV1Api(tmp_path, ends=UNSCHEDULABLE), clock=lambda: now[0],
                     sleep=lambda seconds: now.__setitem__(0, now[0] + seconds), poll_seconds=30)
    assert now[0] >= deadline_seconds(1, LIMITS)
    assert "did not finish within" in message and "not scheduled: 0/3 nodes are available: 3 Insufficient cpu." in message


def test_a_log_without_the_result_line_is_one_line_simulated(tmp_path):
    message = _fails(SimulatedCoreV1Api(tmp_path, ends=status("Succeeded"), log="ModuleNotFoundError: No module named x\n"))
    assert "did not report 1 outcomes" in message and "ModuleNotFoundError" in message


def test_eval_code_with_no_cluster_says_one_line_and_exits_non_zero(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    result = CliRunner().invoke(app, ["eval", "code", str(tmp_path / "no-model-needed"), "--sandbox", "pod"])
    assert result.exit_code == 3 and result.stdout == ""
    assert result.stderr.startswith("error: no Kubernetes cluster to run the code-sandbox pod in") and result.stderr.count("\n") == 1


def test_pod_options_without_the_pod_sandbox_are_one_line(tmp_path):
    result = CliRunner().invoke(app, ["eval", "code", str(tmp_path), "--namespace", "team-a"])
    words = " ".join(result.stderr.replace("│", " ").split())  # the usage error comes in a box
    assert result.exit_code == 2 and "--namespace and --image choose the code-sandbox pod: give --sandbox pod too" in words
