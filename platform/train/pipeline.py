"""Pipeline stages cut out of the parallelism-free Transformer.

The layer split is `sizing.stage_layer_counts` (the Llama 3 split: one layer fewer on the first
and last stages, which carry the embedding and the output projection with the loss); the train
plan shards the stages this module builds, so planning and training share one split. A stage is
the Transformer itself with the other stages' parts removed: its forward already takes hidden
states when it has no embedding and returns them when it has no output projection.
"""
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
