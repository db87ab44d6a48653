"""Polling helpers for the pod tier (every wait has a deadline and says what it last saw)."""
import json
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_DIR = ROOT / "tests" / "cluster"
# Figures for the terminal summary (conftest prints them): one dict, shared through this module.
REPORT: dict[str, float | str] = {}


def run(*argv, check: bool = True, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kw)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv[:3]))} failed ({out.returncode}):\n"
                             f"{out.stdout[-2500:]}\n{out.stderr[-2500:]}")
    return out


def wait_until(what: str, probe: Callable[[], tuple[bool, object]], timeout: float = 180, every: float = 1.0):
    """probe() -> (done, what it saw); returns what it saw when done, else fails with it."""
    deadline, seen = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        done, seen = probe()
        if done:
            return seen
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {seen}")


def attempt(call: Callable[[], object]) -> tuple[bool, object]:
    """For wait_until: (True, what `call` returned), or (False, the connection error it raised)."""
    try:
        return True, call()
    except OSError as error:
        return False, error


def chat_completion(url: str, model: str) -> dict:
    """One short, greedy chat completion from the OpenAI-compatible server at `url`."""
    body = json.dumps({"model": model, "max_tokens": 4, "temperature": 0,
                       "messages": [{"role": "user", "content": "Hello"}]}).encode()
    request = urllib.request.Request(url + "/v1/chat/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def conditions(obj: dict) -> dict[str, dict]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def cluster_rss_mib(state: Path) -> float:
    """RSS of every process the cluster runs: the components started by pid (dockerd and its
    containerd included), plus the containerd shims, which re-parent to init, and their pods."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    roots = [int(f.read_text().split()[0]) for f in (state / "pids").glob("*.pid")]
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text().rsplit(") ", 1)[1].split()
            status = (d / "status").read_text()
            comm = (d / "comm").read_text().strip()
        except OSError:
            continue
        children.setdefault(int(stat[1]), []).append(int(d.name))
        rss[int(d.name)] = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        if comm.startswith("containerd-shim"):
            roots.append(int(d.name))
    total, todo, seen = 0, roots, set()
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            total += rss.get(pid, 0)
            todo += children.get(pid, [])
    return total / 1024
