"""The code-execution sandbox stops hostile programs and survives them (real subprocesses, real
limits), and refuses to run anything where it cannot confine it."""
import os
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llamaops.cli.main import app
from llamaops.platform.eval import sandbox, sandbox_host
from llamaops.platform.eval.sandbox import SandboxLimits, SandboxUnavailableError, run_sandboxed

LIMITS = SandboxLimits(cpu_seconds=1, wall_seconds=3, memory_bytes=512 << 20, max_processes=8)


def test_a_good_program_passes_and_a_failing_one_fails():
    assert run_sandboxed("print(sum(range(10)))", LIMITS).output.strip() == "45"
    assert run_sandboxed("print(1)", LIMITS).passed
    failed = run_sandboxed("assert 1 + 1 == 3", LIMITS)
    assert failed.status == "failed" and "AssertionError" in failed.output


def test_infinite_loop_is_stopped_by_the_cpu_limit():
    # A wall limit far above the CPU limit: on a loaded machine one CPU second can take many
    # wall seconds, and the CPU limit, not the clock, must be what stops the loop.
    limits = SandboxLimits(cpu_seconds=1, wall_seconds=120, memory_bytes=512 << 20, max_processes=8)
    outcome = run_sandboxed("while True:\n    pass", limits)
    assert outcome.status == "killed" and outcome.seconds < limits.wall_seconds


def test_sleeping_forever_is_stopped_by_the_wall_clock():
    outcome = run_sandboxed("import time\ntime.sleep(60)", SandboxLimits(wall_seconds=1))
    assert outcome.status == "timeout" and outcome.seconds < 3


def test_unbounded_allocation_fails():
    # As above: the memory limit, not a clock a loaded machine can run out first, must stop it.
    limits = LIMITS.model_copy(update={"cpu_seconds": 60, "wall_seconds": 120})
    outcome = run_sandboxed("chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))", limits)
    assert not outcome.passed and "MemoryError" in outcome.output


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork bombs need os.fork")
def test_fork_bomb_is_contained_and_leaves_no_process():
    outcome = run_sandboxed("import os\nwhile True:\n    os.fork()", LIMITS)
    assert not outcome.passed
    if os.geteuid() == 0:  # the sandbox ran as its own uid: nothing of it may be left
        assert [pid for pid in os.listdir("/proc") if pid.isdigit() and _live_sandbox_process(Path("/proc", pid))] == []


def _live_sandbox_process(proc: Path) -> bool:
    try:
        low, high = sandbox_host.SANDBOX_UIDS
        return low <= proc.stat().st_uid < high and (proc / "stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:  # ended meanwhile
        return False


def test_network_is_refused():
    with socket.socket() as server:  # a listener the program would otherwise reach
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        outcome = run_sandboxed(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)", LIMITS)
    assert outcome.status == "failed" and ("PermissionError" in outcome.output or "Errno" in outcome.output)


def test_writes_stay_in_the_sandbox_directory(tmp_path):
    target = tmp_path / "escaped"
    outcome = run_sandboxed(f"open({str(target)!r}, 'w').write('x')", LIMITS)
    assert outcome.status == "failed" and not target.exists()
    assert run_sandboxed("open('scratch.txt', 'w').write('ok')\nprint(open('scratch.txt').read())", LIMITS).passed


def test_the_harness_survives_every_hostile_program():
    for source in ("while True: pass", "import os\nwhile True: os.fork()", "x = 'a' * 10**10"):
        run_sandboxed(source, LIMITS)
    assert run_sandboxed("print('still here')", LIMITS).output.strip() == "still here"


def test_refuses_and_runs_nothing_when_namespaces_are_unavailable_simulated(monkeypatch):
    monkeypatch.setattr(sandbox, "_probe", lambda: "unshare user, mount, PID and network namespaces: Operation not permitted")
    monkeypatch.setattr(sandbox, "launch", lambda *args: pytest.fail("ran a program without a sandbox"))
    with pytest.raises(SandboxUnavailableError) as refused:
        run_sandboxed("print(1)", LIMITS)
    assert "\n" not in str(refused.value) and "unconfined: unshare" in str(refused.value)


def test_a_launcher_that_cannot_confine_is_a_refusal_not_a_failure_simulated(monkeypatch, tmp_path):
    # The launcher's own report, as a seccomp profile that blocks unshare would make it.
    init = tmp_path / "sandbox_init.py"
    init.write_text("import os, sys\nwith open(os.path.join(sys.argv[1], 'report'), 'a') as f:\n"
                    "    f.write('error unshare user, mount, PID and network namespaces: Operation not permitted\\n')\n"
                    "sys.exit(125)\n")
    monkeypatch.setattr(sandbox_host, "INIT", init)
    monkeypatch.setattr(sandbox, "_probe", sandbox._probe.__wrapped__)  # uncached: probe this launcher
    with pytest.raises(SandboxUnavailableError, match="unconfined: unshare .*: Operation not permitted; run code evaluation"):
        run_sandboxed("print(1)", LIMITS)


def test_eval_code_says_one_line_and_exits_non_zero_when_the_sandbox_is_unavailable_simulated(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "_probe", lambda: "unshare user, mount, PID and network namespaces: Operation not permitted")
    result = CliRunner().invoke(app, ["eval", "code", str(tmp_path / "no-model-needed")])
    assert result.exit_code == 3 and result.stdout == ""
    assert result.stderr.startswith("error: refusing to run generated code unconfined: unshare") and result.stderr.count("\n") == 1
