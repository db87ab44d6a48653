"""Post-training on one worker: SFT, DPO and safety tuning of a native model directory.

Each stage follows the stage contract (platform/stage.py): `run_sft`, `run_dpo` and `run_safety`
in the modules of the same names.
"""
