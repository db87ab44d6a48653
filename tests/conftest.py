"""Suite-wide: the wall time of each test tier (tests/<tier>/...), printed at the end of a run,
so a slow tier shows up in every CI log.

The figures live on the config, not in this module: with --import-mode=importlib this file can be
registered twice (as `conftest` and within the `tests` package); both instances share them.
Also: no test may leave autograd off for the tests after it."""
import sys
import time
from pathlib import Path

import pytest

_SPANS = pytest.StashKey[dict]()  # tier -> {"first": s, "last": s, "tests": set of node ids}
_PRINTED = pytest.StashKey[bool]()


def _tier(nodeid: str) -> str:
    parts = Path(nodeid.split("::")[0]).parts
    return parts[1] if len(parts) > 2 and parts[0] == "tests" else parts[0]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    now = time.monotonic()
    span = item.config.stash.setdefault(_SPANS, {}).setdefault(
        _tier(item.nodeid), {"first": now, "last": now, "tests": set()})
    span["tests"].add(item.nodeid)
    try:
        return (yield)
    finally:
        span["last"] = time.monotonic()


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    spans = config.stash.get(_SPANS, {})
    if spans and not config.stash.get(_PRINTED, False):
        config.stash[_PRINTED] = True
        terminalreporter.section("time per test tier")
        for tier, span in spans.items():
            terminalreporter.write_line(f"{tier}: {span['last'] - span['first']:.0f} s ({len(span['tests'])} tests)")


@pytest.fixture(autouse=True)
def _autograd_left_on():
    """A test that turns autograd off for the process (as `llamaops serve` does, in-process) would
    silently break every later training test: fail the test that did it instead."""
    yield
    torch = sys.modules.get("torch")
    if torch is not None and not torch.is_grad_enabled():
        torch.set_grad_enabled(True)
        pytest.fail("this test left autograd disabled for the whole session (torch.set_grad_enabled(False))")


class FakeClock:
    """A monotonic clock that moves only when the code under test sleeps: waits without waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def random_shards(tmp_path):
    """A data-prep artifact of random tokens: `random_shards(validation_tokens)` -> its file:// URI
    (two documents in each of the validation and train splits)."""
    import numpy as np

    from llamaops.platform.data.shards import write_split
    from llamaops.platform.store import staged_output

    def make(validation_tokens: int) -> str:
        uri = f"file://{tmp_path}/shards-{validation_tokens}"
        rng = np.random.default_rng(0)
        half = validation_tokens // 2
        with staged_output(uri) as directory:
            docs = [rng.integers(0, 128_000, size=n).tolist() for n in (half, validation_tokens - half)]
            write_split(directory, "validation", docs)
            write_split(directory, "train", docs)
        return uri

    return make
