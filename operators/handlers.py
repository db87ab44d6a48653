"""kopf entry point: `kopf run --standalone -m llamaops.operators.handlers`.

Thin: every handler runs the same idempotent `reconcile.sync` and writes its result to status.
Deletion needs no handler (and so no finalizer): children carry ownerReferences and the
garbage collector removes them.
"""
import logging
import os

import kopf
from kubernetes import config

from .manifests import MANAGED_BY
from .reconcile import resync, sync
from .spec import GROUP, PLURAL, VERSION

RESYNC_SECONDS = float(os.environ.get("LLAMAOPS_RESYNC_SECONDS", "30"))
_api = None


@kopf.on.startup()
def _configure(settings: kopf.OperatorSettings, **_) -> None:
    global _api
    _api = _new_client()
    settings.posting.level = logging.WARNING  # events for warnings and errors only


def _new_client():
    try:
        config.load_incluster_config()
        from kubernetes import client

        return client.ApiClient()
    except config.ConfigException:
        return config.new_client_from_config()


def reconcile(name, namespace, uid, spec, meta, status, patch, **_) -> None:
    patch.status.update(sync(_api, name, namespace, uid, meta.get("generation", 0), dict(spec), dict(status)))


# Handler ids become annotation names (kopf.zalando.org/<id>): they must not start with "_".
for register in (kopf.on.create, kopf.on.resume):
    register(GROUP, VERSION, PLURAL, id="reconcile")(reconcile)
kopf.on.update(GROUP, VERSION, PLURAL, field="spec", id="reconcile")(reconcile)
kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS, id="resync")(reconcile)


# A child's status changed (a pod died, became ready, cannot be scheduled): recompute the owner's
# status now instead of at the next resync. on.event keeps no state on the watched objects.
@kopf.on.event("apps", "v1", "deployments", labels={"app.kubernetes.io/managed-by": MANAGED_BY})
@kopf.on.event("", "v1", "pods", labels={"app.kubernetes.io/managed-by": MANAGED_BY})
def child_changed(body, namespace, type, **_) -> None:
    owner = (body.get("metadata", {}).get("labels") or {}).get("app.kubernetes.io/instance")
    if owner and type is not None:  # type None: the initial listing, covered by resume
        resync(_api, owner, namespace)
