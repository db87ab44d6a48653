"""A stand-in for the Kubeflow Pipelines backend's driver and launcher, for the pod tier: KFP's API
server, Argo and their images cannot run here. Given the create-run request `pipeline submit --host`
sends (the compiled pipeline spec, its Kubernetes platform spec, the runtime parameters and the
service account), it runs the root DAG's tasks in dependency order, one pod per task, built as
KFP's driver builds a task's pod:

- the executor's image, command, args and env; `{{$}}` becomes the executor input (the task's
  parameter values, resolved from the run's parameters over the spec's defaults, constants and
  upstream tasks' outputs, and where to write the outputs); `{{$.pipeline_job_name}}` the run's name;
- the task's kfp-kubernetes settings: secretAsEnv, configMapAsEnv, nodeSelector, tolerations, pod
  labels and annotations, emptyDir mounts, imagePullPolicy; the container resources the IR sets;
- the run's service account, restartPolicy Never; a failed pod is retried as the task's
  retryPolicy says, in a new pod.

Nothing else reaches the pod: no kubeconfig, no variable of this process. KFP's launcher wraps the
command and reads the executor output file in the container; here a shell wrapper prints that file
after the command and the stand-in reads it from the pod's log. Deviations: no MLMD, caching or
artifact passing (llamaops passes parameters only); tasks run one at a time.
"""
import json
import re
import time
import uuid
from dataclasses import dataclass, field

from kubernetes import client

OUTPUT_MARK = "KFP-STAND-IN-EXECUTOR-OUTPUT "
OUTPUT_DIR = "/tmp/kfp-outputs"
# Prints the executor output file (path $1) once the command (the rest) has run; keeps its exit code.
WRAPPER = f'out=$1; shift; "$@"; rc=$?; if [ -f "$out" ]; then printf "\\n{OUTPUT_MARK}"; cat "$out"; fi; exit $rc'


class TaskFailed(AssertionError):
    pass


@dataclass
class TaskRun:
    name: str
    pods: list[str] = field(default_factory=list)
    seconds: float = 0.0
    outputs: dict = field(default_factory=dict)
    log_tail: str = ""


def _order(tasks: dict) -> list[str]:
    done: list[str] = []
    while len(done) < len(tasks):
        ready = [name for name, task in tasks.items()
                 if name not in done and set(task.get("dependentTasks", [])) <= set(done)]
        assert ready, f"the DAG has a cycle among {set(tasks) - set(done)}"
        done.extend(sorted(ready))
    return done


def _substitute(text: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def _fill(constant, placeholders: dict):
    """A constant with its placeholders filled: one that is a placeholder becomes the value itself."""
    if isinstance(constant, list):
        return [_fill(item, placeholders) for item in constant]
    if isinstance(constant, dict):
        return {key: _fill(item, placeholders) for key, item in constant.items()}
    if isinstance(constant, str):
        if constant in placeholders:
            return placeholders[constant]
        return _substitute(constant, {key: str(value) for key, value in placeholders.items()})
    return constant


class KfpStandIn:
    def __init__(self, api_client, namespace: str, request: dict, timeout_s: float = 1800):
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.spec = request["pipeline_spec"]["pipeline_spec"]
        self.platform = request["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]
        defaults = {name: definition["defaultValue"] for name, definition in
                    self.spec["root"].get("inputDefinitions", {}).get("parameters", {}).items()
                    if "defaultValue" in definition}
        self.parameters = defaults | request["runtime_config"]["parameters"]  # the run's, over the spec's defaults
        self.service_account = request["service_account"]
        self.run_name = request["display_name"]
        self.timeout_s = timeout_s
        self.runs: dict[str, TaskRun] = {}

    def run(self) -> dict[str, TaskRun]:
        """Runs the DAG; a failed task raises TaskFailed. Returns each task's run, by task name."""
        tasks = self.spec["root"]["dag"]["tasks"]
        for name in _order(tasks):
            self.runs[name] = self._run_task(name, tasks[name])
        return self.runs

    def by_display_name(self) -> dict[str, TaskRun]:
        return {run.name: run for run in self.runs.values()}

    def _inputs(self, task: dict) -> dict:
        """The task's parameter values: the run's parameters and upstream outputs, then constants, in
        which the driver fills `{{$.inputs.parameters['NAME']}}` from the task's other inputs."""
        values, constants = {}, {}
        for name, source in task.get("inputs", {}).get("parameters", {}).items():
            if "componentInputParameter" in source:
                values[name] = self.parameters[source["componentInputParameter"]]
            elif "taskOutputParameter" in source:
                producer = source["taskOutputParameter"]
                values[name] = self.runs[producer["producerTask"]].outputs[producer["outputParameterKey"]]
            elif "runtimeValue" in source:
                constants[name] = source["runtimeValue"]["constant"]
            else:
                raise AssertionError(f"input {name}: a source this stand-in does not resolve: {source}")
        placeholders = {f"{{{{$.inputs.parameters['{name}']}}}}": value for name, value in values.items()}
        placeholders["{{$.pipeline_job_name}}"] = self.run_name
        return values | {name: _fill(constant, placeholders) for name, constant in constants.items()}

    def _executor_input(self, component: dict, values: dict) -> dict:
        outputs = component.get("outputDefinitions", {}).get("parameters", {})
        return {"inputs": {"parameterValues": values},
                "outputs": {"parameters": {name: {"outputFile": f"{OUTPUT_DIR}/{name}"} for name in outputs},
                            "outputFile": f"{OUTPUT_DIR}/output_metadata.json"}}

    def _pod(self, name: str, executor: str, executor_input: dict, attempt: int) -> dict:
        container_spec = self.spec["deploymentSpec"]["executors"][executor]["container"]
        config = self.platform["executors"].get(executor, {})
        placeholders = {"{{$}}": json.dumps(executor_input), "{{$.pipeline_job_name}}": self.run_name}
        command = [_substitute(part, placeholders) for part in container_spec.get("command", [])]
        args = [_substitute(part, placeholders) for part in container_spec.get("args", [])]
        env = [{"name": e["name"], "value": e["value"]} for e in container_spec.get("env", [])]
        for secret in config.get("secretAsEnv", []):
            env += [{"name": kv["envVar"], "valueFrom": {"secretKeyRef": {"name": secret["secretName"], "key": kv["secretKey"]}}}
                    for kv in secret["keyToEnv"]]
        for config_map in config.get("configMapAsEnv", []):
            env += [{"name": kv["envVar"], "valueFrom": {"configMapKeyRef": {"name": config_map["configMapName"],
                                                                              "key": kv["configMapKey"]}}}
                    for kv in config_map["keyToEnv"]]
        volumes, mounts = [], []
        for empty_dir in config.get("emptyDirMounts", []):
            volumes.append({"name": empty_dir["volumeName"], "emptyDir": {
                key: value for key, value in (("medium", empty_dir.get("medium")), ("sizeLimit", empty_dir.get("sizeLimit")))
                if value}})
            mounts.append({"name": empty_dir["volumeName"], "mountPath": empty_dir["mountPath"]})
        container = {"name": "main", "image": container_spec["image"], "command": ["sh", "-c", WRAPPER, "kfp-wrapper",
                     executor_input["outputs"]["outputFile"], *command, *args], "env": env, "volumeMounts": mounts,
                     "resources": _resources(container_spec.get("resources", {}))}
        if config.get("imagePullPolicy"):
            container["imagePullPolicy"] = config["imagePullPolicy"]
        metadata = config.get("podMetadata", {})
        spec = {"restartPolicy": "Never", "serviceAccountName": self.service_account, "containers": [container],
                "volumes": volumes}
        if config.get("nodeSelector"):
            spec["nodeSelector"] = config["nodeSelector"].get("labels", {})
        if config.get("tolerations"):
            spec["tolerations"] = [{key: value for key, value in t.items() if value is not None}
                                   for t in config["tolerations"]]
        pod_name = re.sub(r"[^a-z0-9-]", "-", f"{self.run_name}-{name}-{attempt}-{uuid.uuid4().hex[:5]}".lower())
        pod_name = pod_name[-63:].lstrip("-")
        return {"apiVersion": "v1", "kind": "Pod", "spec": spec, "metadata": {
            "name": pod_name, "labels": {**metadata.get("labels", {}), "kfp-stand-in/task": re.sub(r"[^A-Za-z0-9-]", "-", name)},
            "annotations": metadata.get("annotations", {})}}

    def _run_task(self, name: str, task: dict) -> TaskRun:
        component = self.spec["components"][task["componentRef"]["name"]]
        executor = component["executorLabel"]
        executor_input = self._executor_input(component, self._inputs(task))
        retries = task.get("retryPolicy", {}).get("maxRetryCount", 0)
        result = TaskRun(task.get("taskInfo", {}).get("name", name))
        t0 = time.monotonic()
        for attempt in range(retries + 1):
            pod = self._pod(result.name, executor, executor_input, attempt)
            self.core.create_namespaced_pod(self.namespace, pod)
            result.pods.append(pod["metadata"]["name"])
            phase = self._wait(pod["metadata"]["name"])
            log = self.core.read_namespaced_pod_log(pod["metadata"]["name"], self.namespace)
            result.log_tail = log[-6000:]
            if phase == "Succeeded":
                output = json.loads(log.rsplit(OUTPUT_MARK, 1)[1]) if OUTPUT_MARK in log else {}
                result.outputs = output.get("parameterValues", {})
                result.seconds = time.monotonic() - t0
                return result
        raise TaskFailed(f"task {name} failed in pod {result.pods[-1]} after {len(result.pods)} attempt(s):\n"
                         f"{result.log_tail}")

    def _wait(self, pod: str) -> str:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            phase = self.core.read_namespaced_pod(pod, self.namespace).status.phase
            if phase in ("Succeeded", "Failed"):
                return phase
            time.sleep(1)
        raise TaskFailed(f"pod {pod} did not finish within {self.timeout_s:.0f} s")


def _resources(resources: dict) -> dict:
    """The IR's container resources as a pod's (KFP 2: cpuRequest/cpuLimit in cores, memory in GB)."""
    pairs = {"requests": {"cpu": resources.get("resourceCpuRequest"), "memory": resources.get("resourceMemoryRequest")},
             "limits": {"cpu": resources.get("resourceCpuLimit"), "memory": resources.get("resourceMemoryLimit")}}
    accelerator = resources.get("accelerator", {})
    if accelerator.get("resourceType"):
        pairs["limits"][accelerator["resourceType"]] = accelerator.get("resourceCount") or str(accelerator.get("count"))
    return {kind: {k: v for k, v in amounts.items() if v} for kind, amounts in pairs.items()
            if any(amounts.values())}
