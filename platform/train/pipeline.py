"""Pipeline stages cut out of the parallelism-free Transformer.

The layer split is `sizing.stage_layer_counts` (the Llama 3 split: one layer fewer on the first
and last stages, which carry the embedding and the output projection with the loss); the train
plan shards the stages this module builds, so planning and training share one split. A stage is
the Transformer itself with the other stages' parts removed: its forward already takes hidden
states when it has no embedding and returns them when it has no output projection.
"""
import copy
from collections.abc import Callable

import torch
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleInterleaved1F1B

from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.model.sizing import stage_layer_counts
from llamaops.platform.model.transformer import Transformer


def stage_layer_ids(n_layers: int, n_stages: int, stage: int) -> range:
    """The global indices of the layers on `stage` of `n_stages`."""
    if not 0 <= stage < n_stages:
        raise ValueError(f"stage {stage} is not in 0..{n_stages - 1}")
    counts = stage_layer_counts(n_layers, n_stages)
    start = sum(counts[:stage])
    return range(start, start + counts[stage])


def split_stage(model: Transformer, n_stages: int, stage: int) -> Transformer:
    """Prune `model` in place down to `stage` of `n_stages` and return it. Layers keep their global
    names ("layers.40....") so checkpoints stay the same for every split."""
    keep = {str(i) for i in stage_layer_ids(model.cfg.n_layers, n_stages, stage)}
    for name in [name for name in model.layers if name not in keep]:
        del model.layers[name]
    if stage > 0:
        model.tok_embeddings = None
    if stage < n_stages - 1:
        model.norm, model.output = None, None
    return model


def rank_stage_ids(layout: ParallelLayout, pp_rank: int) -> list[int]:
    """The stages `pp_rank` holds: looped placement, rank r holds r, r + pp, r + 2 pp, ..."""
    return [pp_rank + layout.pp * v for v in range(layout.pp_stages_per_rank)]


def build_stages(
    whole: Transformer,
    mesh: DeviceMesh,
    layout: ParallelLayout,
    shard: Callable[[Transformer], None] | None = None,
    device: torch.device | None = None,
) -> tuple[list[PipelineStage], list[Transformer]]:
    """This rank's pipeline stages of `whole` over mesh["pp"] and their modules. `shard` (e.g.
    FSDP2 over mesh["dp"]) is applied to each stage module before it is wrapped. `device`: where
    the stages run (default: `whole`'s device; a model built on the meta device needs it)."""
    if layout.pp_stages_per_rank > 1 and layout.pp_schedule != "interleaved_1f1b":
        raise ValueError(f"pp_stages_per_rank={layout.pp_stages_per_rank} needs pp_schedule=interleaved_1f1b")
    n_stages = layout.pp * layout.pp_stages_per_rank
    ids = rank_stage_ids(layout, mesh["pp"].get_local_rank())
    modules = [split_stage(copy.deepcopy(whole), n_stages, i) for i in ids]
    for module in modules:
        if shard is not None:
            shard(module)
    device = device or next(whole.parameters()).device
    group = mesh["pp"].get_group()
    return [PipelineStage(m, i, n_stages, device, group=group) for m, i in zip(modules, ids)], modules


def step_microbatches(layout: ParallelLayout, rows: int) -> int:
    """Microbatches a step of `rows` sequences per DP rank runs: `pp_microbatches`, or one sequence
    each when the rank has fewer rows than that (the batch-size ramp's first steps). Fewer
    microbatches than stages is what the Llama 3 paper's flexible schedule allows (section 3.3.2);
    torch's interleaved 1F1B runs it, its plain 1F1B refuses it (`check_step_microbatches`)."""
    return min(layout.pp_microbatches, rows)


def check_step_microbatches(layout: ParallelLayout, rows: int) -> str | None:
    """Why the pipeline cannot run a step of `rows` sequences per DP rank, or None."""
    count = step_microbatches(layout, rows)
    if rows % count:
        return (f"pp_microbatches={layout.pp_microbatches} does not divide the {rows} sequences of each DP rank;"
                f" pick a pp_microbatches that divides {rows}")
    if layout.pp_schedule == "1f1b" and count < layout.pp:
        return (f"the 1F1B schedule needs at least pp={layout.pp} microbatches and a DP rank has {count}"
                " (one sequence each); use pp_schedule=interleaved_1f1b (the Llama 3 flexible schedule) or more"
                " sequences per step")
    rounds = max(1, count // layout.pp)
    if count % rounds:
        return (f"the interleaved schedule splits {count} microbatches into rounds of pp={layout.pp} and {count}"
                f" is not a multiple of {rounds} rounds; pick a pp_microbatches that is")
    return None


def pipeline_schedule(
    stages: list[PipelineStage],
    layout: ParallelLayout,
    n_microbatches: int,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scale_grads: bool = True,
):
    """The schedule `layout` selects over this rank's `stages`, for steps of `n_microbatches`.
    scale_grads=False: the gradients are the sum over microbatches (`loss_fn` weighs each one)
    instead of their mean. A schedule infers its stages' send/receive shapes on its first step, so
    a step of another microbatch count or shape needs a new one over the same stages."""
    if layout.pp_schedule == "interleaved_1f1b":
        return ScheduleInterleaved1F1B(stages, n_microbatches=n_microbatches, loss_fn=loss_fn, scale_grads=scale_grads)
    return Schedule1F1B(stages[0], n_microbatches=n_microbatches, loss_fn=loss_fn, scale_grads=scale_grads)
