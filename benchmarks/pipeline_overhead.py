"""Runs the tiny pipeline locally and prints wall time per step and the orchestration overhead:
the share of the total not spent inside stage functions (KFP, process start-up, imports, MLflow).

    .venv/bin/python benchmarks/pipeline_overhead.py [--home DIR]
"""
import argparse
import os
import tempfile
import time

from llamaops.pipelines.events import StepEvent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="LLAMAOPS_HOME for the run (default: a fresh temporary folder)")
    args = parser.parse_args()
    os.environ["LLAMAOPS_HOME"] = args.home or tempfile.mkdtemp(prefix="llamaops-bench-")
    os.environ.pop("MLFLOW_TRACKING_URI", None)

    from llamaops.pipelines.local import submit_local
    from llamaops.platform.config import load_preset

    steps: dict[str, float] = {}

    def on_event(event: StepEvent) -> None:
        if event.status != "started":
            steps[event.step] = event.seconds

    started = time.perf_counter()
    submit_local(load_preset("tiny"), progress=on_event)
    total = time.perf_counter() - started
    in_steps = sum(steps.values())
    for step, seconds in steps.items():
        print(f"{step:<13} {seconds:8.1f} s")
    print(f"{'total':<13} {total:8.1f} s")
    print(f"overhead      {total - in_steps:8.1f} s  ({(total - in_steps) / total:.1%} of the total)")


if __name__ == "__main__":
    main()
