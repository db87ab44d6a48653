"""Decode speed of the llamaops serving engine in bf16 and with FP8 feed-forward weights
(serve/fp8.py: torch._scaled_mm on a GPU) against transformers' `generate` with a static KV cache,
on the same weights and prompts in the same run.

    python benchmarks/gpu_decode.py [--layers 4] [--prompt 128] [--new 128] [--batches 1,32]

The model is the Llama 3.1 8B layer shape with fewer layers (as gpu_train_step.py). Each row prints
generated tokens per second over the whole request (prefill included: both sides do the same
prefill) and the ratio to transformers. `--smoke` runs a small shape on the CPU to check the script.
"""
import argparse
import copy
import time

import gpu_train_step as shared  # the checkout's path set-up, the 8B shape, weight conversion
import torch

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.model import Transformer
from llamaops.platform.serve.engine import Engine
from llamaops.platform.serve.fp8 import fp8_layers, to_fp8
from llamaops.platform.serve.sampling import SamplingParams
from llamaops.platform.tokenizer import load_tokenizer


def timed(fn, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def ours(model: Transformer, prompts: torch.Tensor, new: int, device: str) -> float:
    engine = Engine(model, load_tokenizer(), max_batch=prompts.shape[0], max_seq_len=prompts.shape[1] + new,
                    prefill_chunk=prompts.numel(), max_prefills=prompts.shape[0])
    params = SamplingParams(max_tokens=new, temperature=0)
    rows = prompts.tolist()
    engine.generate(rows[:1], SamplingParams(max_tokens=4, temperature=0))  # warm-up
    seconds = timed(lambda: engine.generate(rows, params), device)
    return prompts.shape[0] * new / seconds


def theirs(model, prompts: torch.Tensor, new: int, device: str) -> float:
    def run(tokens: torch.Tensor, count: int) -> None:
        model.generate(tokens, max_new_tokens=count, min_new_tokens=count, do_sample=False,
                       cache_implementation="static", pad_token_id=0)

    run(prompts[:1], 4)  # warm-up
    return prompts.shape[0] * new / timed(lambda: run(prompts, new), device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--smoke", action="store_true", help="a small shape on the CPU (fp32, no FP8 kernel)")
    args = parser.parse_args()
    device = "cpu" if args.smoke else "cuda"
    dtype = torch.float32 if args.smoke else torch.bfloat16
    cfg = (ModelConfig(dim=256, n_layers=args.layers, n_heads=8, n_kv_heads=2, ffn_hidden_dim=768, max_seq_len=4096)
           if args.smoke else shared.llama_8b_shape(args.layers))
    shared.DEVICE = device
    torch.manual_seed(0)
    with torch.device(device):
        model = Transformer(cfg)
    model.init_weights(seed=0)
    reference = shared.hf_model(cfg, model, dtype).eval()
    shared.cast_parameters(model, dtype)
    model.eval()
    fp8 = to_fp8(copy.deepcopy(model))
    print(f"{torch.cuda.get_device_name() if device == 'cuda' else 'CPU smoke'}; {cfg.n_layers} layers of the "
          f"{'8B' if not args.smoke else 'small'} shape, {dtype}; FP8 blocks {list(fp8_layers(cfg))}; "
          f"prompt {args.prompt}, {args.new} new tokens, greedy")
    print(f"{'batch':>5} {'transformers tok/s':>19} {'llamaops':>14} {'ratio':>6} {'llamaops fp8':>13} {'ratio':>6}")
    with torch.inference_mode():
        for batch in (int(b) for b in args.batches.split(",")):
            prompts = torch.randint(0, cfg.vocab_size, (batch, args.prompt), device=device)
            base = theirs(reference, prompts, args.new, device)
            wide, narrow = ours(model, prompts, args.new, device), ours(fp8, prompts, args.new, device)
            print(f"{batch:5d} {base:19.1f} {wide:14.1f} {wide / base:5.2f}x {narrow:13.1f} {narrow / base:5.2f}x",
                  flush=True)


if __name__ == "__main__":
    main()
