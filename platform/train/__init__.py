"""Pretraining, long-context extension and annealing: data-parallel training on Ray Train.

Each stage turns its config into a step plan (schedule.py), runs the per-worker loop (loop.py) on
Ray (ray_runner.py), checkpoints to the sibling URI `output_uri + "-checkpoints"`
(checkpointing.py) so a killed run resumes exactly, and publishes a native model directory.
"""
