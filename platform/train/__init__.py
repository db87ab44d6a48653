"""Pretraining, long-context extension and annealing on Ray Train, sharded with FSDP2.

Each stage turns its config into a step plan (schedule.py), runs the per-worker loop (loop.py) on
Ray (ray_runner.py), checkpoints to the sibling URI `output_uri + "-checkpoints"`
(checkpointing.py, distributed checkpoints) so a killed run resumes exactly, and publishes a
native model directory. parallelize.py applies a [TP, CP, PP, DP] layout (FSDP2 and TP built so
far) to the parallelism-free model over mesh.py's mesh; plan.py checks a layout's per-GPU memory
on a simulated mesh.
"""
