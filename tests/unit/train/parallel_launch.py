"""Launches parallel_worker.py on N local gloo processes (a file store: no port to pick)."""
import os
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).with_name("parallel_worker.py")


def launch(world: int, args: list[str], tmp_path: Path, timeout: float = 240, worker: Path = WORKER) -> None:
    """Run `worker STORE *args` on `world` ranks; fail with the failing ranks' output."""
    store = tmp_path / f"store-{world}"
    env = {**os.environ, "WORLD_SIZE": str(world), "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), str(store), *args],
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
