"""Launches parallel_worker.py on N local gloo processes (a file store: no port to pick)."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = Path(__file__).with_name("parallel_worker.py")


# Each rank in its own mount namespace with an empty tmpfs at the same path: the rank's LLAMAOPS_HOME
# and TMPDIR live there, so no rank can see a file another rank wrote (pods on separate nodes).
OWN_FILESYSTEM = 'mount -t tmpfs -o size=2g rank-fs "$RANK_FS" && mkdir "$RANK_FS/home" "$RANK_FS/tmp" && exec "$@"'


def launch(world: int, args: list[str], tmp_path: Path, timeout: float = 240, worker: Path = WORKER,
           own_filesystem: Path | None = None) -> None:
    """Run `worker STORE *args` on `world` ranks; fail with the failing ranks' output. With
    `own_filesystem` (an empty directory; needs root and unshare(1)) every rank gets a private one there."""
    # A fresh store file per launch: gloo's file store left by an earlier group would hang this one.
    store = Path(tempfile.mkdtemp(prefix=f"store-{world}-", dir=tmp_path)) / "store"
    env = {**os.environ, "WORLD_SIZE": str(world), "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    prefix: list[str] = []
    if own_filesystem is not None:
        prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c", OWN_FILESYSTEM, "sh"]
        env |= {"RANK_FS": str(own_filesystem), "LLAMAOPS_HOME": str(own_filesystem / "home"),
                "TMPDIR": str(own_filesystem / "tmp")}
    procs = [
        subprocess.Popen(
            [*prefix, sys.executable, str(worker), str(store), *args],
            env={**env, "RANK": str(rank)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for rank in range(world)
    ]
    outputs = []
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=timeout)[0])
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
    failed = [(rank, out) for rank, (proc, out) in enumerate(zip(procs, outputs)) if proc.returncode != 0]
    assert not failed, "\n".join(f"rank {rank}:\n{out[-3000:]}" for rank, out in failed)
