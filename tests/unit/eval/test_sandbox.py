"""The code-execution sandbox stops hostile programs and survives them (real subprocesses, real limits)."""
import os
import socket

import pytest

from llamaops.platform.eval.sandbox import SandboxLimits, processes_of, run_sandboxed

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
        uids = {_uid(pid) for pid in os.listdir("/proc") if pid.isdigit()}
        assert [pid for uid in uids if uid >= 200_000 for pid in processes_of(uid)] == []


def _uid(pid: str) -> int:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except FileNotFoundError:  # ended meanwhile
        return -1


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
