"""One rank of a training run, run by parallel_launch.launch: train_worker on a pickled TrainingJob.

argv: STORE_FILE JOB_PICKLE HISTORY_JSON; RANK and WORLD_SIZE from the environment. Rank 0 writes
the run's per-step history (loss, grad norm, ...) to HISTORY_JSON.
"""
import json
import os
import pickle
import sys

import torch.distributed as dist

from llamaops.platform.train.loop import train_worker


def main() -> None:
    store_file, job_file, history_file = sys.argv[1:4]
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=world)
    try:
        with open(job_file, "rb") as f:
            job = pickle.load(f)
        progress = train_worker(job, rank, world)
        if rank == 0:
            with open(history_file, "w") as f:
                json.dump(progress.history, f)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
