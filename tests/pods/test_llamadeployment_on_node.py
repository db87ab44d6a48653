"""A LlamaDeployment of a tiny model on a node that runs pods: it serves through its Service,
scales, heals, reports why it cannot run, and leaves nothing behind when deleted."""
import threading
import time

import pytest
from kubernetes import client
from pod_helpers import REPORT, attempt, chat_completion, cluster_rss_mib, conditions, wait_until

from llamaops.operators.spec import GROUP, PLURAL, VERSION

pytestmark = [pytest.mark.pods, pytest.mark.slow]


def _llamadeployment(name: str, model: str, pool: str, replicas: int = 1) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LlamaDeployment", "metadata": {"name": name},
            "spec": {"model": model, "nodePool": pool, "replicas": replicas, "servedModelName": "tiny",
                     "storageSecret": "model-store", "resources": {"cpu": "250m", "memory": "1500Mi"}}}


def _get(kube, ns: str, name: str) -> dict:
    return client.CustomObjectsApi(kube).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)


def _condition(kube, ns: str, name: str, kind: str) -> dict:
    return conditions(_get(kube, ns, name)).get(kind, {})


def _ready(kube, ns, name):
    c = _condition(kube, ns, name, "Ready")
    return c.get("status") == "True", c


def _chat(url: str) -> dict:
    return chat_completion(url, "tiny")


def _owned(kube, ns: str, name: str) -> dict[str, list[str]]:
    """Every object in the namespace that belongs to the LlamaDeployment `name`."""
    sel = f"app.kubernetes.io/instance={name}"
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    return {
        "deployments": [d.metadata.name for d in apps.list_namespaced_deployment(ns, label_selector=sel).items],
        "replicasets": [r.metadata.name for r in apps.list_namespaced_replica_set(ns, label_selector=sel).items],
        "services": [s.metadata.name for s in core.list_namespaced_service(ns, label_selector=sel).items],
        "pods": [p.metadata.name for p in core.list_namespaced_pod(ns, label_selector=sel).items],
    }


def _ready_pods(kube, ns: str, name: str) -> list:
    pods = client.CoreV1Api(kube).list_namespaced_pod(ns, label_selector=f"app.kubernetes.io/instance={name}").items
    return [p for p in pods if p.metadata.deletion_timestamp is None and p.status.conditions
            and {c.type: c.status for c in p.status.conditions}.get("Ready") == "True"]


def test_serves_through_its_service_scales_heals_and_is_cleaned_up(kube, node_cluster, release, local_pool, tiny_model,
                                                                   app_namespace):
    custom, core = client.CustomObjectsApi(kube), client.CoreV1Api(kube)
    ns, name = app_namespace, "tiny"
    t0 = time.monotonic()
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, _llamadeployment(name, tiny_model, local_pool))
    wait_until("LlamaDeployment Ready", lambda: _ready(kube, ns, name), timeout=300)
    svc = core.read_namespaced_service(name, ns)
    url = f"http://{svc.spec.cluster_ip}:80"  # ClusterIP: kube-proxy's iptables rules carry it
    answer = wait_until("a chat completion through the Service",
                        lambda: attempt(lambda: _chat(url)), timeout=60)
    REPORT["apply_to_first_answer_s"] = time.monotonic() - t0
    assert answer["object"] == "chat.completion" and answer["usage"]["completion_tokens"] >= 1

    # Scale out: two Ready pods behind the Service, both answering.
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, {"spec": {"replicas": 2}})
    wait_until("2 ready replicas", lambda: (len(_ready_pods(kube, ns, name)) == 2, len(_ready_pods(kube, ns, name))), 300)
    endpoints = core.read_namespaced_endpoints(name, ns)
    assert sum(len(s.addresses or []) for s in endpoints.subsets) == 2
    REPORT["cluster_rss_mib_chart_and_2_servers"] = cluster_rss_mib(node_cluster.settings.state)
    wait_until("status Ready at 2/2", lambda: (_condition(kube, ns, name, "Ready").get("message") == "2/2 replicas ready",
                                               _condition(kube, ns, name, "Ready")), 60)

    # Heal: a deleted serving pod is replaced; the status goes Progressing, then Ready again.
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, {"spec": {"replicas": 1}})
    wait_until("back to 1 replica", lambda: (len(_owned(kube, ns, name)["pods"]) == 1, _owned(kube, ns, name)), 120)
    victim = _ready_pods(kube, ns, name)[0].metadata.name
    core.delete_namespaced_pod(victim, ns, grace_period_seconds=0)
    wait_until("status Progressing after the pod died",
               lambda: (_condition(kube, ns, name, "Progressing").get("status") == "True",
                        _condition(kube, ns, name, "Progressing")), 60, every=0.3)
    wait_until("Ready again on a new pod", lambda: (_ready(kube, ns, name)[0] and victim not in
                                                    [p.metadata.name for p in _ready_pods(kube, ns, name)], None), 300)
    assert _chat(url)["object"] == "chat.completion"

    # Delete: the garbage collector removes everything the LlamaDeployment owned.
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    wait_until("every owned object gone", lambda: (not any(_owned(kube, ns, name).values()), _owned(kube, ns, name)), 180)


def test_a_new_version_rolls_out_while_a_client_loop_sees_no_failed_request(kube, release, local_pool, tiny_model,
                                                                            tiny_model_v2, app_namespace):
    custom, core = client.CustomObjectsApi(kube), client.CoreV1Api(kube)
    ns, name = app_namespace, "rollout"
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, _llamadeployment(name, tiny_model, local_pool))
    wait_until("LlamaDeployment Ready", lambda: _ready(kube, ns, name), timeout=300)
    svc = core.read_namespaced_service(name, ns)
    url = f"http://{svc.spec.cluster_ip}:80"
    v1_answer = wait_until("v1 answering", lambda: attempt(lambda: _answer(url)), timeout=60)
    old_pods = {p.metadata.name for p in _ready_pods(kube, ns, name)}

    answers: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def client_loop() -> None:  # one request at a time, on the loopback-reachable ClusterIP, bounded
        deadline = time.monotonic() + 600
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                answers.append(_answer(url))
            except Exception as error:  # noqa: BLE001 - every failure counts
                failures.append(f"{type(error).__name__}: {error}")
            time.sleep(0.05)

    loop = threading.Thread(target=client_loop)
    loop.start()
    try:
        wait_until("a few answers from v1 under load", lambda: (len(answers) >= 5, len(answers)), 60)
        custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, {"spec": {"model": tiny_model_v2}})

        def rolled_out():
            current = {p.metadata.name for p in _ready_pods(kube, ns, name)}
            pods = _owned(kube, ns, name)["pods"]
            return bool(current) and not current & old_pods and set(pods) == current, (current, pods)
        wait_until("the old pod gone and a new one ready", rolled_out, timeout=420)
        served = len(answers)
        wait_until("answers from v2", lambda: (len(answers) >= served + 5, len(answers)), 60)
    finally:
        stop.set()
        loop.join(60)
    REPORT["rollout_requests"] = len(answers) + len(failures)
    assert failures == [], failures[:5]
    # v1 answered until v2 was ready (both may answer while the old pod drains); then only v2.
    assert answers[0] == v1_answer and answers[-1] != v1_answer
    assert set(answers[served:]) == {answers[-1]}
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)


def _answer(url: str) -> str:
    return _chat(url)["choices"][0]["message"]["content"]


def test_a_restarted_operator_resumes_without_duplicating_objects(kube, release, local_pool, tiny_model, app_namespace):
    custom, core = client.CustomObjectsApi(kube), client.CoreV1Api(kube)
    ns, name = app_namespace, "resume"
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, _llamadeployment(name, tiny_model, local_pool))
    wait_until("LlamaDeployment Ready", lambda: _ready(kube, ns, name), timeout=300)
    before = _owned(kube, ns, name)
    generation = _get(kube, ns, name)["status"]["observedGeneration"]

    sel = f"app.kubernetes.io/instance={release.name},app.kubernetes.io/component=operator"
    old = core.list_namespaced_pod(release.namespace, label_selector=sel).items[0].metadata.name
    core.delete_namespaced_pod(old, release.namespace)

    def new_operator_ready():
        pods = [p for p in core.list_namespaced_pod(release.namespace, label_selector=sel).items
                if p.metadata.name != old and p.status.conditions]
        return any({c.type: c.status for c in p.status.conditions}.get("Ready") == "True" for p in pods), pods
    wait_until("a new operator pod Ready", new_operator_ready, timeout=180)
    # An edit made now is picked up by the new operator...
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, {"metadata": {"labels": {"touched": "yes"}},
                                                                            "spec": {"servedModelName": "tiny2"}})
    wait_until("the new operator reconciled the edit",
               lambda: (_get(kube, ns, name)["status"].get("observedGeneration", 0) > generation, _get(kube, ns, name)["status"]), 120)
    wait_until("Ready after the edit", lambda: _ready(kube, ns, name), timeout=300)
    # ...and it made no second Deployment or Service.
    after = _owned(kube, ns, name)
    assert after["deployments"] == before["deployments"] == [name]
    assert after["services"] == before["services"] == [name]


def test_a_pool_no_node_matches_leaves_pods_pending_and_says_why(kube, release, tiny_model, app_namespace):
    custom, core = client.CustomObjectsApi(kube), client.CoreV1Api(kube)
    ns, name = app_namespace, "nowhere"
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, _llamadeployment(name, tiny_model, "nowhere"))

    def says_unschedulable():
        ready = _condition(kube, ns, name, "Ready")
        return ready.get("reason") == "Unschedulable", ready
    ready = wait_until("status naming the scheduling failure", says_unschedulable, timeout=120)
    assert ready["status"] == "False" and "node" in ready["message"], ready
    pods = core.list_namespaced_pod(ns, label_selector=f"app.kubernetes.io/instance={name}").items
    assert pods and all(p.status.phase == "Pending" for p in pods)


def test_a_missing_model_is_degraded_without_crashing_the_operator(kube, release, app_namespace):
    custom, core = client.CustomObjectsApi(kube), client.CoreV1Api(kube)
    ns, name = app_namespace, "missing"
    sel = f"app.kubernetes.io/instance={release.name},app.kubernetes.io/component=operator"
    restarts = lambda: sum(p.status.container_statuses[0].restart_count  # noqa: E731
                           for p in core.list_namespaced_pod(release.namespace, label_selector=sel).items)
    before = restarts()
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL,
                                           _llamadeployment(name, "s3://llamaops/models/does-not-exist", "local"))
    degraded = wait_until("Degraded with ModelNotFound",
                          lambda: ((c := _condition(kube, ns, name, "Degraded")).get("reason") == "ModelNotFound", c), 120)
    assert degraded["status"] == "True" and "does-not-exist" in degraded["message"]
    assert _owned(kube, ns, name)["deployments"] == []  # nothing started for a model that is not there
    time.sleep(20)  # a crash loop would show up as restarts within a resync or two
    assert restarts() == before
