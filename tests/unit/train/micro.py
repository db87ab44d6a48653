"""A micro preset (tiny's recipe on a 512-token vocabulary) and random shard artifacts, for fast tests."""
import numpy as np

from llamaops.platform.config import Preset, load_preset
from llamaops.platform.config.stages import BatchRampStep, Optimizer
from llamaops.platform.data.shards import write_meta, write_split
from llamaops.platform.store import staged_output

MICRO_VOCAB = 512


def micro_preset() -> Preset:
    tiny = load_preset("tiny")
    model = tiny.model.model_copy(update={"vocab_size": MICRO_VOCAB, "dim": 32, "n_layers": 2, "ffn_hidden_dim": 64})
    # write_shards's validation split is 3 documents; random motifs: the gate reports, never fails;
    # no needles: they need the Llama 3 vocabulary.
    gate = tiny.long_context.gate.model_copy(
        update={"windows": 1, "max_short_context_loss_increase": None, "needle_depths": []}
    )
    long_context = tiny.long_context.model_copy(update={"gate": gate})
    return tiny.model_copy(update={"model": model, "long_context": long_context})



def micro_pretraining(preset: Preset, *, seq_len: int, batch_tokens: int, steps: int, checkpoint_every: int,
                      decay_steps: int | None = None) -> Preset:
    """`preset` with a short pretraining: `steps` steps of `batch_tokens` at `seq_len`, lr 1e-2
    warming up over 2 steps then decaying to 1e-3 over `decay_steps` (default: `steps`)."""
    pretrain = preset.pretrain.model_copy(update={
        "total_tokens": batch_tokens * steps,
        "batch_ramp": [BatchRampStep(after_tokens=0, seq_len=seq_len, global_batch_tokens=batch_tokens)],
        "optimizer": Optimizer(peak_lr=1e-2, min_lr=1e-3, warmup_steps=2, decay_steps=decay_steps or steps),
        "checkpoint_every_steps": checkpoint_every,
    })
    return preset.model_copy(update={"pretrain": pretrain})

def write_shards(uri: str, train_tokens: int, seed: int = 0, validation_documents: int = 3) -> str:
    """Random documents of 20-200 tokens, repeating short motifs so a model can learn something."""
    rng = np.random.default_rng(seed)
    motifs = rng.integers(0, MICRO_VOCAB, size=(16, 8))
    docs, total = [], 0
    while total < train_tokens or len(docs) < validation_documents:
        length = int(rng.integers(20, 200))
        doc = np.concatenate([motifs[i] for i in rng.integers(0, 16, size=length // 8 + 1)])[:length]
        docs.append(doc.tolist())
        total += length
    with staged_output(uri) as out:
        counts = {"train": write_split(out, "train", docs), "validation": write_split(out, "validation", docs[:validation_documents])}
        write_meta(out, "random", counts)
    return uri
