"""sandbox_batch.py, the code-sandbox pod's command, run here as a real subprocess on a folder of
programs: each ends as it should, in order, with one JSON line, and the batch keeps to its
limits even when a program leaves a detached (setsid) child behind."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import llamaops
from llamaops.platform.eval.sandbox import SandboxLimits
from llamaops.platform.eval.sandbox_host import interpreter

from .sandbox_evaluators import NOBODY, as_nobody, world_readable_copy

SECRET = "canary-5d1e"
LIMITS = SandboxLimits(cpu_seconds=1, wall_seconds=60, memory_bytes=512 << 20, max_processes=8)
SETSID_CHILD = """\
import subprocess, time
child = subprocess.Popen(["setsid", "sleep", "300"])
print(child.pid, flush=True)
time.sleep(300)
"""


def run_batch(folder: Path, limits: SandboxLimits) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(llamaops.__file__).parents[1]), "AWS_SECRET_ACCESS_KEY": SECRET,
           "TMPDIR": str(folder.parent)}
    return subprocess.run([sys.executable, "-m", "llamaops.platform.eval.sandbox_batch", str(folder),
                           json.dumps(limits.model_dump(mode="json"))], env=env, capture_output=True, text=True, timeout=300)


def write_programs(folder: Path, sources: list[str]) -> Path:
    folder.mkdir()
    for index, source in enumerate(sources):
        (folder / f"{index:06d}.py").write_text(source)  # run in the order of the names
    return folder


def outcomes(done: subprocess.CompletedProcess) -> list[dict]:
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout  # the programs' output stays out of the log
    return json.loads(lines[0])["outcomes"]


def test_each_program_ends_as_it_should_in_order(tmp_path):
    folder = write_programs(tmp_path / "programs", [
        "print(sum(range(10)))",
        "assert 1 + 1 == 3",
        "while True:\n    pass",  # the CPU limit, not the (far higher) wall limit, stops it
        "import os, pathlib\nprint(sorted(os.environ), pathlib.Path.cwd())",
    ])
    passed, failed, looped, env = outcomes(run_batch(folder, LIMITS))
    assert (passed["status"], passed["exit_code"], passed["output"]) == ("passed", 0, "45\n")
    assert failed["status"] == "failed" and failed["exit_code"] == 1 and "AssertionError" in failed["output"]
    assert looped["status"] == "killed" and looped["exit_code"] < 0 and looped["seconds"] < LIMITS.wall_seconds
    assert env["status"] == "passed" and SECRET not in env["output"] and "AWS_SECRET_ACCESS_KEY" not in env["output"]
    names, cwd = env["output"].rsplit(" ", 1)
    # LC_CTYPE: Python's own locale coercion (PEP 538) in an environment without a locale
    assert set(eval(names)) - {"LC_CTYPE"} == {"HOME", "PATH", "PYTHONHASHSEED", "PYTHONIOENCODING"}  # noqa: S307
    assert Path(cwd.strip()).parent == tmp_path and not Path(cwd.strip()).exists()  # a fresh work folder, removed


def test_the_wall_limit_stops_a_program_and_the_detached_child_it_left(tmp_path):
    limits = LIMITS.model_copy(update={"wall_seconds": 2})
    folder = write_programs(tmp_path / "programs", [SETSID_CHILD, "print('next')"])
    started = time.monotonic()
    timed_out, following = outcomes(run_batch(folder, limits))
    assert time.monotonic() - started < 2 * limits.wall_seconds + 15  # the setsid child held no pipe open
    assert timed_out["status"] == "timeout" and timed_out["exit_code"] is None
    assert timed_out["output"].strip(), "the program's output was lost: something still held its pipe"
    child = int(timed_out["output"].split()[0])
    assert not _alive(child), "the setsid child outlived its program"
    assert following == {**following, "status": "passed", "output": "next\n"}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_program_cannot_forge_the_result_line_through_the_batch_processes_stdout(tmp_path):
    """The programs run as the batch's uid; its stdout (the pod's log, where the verdicts are read)
    must stay closed to them, through /proc/<pid>/fd as much as through their own pipe."""
    forged = json.dumps({"outcomes": [{"status": "passed", "exit_code": 0, "seconds": 0, "output": "forged"}]})
    program = ("import os\n"
               f"for pid in {{os.getppid(), 1}}:\n"
               "    try:\n"
               f"        open(f'/proc/{{pid}}/fd/1', 'w').write({forged!r} + '\\n')\n"
               "        print('wrote', pid)\n"
               "    except OSError as error:\n"
               "        print('refused', pid, error.errno)\n"
               "raise SystemExit(1)\n")
    with world_readable_copy("sandbox_batch.py", "sandbox_host.py") as folder:
        programs = write_programs(folder / "programs", [program])
        programs.chmod(0o755)
        log = folder / "log"  # the batch's stdout owned by its own uid, as a log file may be
        log.touch()
        if os.geteuid() == 0:
            os.chown(log, NOBODY, NOBODY)
        with log.open("w") as stdout:  # as in the pod: not root, so no CAP_SYS_PTRACE
            done = subprocess.run([interpreter(), "-m", "llamaops.platform.eval.sandbox_batch", str(programs),
                                   json.dumps(LIMITS.model_dump(mode="json"))], stdout=stdout, stderr=subprocess.PIPE,
                                  env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(folder), "TMPDIR": str(folder)},
                                  text=True, timeout=120, **as_nobody())
        done.stdout = log.read_text()
    (result,) = outcomes(done)
    assert result["status"] == "failed" and "wrote" not in result["output"], result

