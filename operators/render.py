"""A LlamaDeployment manifest -> the objects the operator would apply for it, as YAML: the same
pure functions as the operator (manifests.py), for review and GitOps. The objects carry no owner
reference (there is no LlamaDeployment object to own them)."""
import yaml

from .manifests import owned_objects
from .pools import POOLS_KEY, parse_pools
from .spec import GROUP, KIND, VERSION
from .status import Degraded, check_spec


class RenderError(ValueError):
    """The manifest or the node pools cannot be rendered; the message says which and why."""


def render_objects(manifest_text: str, pools_text: str, hpa_version: str = "autoscaling/v2") -> str:
    """`manifest_text`: one LlamaDeployment; `pools_text`: the node pools, either as the chart's
    values (its `nodePools`) or as the operator's pools.yaml."""
    manifest = _load(manifest_text, "the manifest")
    if manifest.get("apiVersion") != f"{GROUP}/{VERSION}" or manifest.get("kind") != KIND:
        raise RenderError(f"the manifest is not a {KIND} ({GROUP}/{VERSION}): it has apiVersion "
                          f"{manifest.get('apiVersion')!r} and kind {manifest.get('kind')!r}")
    meta = manifest.get("metadata") or {}
    if not meta.get("name"):
        raise RenderError("the manifest has no metadata.name")
    pools_data = _load(pools_text, "the node pools")
    pools = parse_pools({POOLS_KEY: yaml.safe_dump(pools_data.get("nodePools", pools_data))})
    try:
        spec, pool = check_spec(manifest.get("spec") or {}, pools, lambda uri: None)
    except Degraded as problem:
        raise RenderError(f"{problem.reason}: {problem.message}") from None
    objects = owned_objects(meta["name"], meta.get("namespace") or "default", None, spec, pool, hpa_version)
    return yaml.dump_all(objects, Dumper=_PlainDumper, sort_keys=False)


class _PlainDumper(yaml.SafeDumper):
    """Every object written out in full: no anchors for dicts the builders share."""

    def ignore_aliases(self, data) -> bool:
        return True


def _load(text: str, what: str) -> dict:
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RenderError(f"{what} is not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(loaded, dict):
        raise RenderError(f"{what} must be a YAML mapping")
    return loaded
