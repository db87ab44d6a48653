"""Start daemons detached (own session, log file, pid file) and stop them by pid later."""
import os
import signal
import subprocess
import time
from pathlib import Path


def spawn(state: Path, name: str, argv: list[str], env: dict | None = None) -> int:
    (state / "logs").mkdir(parents=True, exist_ok=True)
    (state / "pids").mkdir(parents=True, exist_ok=True)
    log = open(state / "logs" / f"{name}.log", "ab")
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True, env={**os.environ, **(env or {})})
    (state / "pids" / f"{name}.pid").write_text(f"{p.pid} {Path(argv[0]).name}\n")
    return p.pid


def _alive(pid: int, binary: str) -> bool:
    """Alive and still the process we started (pids get reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        stat = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1]
    except OSError:
        return False
    return not stat.startswith("Z") and Path(cmdline.decode()).name == binary


def running(state: Path, name: str) -> bool:
    f = state / "pids" / f"{name}.pid"
    if not f.exists():
        return False
    pid, binary = f.read_text().split()
    return _alive(int(pid), binary)


def stop(state: Path, name: str, timeout: float = 20) -> None:
    """SIGTERM (twice: the apiserver sometimes ignores the first), then SIGKILL."""
    f = state / "pids" / f"{name}.pid"
    if not f.exists():
        return
    pid_s, binary = f.read_text().split()
    pid = int(pid_s)
    for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
        if not _alive(pid, binary):
            break
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + timeout / 2
        while _alive(pid, binary) and time.monotonic() < deadline:
            time.sleep(0.1)
    try:  # reap if it was our child; harmless otherwise
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    f.unlink()


def log_tail(state: Path, name: str, chars: int = 1500) -> str:
    f = state / "logs" / f"{name}.log"
    return f.read_text(errors="replace")[-chars:] if f.exists() else "(no log)"
