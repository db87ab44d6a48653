"""One bf16 training step of llamaops' Transformer against transformers' LlamaForCausalLM on a GPU:
same weights (converted with llamaops.platform.model.hf), same tokens, same run.

    python benchmarks/gpu_train_step.py [--layers 8] [--batch 1] [--seq 4096] [--steps 10]

The model is the Llama 3.1 8B layer shape (dim 4096, 32/8 heads, FFN 14336, 128,256 vocab) with
fewer layers so both models fit one GPU in turn. Prints tokens/s, the ratio, achieved TFLOP/s
(sizing.flops_per_token: 6N + attention) and MFU against the H100's dense bf16 peak (989 TFLOP/s)
and against a bf16 matmul measured in the same run. A correctness guard first compares fp32 logits
of a 2-layer copy (max abs diff).
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout root is `llamaops`
if Path(__file__).resolve().parents[1].name != "llamaops":
    # Checkout folder not named llamaops: expose it under that name.
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "llamaops", Path(__file__).resolve().parents[1] / "__init__.py",
        submodule_search_locations=[str(Path(__file__).resolve().parents[1])],
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["llamaops"] = module
    spec.loader.exec_module(module)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from llamaops.platform.config.model import ModelConfig  # noqa: E402
from llamaops.platform.model import Transformer  # noqa: E402
from llamaops.platform.model.hf import to_hf_tensor  # noqa: E402
from llamaops.platform.model.hf_config import hf_config_from_model_config  # noqa: E402
from llamaops.platform.model.sizing import flops_per_token  # noqa: E402

H100_DENSE_BF16 = 989e12
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # cpu only to smoke-test the script


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def llama_8b_shape(layers: int) -> ModelConfig:
    return ModelConfig(dim=4096, n_layers=layers, n_heads=32, n_kv_heads=8, ffn_hidden_dim=14336, max_seq_len=131_072)


def hf_model(cfg: ModelConfig, ours: Transformer, dtype: torch.dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**{k: v for k, v in hf_config_from_model_config(cfg).items() if k != "architectures"})
    config._attn_implementation = "sdpa"
    with torch.device(DEVICE):
        theirs = LlamaForCausalLM(config)
    theirs.load_state_dict(dict(to_hf_tensor(cfg, n, t) for n, t in ours.state_dict().items()))
    cast_parameters(theirs, dtype)
    return theirs


def cast_parameters(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Parameters only: rotary buffers stay fp32 in both models, as in mixed-precision training."""
    for param in model.parameters():
        param.data = param.data.to(dtype)


def correctness(seed: int) -> float:
    cfg = ModelConfig(dim=512, n_layers=2, n_heads=8, n_kv_heads=2, ffn_hidden_dim=1536, max_seq_len=131_072)
    ours = Transformer(cfg).to(DEVICE)
    ours.init_weights(seed=seed)
    theirs = hf_model(cfg, ours, torch.float32)
    tokens = torch.randint(0, cfg.vocab_size, (2, 300), device=DEVICE)
    with torch.no_grad():
        diff = (ours(tokens) - theirs(tokens).logits).abs().max().item()
    del ours, theirs
    return diff


def timed_steps(step, steps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(n: int = 8192 if DEVICE == "cuda" else 1024, reps: int = 20) -> float:
    a = torch.randn(n, n, device=DEVICE, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=DEVICE, dtype=torch.bfloat16)
    seconds = timed_steps(lambda: a @ b, reps)
    return 2 * n**3 / seconds


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=4096)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--compile", action="store_true", help="also time llamaops with torch.compile per block")
    args = p.parse_args()
    print(f"device: {torch.cuda.get_device_name() if DEVICE == 'cuda' else 'cpu'}  torch {torch.__version__}")
    print(f"correctness (fp32 logits, 2 layers): max abs diff {correctness(0):.2e}")

    cfg = llama_8b_shape(args.layers)
    ours = Transformer(cfg).to(DEVICE)
    ours.init_weights(seed=0)
    tokens = torch.randint(0, cfg.vocab_size, (args.batch, args.seq + 1), device=DEVICE)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    theirs = hf_model(cfg, ours, torch.bfloat16)
    cast_parameters(ours, torch.bfloat16)

    def ours_step():
        ours.zero_grad(set_to_none=True)
        ours(inputs, targets=targets).backward()

    def theirs_step():
        theirs.zero_grad(set_to_none=True)
        # As transformers' own causal-LM loss does: full logits, upcast to fp32.
        logits = theirs(inputs).logits
        F.cross_entropy(logits.float().flatten(0, 1), targets.flatten()).backward()

    tokens_per_step = args.batch * args.seq
    fpt = flops_per_token(cfg, args.seq)
    peak = matmul_peak()
    results = {}
    for name, step in (("transformers", theirs_step), ("llamaops", ours_step)):
        if DEVICE == "cuda":
            torch.cuda.reset_peak_memory_stats()
        seconds = timed_steps(step, args.steps)
        results[name] = tokens_per_step / seconds
        print(
            f"{name:14s} {results[name]:>10,.0f} tokens/s  {results[name] * fpt / 1e12:6.1f} TFLOP/s  "
            f"MFU {results[name] * fpt / H100_DENSE_BF16:5.1%} (of 989)  {results[name] * fpt / peak:5.1%} (of measured "
            f"{peak / 1e12:.0f})  peak mem {torch.cuda.max_memory_allocated() / 2**30 if DEVICE == 'cuda' else 0:.1f} GiB"
        )
    if args.compile:
        for block in ours.layers.values():
            block.compile()
        seconds = timed_steps(ours_step, args.steps, warmup=3)
        results["llamaops+compile"] = tokens_per_step / seconds
        print(f"{'llamaops+compile':14s} {results['llamaops+compile']:>10,.0f} tokens/s  MFU {results['llamaops+compile'] * fpt / H100_DENSE_BF16:5.1%}")
    print(f"ratio llamaops / transformers: {results['llamaops'] / results['transformers']:.2f}x "
          f"({args.layers} layers of the 8B shape, batch {args.batch} x seq {args.seq}, bf16 weights)")


if __name__ == "__main__":
    main()
