"""Serving pods run pinned images: the version tag by default, the chart's pins, never `latest`."""
from pathlib import Path

import yaml

from llamaops import __version__
from llamaops.operators.manifests import image_for

CHART_VALUES = Path(__file__).resolve().parents[3] / "charts" / "llamaops" / "values.yaml"


def test_default_images_are_the_charts_pins_by_version(monkeypatch):
    monkeypatch.delenv("LLAMAOPS_IMAGE", raising=False)
    monkeypatch.delenv("LLAMAOPS_VLLM_IMAGE", raising=False)
    values = yaml.safe_load(CHART_VALUES.read_text())
    operator, image = values["operator"], values["image"]
    assert operator["servingImage"] == ""  # the chart's own image (and digest) serves
    assert image_for("llamaops") == f"{image['repository']}:{image['tag']}" == f"ghcr.io/llamaops/llamaops:{__version__}"
    assert image_for("vllm") == operator["vllmImage"]
    for image in (image_for("llamaops"), image_for("vllm")):
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert tag and tag != "latest", image


def test_the_environment_the_chart_sets_names_the_images(monkeypatch):
    monkeypatch.setenv("LLAMAOPS_IMAGE", "registry.example/llamaops:1.2.3")
    monkeypatch.setenv("LLAMAOPS_VLLM_IMAGE", "registry.example/vllm@sha256:" + "0" * 64)
    assert image_for("llamaops") == "registry.example/llamaops:1.2.3"
    assert image_for("vllm") == "registry.example/vllm@sha256:" + "0" * 64
