"""Suite-wide: the wall time of each test tier (tests/<tier>/...), printed at the end of a run,
so a slow tier shows up in every CI log."""
import time
from pathlib import Path

_TIERS: dict[str, list[float]] = {}  # tier -> [first start, last finish, tests]


def _tier(nodeid: str) -> str:
    parts = Path(nodeid.split("::")[0]).parts
    return parts[1] if len(parts) > 2 and parts[0] == "tests" else parts[0]


def pytest_runtest_logstart(nodeid: str, location) -> None:
    now = time.monotonic()
    span = _TIERS.setdefault(_tier(nodeid), [now, now, 0])
    span[2] += 1


def pytest_runtest_logfinish(nodeid: str, location) -> None:
    _TIERS[_tier(nodeid)][1] = time.monotonic()


def pytest_terminal_summary(terminalreporter) -> None:
    if _TIERS:
        terminalreporter.section("time per test tier")
        for tier, (first, last, count) in _TIERS.items():
            terminalreporter.write_line(f"{tier}: {last - first:.0f} s ({count} tests)")
