"""The repository root is the `llamaops` package: platform/ -> llamaops.platform, and so on.

platform/ deliberately has no __init__.py, so running Python from the repository root never
shadows the standard library's `platform` module.
"""
from setuptools import find_namespace_packages, setup

LAYERS = ["platform", "pipelines", "operators", "cluster", "cli"]
subpackages = find_namespace_packages(include=[f"{layer}*" for layer in LAYERS])

setup(
    packages=["llamaops"] + [f"llamaops.{name}" for name in subpackages],
    package_dir={"llamaops": "."},
    package_data={"llamaops": ["charts/**/*", "platform/eval/task_files/*.yaml"]},
    include_package_data=False,
)
