"""The pipelines tests' fixtures: the FAKE KFP API (fake_kfp_api.py) and the smallest tiny run."""
import pytest
from fake_kfp_api import fake_kfp_api
from smallest_tiny import SMALLEST_TINY, set_arguments


@pytest.fixture
def smallest_tiny():
    """`--set` arguments for the smallest tiny run, with `overrides` (key -> value) on top."""

    def arguments(overrides: dict[str, str] | None = None) -> list[str]:
        return set_arguments(SMALLEST_TINY | (overrides or {}))

    return arguments


@pytest.fixture
def fake_kfp():
    with fake_kfp_api() as fake:
        yield fake
