"""Two evaluators for sandbox tests: this (root) process through `run_sandboxed`, and an
unprivileged one, as in a restricted pod, that holds a secret in its environment.

The unprivileged evaluator is a standard-library driver run as uid 65534 from a world-readable
copy of the sandbox's two standard-library modules: the repository and its virtual environment
may lie where that uid cannot read (e.g. under /root).
"""
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from llamaops.platform.eval import sandbox_host
from llamaops.platform.eval.sandbox import SandboxLimits, run_sandboxed

SECRET = "canary-7f3a"  # in every evaluator's environment as AWS_SECRET_ACCESS_KEY
NOBODY = 65534
LIMITS = SandboxLimits(cpu_seconds=2, wall_seconds=3, memory_bytes=512 << 20, max_processes=8)
RLIMITS = LIMITS.model_dump(exclude={"wall_seconds"})

_DRIVER = """\
import json, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llamaops.platform.eval.sandbox_host import launch
source, limits, wall = json.load(sys.stdin)
print(json.dumps(launch(source, limits, wall).__dict__))
"""

Evaluator = Callable[..., dict]  # (source, wall_seconds=...) -> status, exit_code, seconds, output


def as_nobody() -> dict:
    """subprocess arguments that run a child as uid 65534 when this process is root."""
    return {"user": NOBODY, "group": NOBODY, "extra_groups": []} if os.geteuid() == 0 else {}


@contextmanager
def world_readable_copy(*modules: str) -> Iterator[Path]:
    """A folder holding a copy of `llamaops.platform.eval`'s standard-library `modules` as a
    package uid 65534 may read: the repository and its virtual environment may lie where that uid
    cannot (e.g. under /root). Put the folder on the child's path."""
    root = Path(tempfile.mkdtemp(prefix="llamaops-sandbox-copy-"))
    try:
        package = root / "llamaops" / "platform" / "eval"
        package.mkdir(parents=True)
        for init in (root / "llamaops" / "__init__.py", package / "__init__.py"):
            init.write_text("")
        for module in modules:
            shutil.copyfile(Path(sandbox_host.__file__).with_name(module), package / module)
        for path in (root, *root.rglob("*")):
            path.chmod(0o777 if path.is_dir() else 0o644)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def unprivileged_evaluator() -> Iterator[Evaluator]:
    """Yields a function that runs a program through the driver as uid 65534 (or as this
    process's own uid when it is not root)."""
    with world_readable_copy("sandbox_host.py", "sandbox_init.py") as folder:
        (folder / "driver.py").write_text(_DRIVER)
        (folder / "driver.py").chmod(0o644)

        def run(source: str, wall_seconds: float = LIMITS.wall_seconds) -> dict:
            done = subprocess.run(
                [sandbox_host.interpreter(), "-I", "-S", str(folder / "driver.py")], cwd="/",
                input=json.dumps([source, RLIMITS, wall_seconds]), capture_output=True, text=True, timeout=120,
                env={"PATH": "/usr/bin:/bin", "AWS_SECRET_ACCESS_KEY": SECRET}, **as_nobody(),
            )
            assert done.returncode == 0, f"the evaluator died ({done.returncode}): {done.stderr[-2000:]}"
            return json.loads(done.stdout)

        yield run


def root_evaluator(monkeypatch) -> Evaluator:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)

    def run(source: str, wall_seconds: float = LIMITS.wall_seconds) -> dict:
        return run_sandboxed(source, LIMITS.model_copy(update={"wall_seconds": wall_seconds})).__dict__

    return run


def live_processes_with(marker: str) -> list[int]:
    """Live (not zombie) processes whose command line contains `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                if (entry / "stat").read_text().rpartition(")")[2].split()[0] != "Z":
                    found.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
    return found
