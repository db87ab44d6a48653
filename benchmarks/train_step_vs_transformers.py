"""One training step (forward + full LM cross-entropy + backward) of llamaops' Transformer against
Hugging Face transformers' LlamaForCausalLM, same weights, same tokens, on this machine's CPU.

    .venv/bin/python benchmarks/train_step_vs_transformers.py                 # fp32, and bf16 where the CPU has it
    .venv/bin/python benchmarks/train_step_vs_transformers.py --dtype bf16 --steps 10 --json

What is compared (see benchmarks/README.md for how to read the output):
- one Llama 3.1-shaped config with the real 128,256-token vocabulary, GQA and llama3 RoPE scaling;
- llamaops' model is initialised with `init_weights`, its weights are converted to Hugging Face
  names (q/k rows permuted from Meta's interleaved rotary pairs to HF's half-split ones) and
  loaded into a LlamaForCausalLM (attn_implementation="sdpa", transformers' default);
- a correctness guard first: fp32 logits of both models must agree within 1e-4 (max abs), and
  their losses too, or the benchmark aborts;
- each step is `zero_grad(set_to_none=True)`, forward, mean cross-entropy of every next token over
  the full vocabulary, backward. Hugging Face computes it as its trainer does, `model(input_ids,
  labels=...)`, which materialises [B, T, vocab] logits and upcasts them to fp32 for the loss;
  llamaops computes it the way its training does, `model(tokens, targets=...)`, which fuses the
  output projection with the loss in chunks of tokens (platform/model/loss.py) and never holds
  the full logits. Both are the same loss over the same positions (checked at start);
- the two models run alternately (the order flips every step) after warm-up steps; the median
  step time is reported as tokens/s, with the achieved FLOP/s (sizing.flops_per_token: 6N plus
  the attention term) as a fraction of this machine's matmul peak, measured in the same run by a
  2048x2048 matmul loop in the same dtype.

bf16 runs use bf16 parameters for both models (`--bf16-mode weights`, the default: measured the fastest for
both on the development CPU; autocast re-casts the fp32 weights every step) or torch.autocast over fp32
parameters for both (`--bf16-mode autocast`). Buffers (rotary tables/frequencies) stay fp32 in
both models, as in real mixed-precision training.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

try:
    import llamaops  # noqa: F401
except ImportError:  # pragma: no cover
    raise SystemExit("llamaops is not importable: install the checkout (pip install -e .) into this venv") from None

from llamaops.platform.config.model import ModelConfig, RopeScaling  # noqa: E402
from llamaops.platform.model import Transformer  # noqa: E402
from llamaops.platform.model.precision import cpu_flags, cpu_has_bf16, cpu_name, no_bf16_note  # noqa: E402

IGNORE_INDEX = -100

# name -> (model config, batch, seq). All share the real vocabulary; "small" is the default: on
# the 2-core development VM a step takes ~2.2 s in fp32 and ~3.4-4.1 s in bf16, the default run
# ~2.5 minutes.
CONFIGS: dict[str, tuple[ModelConfig, int, int]] = {
    "tiny": (
        ModelConfig(dim=256, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden_dim=768, max_seq_len=8192),
        1,
        256,
    ),
    "small": (
        ModelConfig(dim=512, n_layers=4, n_heads=8, n_kv_heads=2, ffn_hidden_dim=1536, max_seq_len=8192),
        2,
        512,
    ),
    "medium": (
        ModelConfig(dim=1024, n_layers=4, n_heads=8, n_kv_heads=2, ffn_hidden_dim=3584, max_seq_len=8192),
        2,
        512,
    ),
}


# --------------------------------------------------------------------------------------------
# Weight conversion: llamaops (Meta names, interleaved rotary pairs) -> Hugging Face Llama.
# --------------------------------------------------------------------------------------------


def _permute_for_hf(weight: torch.Tensor, n_heads: int, head_dim: int) -> torch.Tensor:
    """Rows of wq/wk: Meta rotates pairs (2i, 2i+1), HF rotates (i, i + head_dim/2) per head."""
    dim = weight.shape[1]
    return weight.view(n_heads, head_dim // 2, 2, dim).transpose(1, 2).reshape(n_heads * head_dim, dim)


def to_hf_state_dict(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    out = {
        "model.embed_tokens.weight": state["tok_embeddings.weight"],
        "model.norm.weight": state["norm.weight"],
        "lm_head.weight": state["output.weight"],
    }
    names = {
        "attention.wv": "self_attn.v_proj",
        "attention.wo": "self_attn.o_proj",
        "feed_forward.w1": "mlp.gate_proj",
        "feed_forward.w2": "mlp.down_proj",
        "feed_forward.w3": "mlp.up_proj",
        "attention_norm": "input_layernorm",
        "ffn_norm": "post_attention_layernorm",
    }
    for i in range(cfg.n_layers):
        src, dst = f"layers.{i}.", f"model.layers.{i}."
        out[dst + "self_attn.q_proj.weight"] = _permute_for_hf(
            state[src + "attention.wq.weight"], cfg.n_heads, cfg.head_dim
        )
        out[dst + "self_attn.k_proj.weight"] = _permute_for_hf(
            state[src + "attention.wk.weight"], cfg.n_kv_heads, cfg.head_dim
        )
        for meta, hf in names.items():
            out[dst + hf + ".weight"] = state[src + meta + ".weight"]
    return {k: v.detach().clone() for k, v in out.items()}


def hf_config(cfg: ModelConfig):
    from transformers import LlamaConfig

    rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    if cfg.rope_scaling is not None:
        s: RopeScaling = cfg.rope_scaling
        rope = {
            "rope_type": "llama3",
            "rope_theta": cfg.rope_theta,
            "factor": s.factor,
            "low_freq_factor": s.low_freq_factor,
            "high_freq_factor": s.high_freq_factor,
            "original_max_position_embeddings": s.original_max_seq_len,
        }
    return LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.dim,
        intermediate_size=cfg.ffn_hidden_dim,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads,
        head_dim=cfg.head_dim,
        rms_norm_eps=cfg.norm_eps,
        max_position_embeddings=cfg.max_seq_len,
        rope_parameters=rope,
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        attention_dropout=0.0,
    )


def converted_state_dict(ours: Transformer, cfg: ModelConfig) -> tuple[dict[str, torch.Tensor], str]:
    """HF weights of `ours`: with llamaops' own converter (platform/model/hf.py) when it is there,
    else with this file's. The fp32 correctness guard checks whichever was used."""
    try:
        from llamaops.platform.model.hf import to_hf_tensor
    except Exception as exc:  # absent, or mid-edit by someone else: this file's converter will do
        log(f"(llamaops.platform.model.hf.to_hf_tensor unavailable: {exc!r})")
        return to_hf_state_dict(ours.state_dict(), cfg), "benchmark's own to_hf_state_dict"
    state = dict(to_hf_tensor(cfg, name, t.detach().clone()) for name, t in ours.state_dict().items())
    return state, "llamaops.platform.model.hf.to_hf_tensor"


def build_models(cfg: ModelConfig, seed: int, own_converter: bool = False):
    from transformers import LlamaForCausalLM

    ours = Transformer(cfg)
    ours.init_weights(seed=seed)
    theirs = LlamaForCausalLM._from_config(hf_config(cfg), attn_implementation="sdpa", torch_dtype=torch.float32)
    if own_converter:
        state, converter = to_hf_state_dict(ours.state_dict(), cfg), "benchmark's own to_hf_state_dict"
    else:
        state, converter = converted_state_dict(ours, cfg)
    theirs.converter = converter
    missing, unexpected = theirs.load_state_dict(state, strict=False)
    missing = [k for k in missing if "rotary_emb" not in k]
    if missing or unexpected:
        raise SystemExit(f"weight conversion mismatch: missing {missing}, unexpected {unexpected}")
    if theirs.config._attn_implementation != "sdpa":
        raise SystemExit(f"transformers picked attention {theirs.config._attn_implementation!r}, not sdpa")
    return ours.train(), theirs.train()


def cast_parameters(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast parameters only: rotary tables / inverse frequencies stay fp32 in both models."""
    for p in model.parameters():
        p.data = p.data.to(dtype)


# --------------------------------------------------------------------------------------------
# The step each library's training loop runs.
# --------------------------------------------------------------------------------------------


def shifted_targets(tokens: torch.Tensor) -> torch.Tensor:
    """Next-token targets, the last position ignored: exactly what HF does with labels=tokens."""
    return F.pad(tokens[:, 1:], (0, 1), value=IGNORE_INDEX)


def ours_loss(model, tokens, targets):
    """llamaops training: the output projection fused with the loss, chunk by chunk."""
    return model(tokens, targets=targets)


def ours_loss_from_logits(model, tokens, targets):
    """The unfused way (--llamaops-loss logits): full logits, upcast to fp32, as HF does."""
    logits = model(tokens)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)


def theirs_loss(model, tokens, targets):
    return model(input_ids=tokens, labels=tokens, use_cache=False).loss


def train_step(loss_fn, model, tokens, targets, autocast: bool) -> float:
    model.zero_grad(set_to_none=True)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with ctx:
        loss = loss_fn(model, tokens, targets)
    loss.backward()
    return loss.item()


@torch.no_grad()
def correctness_guard(ours, theirs, tokens, targets, loss_fn=ours_loss, tol: float = 1e-4) -> dict:
    logits_ours = ours(tokens)
    logits_theirs = theirs(input_ids=tokens, use_cache=False).logits
    max_diff = (logits_ours - logits_theirs).abs().max().item()
    loss_ref = F.cross_entropy(logits_ours.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX).item()
    loss_ours = loss_fn(ours, tokens, targets).item()
    loss_theirs = theirs_loss(theirs, tokens, targets).item()
    result = {
        "logits_max_abs_diff": max_diff,
        "loss_llamaops": loss_ours,
        "loss_transformers": loss_theirs,
        "loss_reference": loss_ref,
    }
    if not max_diff <= tol:
        raise SystemExit(f"ABORT: fp32 logits differ by {max_diff:.3g} > {tol}: the weight conversion is wrong")
    if abs(loss_ours - loss_theirs) > tol or abs(loss_ours - loss_ref) > tol:
        raise SystemExit(f"ABORT: fp32 losses differ: {result}")
    return result


# --------------------------------------------------------------------------------------------
# Measurement.
# --------------------------------------------------------------------------------------------


def matmul_peak(dtype: torch.dtype, n: int = 2048, seconds: float = 2.0) -> float:
    """Best FLOP/s of an n x n x n matmul over ~`seconds` of repeats, in `dtype`."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    for _ in range(3):
        torch.mm(a, b, out=out)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(4):
            torch.mm(a, b, out=out)
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - start))
    return best


def flops_per_token(cfg: ModelConfig, seq: int) -> float:
    try:
        from llamaops.platform.model.sizing import flops_per_token as sizing_fpt

        return sizing_fpt(cfg, seq)
    except ImportError:  # pragma: no cover - sizing.py is being written concurrently
        kv = cfg.n_kv_heads * cfg.head_dim
        per_layer = 2 * cfg.dim * cfg.n_heads * cfg.head_dim + 2 * cfg.dim * kv + 3 * cfg.dim * cfg.ffn_hidden_dim
        matmul = cfg.n_layers * per_layer + cfg.dim * cfg.vocab_size
        return 6.0 * matmul + 12.0 * cfg.n_layers * cfg.n_heads * cfg.head_dim * seq


def bench_dtype(name, ours, theirs, tokens, targets, steps, warmup, autocast, ours_fn=ours_loss) -> dict:
    """Alternate the two models step by step (the order flips every step), warm-up steps first."""
    runners = {
        "llamaops": lambda: train_step(ours_fn, ours, tokens, targets, autocast),
        "transformers": lambda: train_step(theirs_loss, theirs, tokens, targets, autocast),
    }
    times = {k: [] for k in runners}
    first = {}
    losses = {}
    order = list(runners)
    for step in range(warmup + steps):
        line = {}
        for key in order if step % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            losses[key] = runners[key]()
            line[key] = time.perf_counter() - start
            first.setdefault(key, line[key])
            if step >= warmup:
                times[key].append(line[key])
        log(f"  [{name}] step {step + 1}/{warmup + steps}{'' if step >= warmup else ' (warm-up)'}"
            + "".join(f"  {k} {line[k]:.3f}s" for k in order))
    return {"times": times, "losses": losses, "first_step_s": first}


def profile_step(name, ours, theirs, tokens, targets, autocast, ours_fn, rows: int = 15) -> None:
    from torch.profiler import ProfilerActivity, profile

    for key, fn, model in (("llamaops", ours_fn, ours), ("transformers", theirs_loss, theirs)):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            train_step(fn, model, tokens, targets, autocast)
        log(f"\n[{name}] {key}: one step, top ops by self CPU time")
        log(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=50))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def compile_blocks(ours, theirs) -> None:
    """torch.compile every decoder block of both models (the embedding, the head and the loss stay
    eager). Compilation happens in each dtype's first step, reported as first_step_s."""
    for block in ours.layers.values():
        block.compile()
    for layer in theirs.model.layers:
        layer.compile()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16", "both"], default="auto",
                   help="auto (default): fp32, and bf16 too where the CPU has bf16 instructions")
    p.add_argument("--steps", type=int, default=8, help="timed steps per model and dtype (median)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model and dtype first")
    p.add_argument("--config", choices=sorted(CONFIGS), default="small")
    p.add_argument("--batch", type=int, help="override the config's batch size")
    p.add_argument("--seq", type=int, help="override the config's sequence length")
    p.add_argument("--bf16-mode", choices=["weights", "autocast"], default="weights",
                   help="weights: bf16 parameters for both (default, fastest for both); "
                        "autocast: torch.autocast over fp32 parameters for both")
    p.add_argument("--llamaops-loss", choices=["fused", "logits"], default="fused",
                   help="fused: model(tokens, targets=...), llamaops training's loss (default); "
                        "logits: full logits then F.cross_entropy, as transformers does (ablation)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the decoder blocks of BOTH models (compile time excluded from "
                        "the medians, reported as the first step's time)")
    p.add_argument("--own-converter", action="store_true",
                   help="convert the weights with this file's converter even when platform/model/hf.py has one")
    p.add_argument("--profile", action="store_true",
                   help="after timing each dtype, profile one step of each model (torch.profiler, top ops "
                        "by self CPU time, to stderr)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, batch, seq = CONFIGS[args.config]
    batch, seq = args.batch or batch, args.seq or seq
    dtypes = {"auto": ["fp32", "bf16"] if cpu_has_bf16() else ["fp32"], "both": ["fp32", "bf16"]}.get(
        args.dtype, [args.dtype])
    if "bf16" not in dtypes and args.dtype == "auto":
        log(f"{no_bf16_note()}: bf16 not measured (--dtype bf16 forces it)")

    import transformers

    load_start = os.getloadavg()[0]
    if load_start > 0.5:
        log(f"WARNING: 1-minute load average {load_start:.2f} before starting: other processes are "
            "using the CPUs, figures will be noisy (the alternation keeps the ratio fair-ish)")
    t0 = time.perf_counter()
    ours, theirs = build_models(cfg, args.seed, args.own_converter)
    log(f"weights converted with {theirs.converter}")
    gen = torch.Generator().manual_seed(args.seed + 1)
    tokens = torch.randint(0, cfg.vocab_size, (batch, seq), generator=gen)
    targets = shifted_targets(tokens)
    ours_fn = ours_loss if args.llamaops_loss == "fused" else ours_loss_from_logits
    guard = correctness_guard(ours, theirs, tokens, targets, ours_fn)
    log(f"correctness guard (fp32): logits max |diff| {guard['logits_max_abs_diff']:.2e}, "
        f"loss llamaops {guard['loss_llamaops']:.6f} transformers {guard['loss_transformers']:.6f}")
    if args.compile:
        compile_blocks(ours, theirs)

    fpt = flops_per_token(cfg, seq)
    result = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_description(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "command": " ".join(["python", *sys.argv]) if argv is None else " ".join(argv),
        "config": {"name": args.config, **cfg.model_dump(), "head_dim": cfg.head_dim, "batch": batch, "seq": seq},
        "parameters": sum(p.numel() for p in ours.parameters()),
        "flops_per_token": fpt,
        "llamaops_loss": args.llamaops_loss,
        "compile": args.compile,
        "steps": args.steps,
        "warmup": args.warmup,
        "weight_converter": theirs.converter,
        "correctness_guard": guard,
        "load_average_start": load_start,
        "results": {},
    }
    for dtype_name in dtypes:
        autocast = dtype_name == "bf16" and args.bf16_mode == "autocast"
        param_dtype = torch.bfloat16 if dtype_name == "bf16" and not autocast else torch.float32
        cast_parameters(ours, param_dtype)
        cast_parameters(theirs, param_dtype)
        compute_dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float32
        log(f"measuring the {dtype_name} 2048^3 matmul peak ...")
        peak = matmul_peak(compute_dtype)
        log(f"  peak {peak / 1e9:.1f} GFLOP/s; timing {args.warmup}+{args.steps} steps per model ...")
        run = bench_dtype(dtype_name, ours, theirs, tokens, targets, args.steps, args.warmup, autocast, ours_fn)
        if dtype_name == "fp32":
            precision = "fp32 parameters and activations"
        elif autocast:
            precision = "torch.autocast(cpu, bf16) over fp32 parameters, for both models"
        else:
            precision = "bf16 parameters and activations for both models (rotary buffers fp32)"
        entry = {"precision": precision, "matmul_peak_flops": peak}
        for key, times in run["times"].items():
            med = statistics.median(times)
            tps = batch * seq / med
            entry[key] = {
                "median_step_s": med,
                "min_step_s": min(times),
                "max_step_s": max(times),
                "first_step_s": run["first_step_s"][key],
                "tokens_per_s": tps,
                "flops_per_s": tps * fpt,
                "fraction_of_peak": tps * fpt / peak,
                "loss": run["losses"][key],
            }
        entry["speedup_llamaops_over_transformers"] = (
            entry["llamaops"]["tokens_per_s"] / entry["transformers"]["tokens_per_s"]
        )
        result["results"][dtype_name] = entry
        if args.profile:
            profile_step(dtype_name, ours, theirs, tokens, targets, autocast, ours_fn)
    result["load_average_end"] = os.getloadavg()[0]
    result["wall_s"] = time.perf_counter() - t0

    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


def machine_description() -> str:
    flags = ", ".join(sorted(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "bf16") if f in cpu_flags()))
    return f"{cpu_name()}, {os.cpu_count()} logical CPUs ({flags}), {torch.get_num_threads()} torch threads"


def print_table(r: dict) -> None:
    c = r["config"]
    print(f"{r['date']}  {r['machine']}")
    print(f"torch {r['torch']}, transformers {r['transformers']}; command: {r['command']}")
    print(f"config {c['name']}: dim {c['dim']}, {c['n_layers']} layers, {c['n_heads']} heads / {c['n_kv_heads']} kv, "
          f"head_dim {c['head_dim']}, ffn {c['ffn_hidden_dim']}, vocab {c['vocab_size']}, "
          f"{r['parameters'] / 1e6:.1f}M params; batch {c['batch']} x seq {c['seq']}; "
          f"{r['flops_per_token'] / 1e6:.1f} MFLOP/token (6N + 12LHQT)")
    g = r["correctness_guard"]
    print(f"weights converted with {r['weight_converter']}; fp32 guard: logits max |diff| "
          f"{g['logits_max_abs_diff']:.2e}, loss llamaops {g['loss_llamaops']:.6f}, transformers "
          f"{g['loss_transformers']:.6f}")
    print(f"llamaops loss: {r['llamaops_loss']}; compile: {r['compile']}; median of {r['steps']} steps after "
          f"{r['warmup']} warm-up, alternating order; load average {r['load_average_start']:.2f} at start, "
          f"{r['load_average_end']:.2f} at end")
    header = (f"{'dtype':5} {'model':13} {'step s':>7} {'min-max s':>11} {'tokens/s':>9} {'GFLOP/s':>8} "
              f"{'of peak':>8} {'1st step':>8}  loss")
    for dtype, e in r["results"].items():
        print()
        print(f"{dtype}: {e['precision']}; matmul peak {e['matmul_peak_flops'] / 1e9:.1f} GFLOP/s")
        print(header)
        for key in ("llamaops", "transformers"):
            m = e[key]
            print(f"{dtype:5} {key:13} {m['median_step_s']:7.3f} {m['min_step_s']:5.2f}-{m['max_step_s']:<5.2f} "
                  f"{m['tokens_per_s']:9.1f} {m['flops_per_s'] / 1e9:8.1f} {m['fraction_of_peak']:8.1%} "
                  f"{m['first_step_s']:7.2f}s  {m['loss']:.4f}")
        print(f"{dtype:5} llamaops / transformers: {e['speedup_llamaops_over_transformers']:.2f}x")
    print(f"\ntotal wall time {r['wall_s']:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
