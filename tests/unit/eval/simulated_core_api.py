"""A SIMULATED Kubernetes CoreV1Api (and AuthorizationV1Api's access reviews): the few methods
sandbox_pod.PodSandbox calls, with objects
kept in dicts and no server. Its "kubelet" runs the Pod's own command here, as a subprocess, on
the programs of the ConfigMaps the Pod projects, unless told to end the pod another way. It proves
the caller's flow, not what a real API server or kubelet does (nothing here is admission, RBAC or
scheduling)."""
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from kubernetes.client.exceptions import ApiException

import llamaops
from llamaops.platform.eval.sandbox_pod_manifests import PROGRAMS_DIR


def status(phase: str, reason: str | None = None, message: str | None = None, conditions=()) -> SimpleNamespace:
    return SimpleNamespace(phase=phase, reason=reason, message=message, conditions=list(conditions),
                           container_statuses=[])


UNSCHEDULABLE = status("Pending", conditions=[SimpleNamespace(
    type="PodScheduled", status="False", reason="Unschedulable", message="0/3 nodes are available: 3 Insufficient cpu.")])


class SimulatedCoreV1Api:
    def __init__(self, work: Path, forbid: tuple[str, ...] = (), ends: SimpleNamespace | None = None,
                 log: str | None = None) -> None:
        self.work, self.forbid, self.ends, self.fixed_log = work, forbid, ends, log
        self.config_maps: dict[str, dict] = {}
        self.pods: dict[str, dict] = {}
        self.created_pods: list[dict] = []
        self.logs: dict[str, str] = {}
        self.statuses: dict[str, SimpleNamespace] = {}

    def _answer(self, method: str) -> None:
        if method in self.forbid:
            raise ApiException(status=403, reason="Forbidden")

    def create_namespaced_config_map(self, namespace: str, body: dict) -> None:
        self._answer("create_namespaced_config_map")
        self.config_maps[body["metadata"]["name"]] = body

    def create_namespaced_pod(self, namespace: str, body: dict) -> None:
        self._answer("create_namespaced_pod")
        missing = [s["configMap"]["name"] for v in body["spec"]["volumes"] if "projected" in v
                   for s in v["projected"]["sources"] if s["configMap"]["name"] not in self.config_maps]
        assert not missing, f"the pod was created before its ConfigMaps {missing}"
        self.pods[body["metadata"]["name"]] = body
        self.created_pods.append(body)

    def read_namespaced_pod(self, name: str, namespace: str, **_) -> SimpleNamespace:
        self._answer("read_namespaced_pod")
        if name not in self.statuses:
            self.statuses[name] = self.ends or self._kubelet(self.pods[name])
        return SimpleNamespace(status=self.statuses[name])

    def read_namespaced_pod_log(self, name: str, namespace: str, container: str, _preload_content: bool = True,
                                **_) -> SimpleNamespace:
        self._answer("read_namespaced_pod_log")
        assert _preload_content is False, "the client would turn a JSON log into a Python repr"
        return SimpleNamespace(data=(self.fixed_log if self.fixed_log is not None else self.logs.get(name, "")).encode())

    def delete_namespaced_pod(self, name: str, namespace: str, **_) -> None:
        self._delete(self.pods, name)

    def delete_namespaced_config_map(self, name: str, namespace: str, **_) -> None:
        self._delete(self.config_maps, name)

    @staticmethod
    def _delete(objects: dict, name: str) -> None:
        if objects.pop(name, None) is None:
            raise ApiException(status=404, reason="Not Found")

    def _kubelet(self, pod: dict) -> SimpleNamespace:
        """Run the container's command here on the projected programs (the local interpreter
        without -I, so it finds llamaops through PYTHONPATH as the image's finds it installed)."""
        folder = self.work / pod["metadata"]["name"]
        folder.mkdir(parents=True)
        for volume in pod["spec"]["volumes"]:
            for source in volume.get("projected", {}).get("sources", []):
                for key, text in self.config_maps[source["configMap"]["name"]]["data"].items():
                    (folder / key).write_text(text)
        command = pod["spec"]["containers"][0]["command"]
        assert command[:2] == ["python3", "-I"]
        argv = [sys.executable, *(str(folder) if arg == PROGRAMS_DIR else arg for arg in command[2:])]
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(Path(llamaops.__file__).parents[1]), "TMPDIR": str(self.work)}
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        self.logs[pod["metadata"]["name"]] = done.stdout + done.stderr
        return status("Succeeded" if done.returncode == 0 else "Failed")


class SimulatedAuthorizationV1Api:
    """SelfSubjectAccessReviews answered from a set of denied (verb, resource, subresource)."""

    def __init__(self, denied: set[tuple[str, str, str]] = frozenset()) -> None:
        self.denied, self.asked = denied, []

    def create_self_subject_access_review(self, body: dict, **_) -> SimpleNamespace:
        a = body["spec"]["resourceAttributes"]
        self.asked.append((a["verb"], a["resource"], a["subresource"]))
        return SimpleNamespace(status=SimpleNamespace(allowed=self.asked[-1] not in self.denied))
