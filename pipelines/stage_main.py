"""Entrypoint of a RayJob: runs one pipeline step on the Ray cluster it was started in.

`python -m llamaops.pipelines.stage_main` with LLAMAOPS_STEP = JSON of run_step's arguments.
"""
import json
import os

from .rayjob import STEP_ENV
from .step import run_step


def main() -> None:
    arguments = json.loads(os.environ[STEP_ENV])
    print(run_step(**arguments))


if __name__ == "__main__":
    main()
