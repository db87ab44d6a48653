"""Can torchtitan be the training peer on this CPU? One training step of torchtitan's own Llama 3
model, built at the shape of train_step_vs_transformers.py's `tiny` config, with each attention
backend torchtitan 0.3.0 offers; prints what each one did.

    python -m venv /tmp/tt && /tmp/tt/bin/pip install --no-deps torchtitan==0.3.0 \
        && /tmp/tt/bin/pip install spmd_types==0.2.3 torchdata torch_checkpointing tyro einops triton
    PYTHONPATH=/tmp/tt/lib/python3.11/site-packages .venv/bin/python benchmarks/torchtitan_cpu_probe.py

Not a llamaops dependency (nor in its `test` extra): without torchtitan the script says so and
exits 0. benchmarks/README.md ("torchtitan") records what it printed here.
"""
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from train_step_vs_transformers import CONFIGS  # noqa: E402

BACKENDS = ("sdpa", "flex", "flex_flash", "varlen")


def model_config(backend: str):
    from torchtitan.models.common import ComplexRoPE, Embedding, Linear, RMSNorm
    from torchtitan.models.llama3 import (
        _EMBEDDING_INIT,
        _NORM_INIT,
        Llama3Model,
        _build_llama3_layers,
        _output_linear_init,
    )

    cfg, _, _ = CONFIGS["tiny"]
    rope = ComplexRoPE.Config(dim=cfg.dim // cfg.n_heads, max_seq_len=cfg.max_seq_len, theta=cfg.rope_theta, scaling="llama")
    return Llama3Model.Config(
        dim=cfg.dim, vocab_size=cfg.vocab_size,
        tok_embeddings=Embedding.Config(num_embeddings=cfg.vocab_size, embedding_dim=cfg.dim, param_init=_EMBEDDING_INIT),
        norm=RMSNorm.Config(normalized_shape=cfg.dim, param_init=_NORM_INIT),
        lm_head=Linear.Config(in_features=cfg.dim, out_features=cfg.vocab_size, param_init=_output_linear_init(cfg.dim)),
        layers=_build_llama3_layers(
            n_layers=cfg.n_layers, dim=cfg.dim, n_heads=cfg.n_heads, n_kv_heads=cfg.n_kv_heads,
            hidden_dim=cfg.ffn_hidden_dim, fuse_qkv=False, rope=rope, attn_backend=backend,
        ),
    )


def train_step(backend: str) -> float:
    import torch
    import torch.nn.functional as F

    _, batch, seq = CONFIGS["tiny"]
    model = model_config(backend).build()
    model.init_states()
    tokens = torch.randint(0, model.config.vocab_size, (batch, seq))
    positions = torch.arange(seq).expand(batch, seq)
    logits = model(tokens, positions, model.get_attention_masks(positions))
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
    loss.backward()
    return float(loss)


def main() -> int:
    try:
        import torch
        import torchtitan  # noqa: F401
    except ImportError as error:
        print(f"skipped: torchtitan does not import ({error}); see the pip command in this script's docstring")
        return 0
    from importlib.metadata import version

    print(f"torch {torch.__version__}, torchtitan {version('torchtitan')}, device cpu")
    for backend in BACKENDS:
        try:
            print(f"{backend}: one training step ran, loss {train_step(backend):.4f}")
        except Exception as error:  # the point is to print why each backend fails
            last = traceback.extract_tb(error.__traceback__)[-1]
            message = str(error).splitlines()[0][:300]
            print(f"{backend}: {type(error).__name__}: {message} ({Path(last.filename).name}:{last.lineno})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
