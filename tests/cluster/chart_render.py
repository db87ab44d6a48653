"""`helm template` of charts/llamaops into Python objects, and the cluster contract it renders.

Used by test_chart.py; needs only the helm binary (no cluster).
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import yaml

from llamaops.platform.config.cluster import CLUSTER_CONFIGMAP, CLUSTER_KEY, ClusterContract, parse_contract

CHART = Path(__file__).resolve().parents[2] / "charts" / "llamaops"


@dataclass
class Render:
    namespace: str  # the release namespace
    docs: list[dict]

    def ns(self, doc: dict) -> str:
        return doc["metadata"].get("namespace") or self.namespace

    def objects(self, namespace: str) -> dict[str, set[str]]:
        """kind -> names rendered into `namespace` (objects without metadata.namespace go to the release's)."""
        found: dict[str, set[str]] = defaultdict(set)
        for d in self.docs:
            if d["kind"] not in {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"} and self.ns(d) == namespace:
                found[d["kind"]].add(d["metadata"]["name"])
        return found

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict:
        namespace = namespace or self.namespace
        hits = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name and self.ns(d) == namespace]
        assert len(hits) == 1, f"{kind}/{name} in {namespace}: rendered {len(hits)} times"
        return hits[0]

    def contract(self, namespace: str | None = None) -> ClusterContract:
        cm = self.get("ConfigMap", CLUSTER_CONFIGMAP, namespace)
        return parse_contract(cm["data"][CLUSTER_KEY], f"{CLUSTER_CONFIGMAP} in {namespace or self.namespace}")

    def cluster_scoped(self) -> list[dict]:
        return [d for d in self.docs if d["kind"] in {"ClusterRole", "ClusterRoleBinding"}]


def template(helm: str, release: str, namespace: str, values: dict | None = None,
             chart: Path = CHART) -> subprocess.CompletedProcess:
    """`helm template` with `values` as a values file; the CompletedProcess (check it yourself)."""
    with tempfile.TemporaryDirectory() as d:
        argv = [helm, "template", release, str(chart), "-n", namespace]
        if values:
            path = Path(d) / "values.json"
            path.write_text(json.dumps(values))
            argv += ["-f", str(path)]
        return subprocess.run(argv, capture_output=True, text=True)


def render(helm: str, release: str, namespace: str, values: dict | None = None) -> Render:
    out = template(helm, release, namespace, values)
    assert out.returncode == 0, out.stderr[-2000:]
    return Render(namespace, [d for d in yaml.safe_load_all(out.stdout) if d])


def fail_line(helm: str, values: dict, release: str = "llamaops", namespace: str = "llamaops") -> str:
    """The one line a failing render prints (the message after helm's `Error: ...:` prefix)."""
    out = template(helm, release, namespace, values)
    assert out.returncode != 0, f"rendered although it should fail: {values}"
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, out.stderr
    return errors[0]
