"""What KubeRay makes of a RayJob (its ray-operator/controllers/ray/common/{pod,job,service}.go),
for the KubeRay stand-in (kuberay_stand_in.py): the Ray pods from the RayJob's own templates, the
head Service and the submitter Job. Pure functions of the RayJob and its status."""
import copy
import math

GROUP, VERSION, PLURAL = "ray.io", "v1", "rayjobs"
GCS_PORT, DASHBOARD_PORT, AGENT_PORT, METRICS_PORT = 6379, 8265, 52365, 8080
SERVICE_PORTS = {"client": 10001, "dashboard": DASHBOARD_PORT, "gcs-server": GCS_PORT, "metrics": METRICS_PORT,
                 "serve": 8000}


def _quantity(text: str) -> float:
    suffixes = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    for suffix in sorted(suffixes, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[:-len(suffix)]) * suffixes[suffix]
    return float(text)


def _set_env(container: dict, name: str, value: str | None = None, value_from: dict | None = None) -> None:
    env = container.setdefault("env", [])
    if all(e["name"] != name for e in env):
        env.append({"name": name, "value": value} if value_from is None else {"name": name, "valueFrom": value_from})


def _set_token_env(container: dict, cluster: str) -> None:
    _set_env(container, "RAY_AUTH_MODE", "token")
    _set_env(container, "RAY_AUTH_TOKEN", value_from={"secretKeyRef": {"name": cluster, "key": "auth_token"}})


def start_params(group: dict, head: bool, container: dict, fqdn: str) -> dict[str, str]:
    """rayStartParams completed as setMissingRayStartParams and generateRayStartCommand do."""
    params = dict(group.get("rayStartParams") or {})
    if head:
        params.setdefault("dashboard-host", "0.0.0.0")
    else:
        params.setdefault("address", f"{fqdn}:{GCS_PORT}")
    params.setdefault("metrics-export-port", str(METRICS_PORT))
    params["block"] = "true"
    params.setdefault("dashboard-agent-listen-port", str(AGENT_PORT))
    resources = container.get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    cpu = next((q for q in (limits.get("cpu"), requests.get("cpu")) if q and _quantity(str(q))), None)
    if cpu and "num-cpus" not in params:  # resource.Value() rounds up: 250m is 1
        params["num-cpus"] = str(math.ceil(_quantity(str(cpu))))
    if limits.get("memory") and "memory" not in params:
        params["memory"] = str(math.ceil(_quantity(str(limits["memory"]))))
    gpus = next((q for k, q in sorted(limits.items()) if k.endswith("gpu") and _quantity(str(q))), None)
    if gpus and "num-gpus" not in params:
        params["num-gpus"] = str(math.ceil(_quantity(str(gpus))))
    return params


def ray_start_command(head: bool, params: dict[str, str]) -> str:
    """KubeRay's convertParamMap: "true" is a bare flag, "false" is dropped, except for a few flags."""
    flags = ""
    for key in sorted(params):
        value = params[key]
        if value.lower() in ("true", "false") and key not in ("log-color", "include-dashboard", "include-log-monitor"):
            flags += f" --{key} " if value.lower() == "true" else ""
        else:
            flags += f" --{key}={value} "
    return f"ray start --head {flags}" if head else f"ray start {flags}"


def _probes(container: dict, head: bool, params: dict, ray_version: str, kuberay: tuple) -> None:
    agent_port = int(params.get("dashboard-agent-listen-port", AGENT_PORT))
    if kuberay >= (1, 6) and tuple(int(p) for p in ray_version.split(".")[:2] if p.isdigit()) >= (2, 53):
        action = {"httpGet": {"path": "/api/healthz", "port": agent_port}}
    else:
        wget = "wget --tries 1 -T {} -q -O- http://localhost:{}/{} | grep success"
        checks = [wget.format(2, agent_port, "api/local_raylet_healthz")]
        if head:
            checks.append(wget.format(10, DASHBOARD_PORT, "api/gcs_healthz"))
        action = {"exec": {"command": ["bash", "-c", " && ".join(checks)]}}
    timeout = 5 if head else 2
    container.setdefault("livenessProbe", {**action, "initialDelaySeconds": 30, "timeoutSeconds": timeout,
                                           "periodSeconds": 5, "successThreshold": 1, "failureThreshold": 120})
    container.setdefault("readinessProbe", {**action, "initialDelaySeconds": 10, "timeoutSeconds": timeout,
                                            "periodSeconds": 5, "successThreshold": 1, "failureThreshold": 10})


def ray_pod(rayjob: dict, group: dict, head: bool, fqdn: str, head_ip: str | None, kuberay: tuple) -> dict:
    """A head or worker pod from the group's template, as DefaultHead/WorkerPodTemplate and BuildPod make it."""
    cluster_spec, cluster = rayjob["spec"]["rayClusterSpec"], rayjob["status"]["rayClusterName"]
    template = copy.deepcopy(group["template"])
    spec, meta = template["spec"], template.get("metadata") or {}
    group_name = "headgroup" if head else group["groupName"]
    node_type = "head" if head else "worker"
    labels = {"ray.io/is-ray-node": "yes", "ray.io/cluster": cluster, "ray.io/node-type": node_type,
              "ray.io/group": group_name, "ray.io/identifier": f"{cluster}-{node_type}",
              "app.kubernetes.io/name": "kuberay", "app.kubernetes.io/created-by": "kuberay-operator"}
    labels.update({k: v for k, v in (meta.get("labels") or {}).items()
                   if k not in ("ray.io/cluster", "ray.io/node-type", "ray.io/group")})
    prefix = cluster if head else f"{cluster}-{group_name}"
    metadata = {"generateName": f"{prefix[:50]}-{node_type}-", "labels": labels,
                "annotations": meta.get("annotations") or {}, "ownerReferences": owner_references(rayjob)}
    ray = spec["containers"][0]
    if not head:
        spec.setdefault("initContainers", []).append({  # a copy of the Ray container before KubeRay edits it
            "name": "wait-gcs-ready", "image": ray["image"], "imagePullPolicy": ray.get("imagePullPolicy"),
            "command": ["/bin/bash", "-c", "--"], "args": [_WAIT_GCS.format(address=f"{fqdn}:{GCS_PORT}")],
            "securityContext": copy.deepcopy(ray.get("securityContext")), "env": copy.deepcopy(ray.get("env", [])),
            "volumeMounts": copy.deepcopy(ray.get("volumeMounts", [])),
            "resources": {"limits": {"cpu": "200m", "memory": "256Mi"}, "requests": {"cpu": "200m", "memory": "256Mi"}}})
    if all(p.get("name") != "metrics" for p in ray.get("ports", [])):
        ray.setdefault("ports", []).append({"name": "metrics", "containerPort": METRICS_PORT})
    if (cluster_spec.get("authOptions") or {}).get("mode") == "token":
        for container in [ray] + [c for c in spec.get("initContainers", []) if c["name"] == "wait-gcs-ready"]:
            _set_token_env(container, cluster)
    params = start_params(group, head, ray, fqdn)
    if "plasma-directory" not in params and all(m["mountPath"] != "/dev/shm" for m in ray.get("volumeMounts", [])):
        resources = ray.get("resources") or {}
        size = (resources.get("limits") or {}).get("memory") or (resources.get("requests") or {}).get("memory")
        spec.setdefault("volumes", []).append({"name": "shared-mem", "emptyDir": {"medium": "Memory", **(
            {"sizeLimit": size} if size else {})}})
        ray.setdefault("volumeMounts", []).append({"name": "shared-mem", "mountPath": "/dev/shm"})
    start = ray_start_command(head, params)
    given = "".join(f" {part} " for part in (ray.get("command") or []) + (ray.get("args") or []))
    if "ray start" not in given:
        generated = f"ulimit -n ${{RAY_START_ULIMIT_OPEN_FILES:-65536}}; {start}"
        ray["command"], ray["args"] = ["/bin/bash", "-c", "--"], [f"{given} && {generated}" if given else generated]
    for init in spec.get("initContainers", []):
        init.setdefault("env", []).extend([{"name": "FQ_RAY_IP", "value": fqdn}, {"name": "RAY_IP", "value": fqdn.split(".")[0]}])
    _set_ray_env(ray, head, fqdn, start)
    _probes(ray, head, params, cluster_spec.get("rayVersion", ""), kuberay)
    if head_ip:
        spec["hostAliases"] = [*spec.get("hostAliases", []), {"ip": head_ip, "hostnames": [fqdn, fqdn.split(".")[0]]}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def _set_ray_env(ray: dict, head: bool, fqdn: str, start: str) -> None:
    """setContainerEnvVars: what the Ray container learns about its cluster."""
    env = ray.setdefault("env", [])
    if not head:
        env += [{"name": "FQ_RAY_IP", "value": fqdn}, {"name": "RAY_IP", "value": fqdn.split(".")[0]}]
    field = lambda path: {"fieldRef": {"fieldPath": path}}  # noqa: E731
    env += [{"name": "RAY_CLUSTER_NAME", "valueFrom": field("metadata.labels['ray.io/cluster']")},
            {"name": "RAY_CLUSTER_NAMESPACE", "valueFrom": field("metadata.namespace")},
            {"name": "RAY_CLOUD_INSTANCE_ID", "valueFrom": field("metadata.name")},
            {"name": "RAY_NODE_TYPE_NAME", "valueFrom": field("metadata.labels['ray.io/group']")},
            {"name": "KUBERAY_GEN_RAY_START_CMD", "value": start}]
    _set_env(ray, "RAY_PORT", str(GCS_PORT))
    _set_env(ray, "RAY_ADDRESS", f"127.0.0.1:{GCS_PORT}" if head else f"{fqdn}:{GCS_PORT}")
    _set_env(ray, "RAY_USAGE_STATS_KUBERAY_IN_USE", "1")
    _set_env(ray, "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE", "1")


_WAIT_GCS = """
SECONDS=0
while true; do
  if (( SECONDS <= 120 )); then
    if ray health-check --address {address} > /dev/null 2>&1; then echo "GCS is ready."; break; fi
    echo "$SECONDS seconds elapsed: Waiting for GCS to be ready."
  else
    if ray health-check --address {address}; then echo "GCS is ready. Any error messages above can be safely ignored."; break; fi
    echo "$SECONDS seconds elapsed: Still waiting for GCS to be ready."
  fi
  sleep 5
done
"""


def submit_command(rayjob: dict, kuberay: tuple) -> str:
    """BuildJobSubmitCommand for K8sJobMode: submit once (a retried submitter only follows the logs)."""
    status = rayjob["status"]
    address, job_id = f"http://{status['dashboardURL']}", status["jobId"]
    wait = ""
    if kuberay >= (1, 7):
        health = (f"python -c \"import urllib.request; r=urllib.request.urlopen('{address}/api/gcs_healthz', timeout=10);"
                  f" exit(0 if b'success' in r.read() else 1)\"")
        wait = f'until {health} >/dev/null 2>&1 ; do echo "Waiting for Ray Dashboard GCS to become healthy at {address} ..." ; sleep 2 ; done ; '
    return (f"{wait}if ! ray job status --address {address} {job_id} >/dev/null 2>&1 ; then ray job submit --address {address}"
            f" --no-wait --submission-id {job_id} -- {rayjob['spec']['entrypoint'].strip()} ; fi ; "
            f"ray job logs --address {address} --follow {job_id}")


def submitter_job(rayjob: dict, head_ip: str, fqdn: str, kuberay: tuple) -> dict:
    name, status = rayjob["metadata"]["name"], rayjob["status"]
    origin = {"ray.io/originated-from-cr-name": name, "ray.io/originated-from-crd": "RayJob",
              "app.kubernetes.io/created-by": "kuberay-operator"}
    template = copy.deepcopy(rayjob["spec"]["submitterPodTemplate"])
    template.setdefault("metadata", {}).setdefault("labels", {}).update(origin)
    container = template["spec"]["containers"][0]
    if not container.get("command"):
        container["command"], container["args"] = ["/bin/bash", "-ce", "--"], [submit_command(rayjob, kuberay)]
    container.setdefault("env", []).extend([{"name": "PYTHONUNBUFFERED", "value": "1"},
                                            {"name": "RAY_DASHBOARD_ADDRESS", "value": status["dashboardURL"]},
                                            {"name": "RAY_JOB_SUBMISSION_ID", "value": status["jobId"]}])
    if (rayjob["spec"]["rayClusterSpec"].get("authOptions") or {}).get("mode") == "token":
        _set_token_env(container, status["rayClusterName"])
    template["spec"]["hostAliases"] = [{"ip": head_ip, "hostnames": [fqdn, fqdn.split(".")[0]]}]
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "labels": origin, "ownerReferences": owner_references(rayjob)},
            "spec": {"backoffLimit": 2, "template": template}}


def head_service(rayjob: dict, name: str) -> dict:
    """BuildServiceForHeadPod: headless, and it publishes the head before it is ready."""
    cluster = rayjob["status"]["rayClusterName"]
    head = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    ports = {p.get("name") or f"{p['containerPort']}-port": p["containerPort"] for p in head.get("ports", [])}
    ports = {"metrics": METRICS_PORT, **(ports or SERVICE_PORTS)}
    selector = {"ray.io/cluster": cluster, "ray.io/node-type": "head", "ray.io/identifier": f"{cluster}-head",
                "app.kubernetes.io/name": "kuberay", "app.kubernetes.io/created-by": "kuberay-operator"}
    return {"metadata": {"name": name, "labels": selector, "ownerReferences": owner_references(rayjob)},
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": selector,
                     "ports": [{"name": k, "port": v, "appProtocol": "tcp"} for k, v in sorted(ports.items())]}}


def owner_references(rayjob: dict) -> list[dict]:
    meta = rayjob["metadata"]
    return [{"apiVersion": f"{GROUP}/{VERSION}", "kind": "RayJob", "name": meta["name"], "uid": meta["uid"], "controller": True}]
