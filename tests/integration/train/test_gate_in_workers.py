"""The long-context gate's figures measured by the sharded model (train/gate_checks.py over
rank_eval.py) equal the one-process ones under DP2, PP2 (1F1B), PP2 interleaved, CP2 and TP2; in
bf16 (FSDP2 gathers, activations between stages in bf16) PP2 measures within bf16's rounding."""
from pathlib import Path

from llamaops.platform.config.parallel import ParallelLayout

from ...unit.train.micro import write_shards
from ...unit.train.parallel_launch import launch

WORKER = Path(__file__).parents[2] / "unit" / "train" / "gate_eval_worker.py"


def test_the_sharded_gate_equals_the_one_process_figures_under_every_layout(tmp_path: Path):
    shards = tmp_path / "shards"
    write_shards(shards.as_uri(), train_tokens=2_000, validation_documents=6)
    layouts = [
        ParallelLayout(dp=2),
        ParallelLayout(pp=2, pp_microbatches=2),
        ParallelLayout(pp=2, pp_stages_per_rank=2, pp_schedule="interleaved_1f1b", pp_microbatches=2),
        ParallelLayout(cp=2),
        ParallelLayout(tp=2),
        ParallelLayout(pp=2, pp_microbatches=2, param_dtype="bf16"),
    ]
    launch(2, [str(shards), *(layout.model_dump_json() for layout in layouts)], tmp_path, worker=WORKER)
