"""Hostile programs against the sandbox, run by an unprivileged evaluator (a restricted pod) and by
root: nothing they do reaches the evaluator, its files, its secrets or its network."""
import os
import secrets
import socket
import tempfile
import time
from pathlib import Path

import pytest

from .sandbox_evaluators import SECRET, live_processes_with, root_evaluator, unprivileged_evaluator


@pytest.fixture(params=["non-root", "root"])
def evaluate(request, monkeypatch):
    if request.param == "non-root":
        yield from unprivileged_evaluator()
    elif os.geteuid() != 0:
        pytest.skip("the root evaluator needs root")
    else:
        yield root_evaluator(monkeypatch)


@pytest.fixture
def writable_elsewhere():
    """A folder outside the sandbox that any uid may write to, as the evaluator's own files are."""
    with tempfile.TemporaryDirectory(prefix="llamaops-escape-") as folder:
        os.chmod(folder, 0o777)
        yield Path(folder)


ESCAPES = {
    "bytes path": "open({target!r}.encode(), 'w').write('x')",
    "symlink": "import os\nos.symlink({target!r}, 'link')\nopen('link', 'w').write('x')",
    "ctypes": "import ctypes, os\nctypes.CDLL(None).open({target!r}.encode(), os.O_WRONLY | os.O_CREAT, 0o644)",
    "subprocess": "import subprocess\nsubprocess.run(['sh', '-c', 'echo x > {target}'])",
}


@pytest.mark.parametrize("how", ESCAPES)
def test_writes_outside_the_work_directory_do_not_land(evaluate, writable_elsewhere, how):
    target = writable_elsewhere / "escaped"
    evaluate(ESCAPES[how].format(target=str(target)))
    assert not target.exists()
    assert evaluate("open('scratch', 'w').write('ok')\nprint(open('scratch').read())")["output"].strip() == "ok"


def test_only_the_work_directory_and_tmp_are_writable(evaluate):
    program = ("mounts = [line.split() for line in open('/proc/self/mountinfo')]\n"
               "print(sorted(m[4] for m in mounts if 'rw' in m[5].split(',')))\n"
               "import os\nprint(os.path.exists('/root'), os.path.exists('/home'), sorted(os.listdir('/tmp')))")
    assert evaluate(program)["output"].split("\n")[:2] == ["['/tmp', '/work']", "False False []"]


def test_the_evaluators_environment_is_out_of_reach(evaluate):
    program = ("import glob, os\nseen = []\n"
               "for path in [f'/proc/{os.getppid()}/environ', *glob.glob('/proc/*/environ')]:\n"
               "    try:\n        seen.append(open(path, 'rb').read())\n    except OSError:\n        pass\n"
               "print(b'|'.join(seen), os.environ)")
    outcome = evaluate(program)
    assert outcome["status"] == "passed" and SECRET not in outcome["output"]


def test_a_server_on_loopback_is_unreachable(evaluate):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        connect = f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n    print('connected')\nexcept OSError as e:\n    print(e)\n"
        # Directly, and from a fresh interpreter that no in-process hook could watch.
        program = f"{connect}import subprocess, sys\nsubprocess.run([sys.executable, '-c', {connect!r}])"
        outcome = evaluate(program)
        server.settimeout(0)
        with pytest.raises(BlockingIOError):
            server.accept()
    assert "connected" not in outcome["output"]


def test_killing_every_visible_process_leaves_the_evaluator_alive(evaluate):
    program = ("import os, signal\n"
               "for pid in {os.getppid(), *(int(p) for p in os.listdir('/proc') if p.isdigit())} - {os.getpid()}:\n"
               "    try:\n        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\n"
               "print('done')")
    assert evaluate(program)["output"].strip() == "done"  # the evaluator came back with its output
    assert evaluate("print('next')")["output"].strip() == "next"


DETACH = ("import os, subprocess\n"
          "subprocess.Popen(['setsid', 'sleep', '{marker}'])\n"
          "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        os.execvp('sleep', ['sleep', '{marker}'])\n    os._exit(0)\n")


@pytest.mark.parametrize("then, wall_seconds, status", [("import time\ntime.sleep(60)", 2, "timeout"), ("print('bye')", 10, "passed")],
                         ids=["program-sleeps-past-the-wall-limit", "program-exits-at-once"])
def test_a_detached_child_neither_stretches_the_wall_limit_nor_outlives_the_program(evaluate, then, wall_seconds, status):
    marker = f"60.{secrets.randbelow(10**6)}"  # the children's `sleep` argument, to find them by
    started = time.monotonic()
    outcome = evaluate(DETACH.format(marker=marker) + then, wall_seconds=wall_seconds)
    assert outcome["status"] == status and time.monotonic() - started < 6
    assert live_processes_with(marker) == []


def test_limits_and_verdicts_hold_for_every_evaluator(evaluate):
    assert evaluate("print(sum(range(10)))")["output"].strip() == "45"
    failed = evaluate("assert 1 + 1 == 3")
    assert failed["status"] == "failed" and "AssertionError" in failed["output"]
    assert evaluate("while True:\n    pass", wall_seconds=60)["status"] == "killed"  # the CPU limit
    memory = evaluate("chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))", wall_seconds=60)
    assert memory["status"] == "failed" and "MemoryError" in memory["output"]


def test_a_failing_program_cannot_forge_its_verdict_through_the_namespace_init(evaluate):
    """Init (PID 1 of the sandbox) holds the report the verdict is read from; the program runs as
    the same uid, so init must not be open to it (/proc/1/fd, /proc/1/mem, ptrace)."""
    program = ("import os\n"
               "fds = [str(n) for n in range(64)]\n"
               "try:\n    fds = os.listdir('/proc/1/fd')\nexcept OSError as e:\n    print('listdir', e.errno)\n"
               "for fd in fds:\n"
               "    try:\n        open(f'/proc/1/fd/{fd}', 'a').write('status 0\\n')\n        print('wrote', fd)\n"
               "    except OSError:\n        pass\n"
               "raise SystemExit(1)")
    outcome = evaluate(program)
    assert outcome["status"] == "failed" and "wrote" not in outcome["output"], outcome
