"""How far FP8 weights (serve/fp8.py, CPU reference path) move a trained model from bf16: each FP8
projection's relative output error against bf16 and against exact (fp64) arithmetic, and the share
of greedy next-token choices FP8 keeps along bf16's own greedy continuations of fixed prompts.

    .venv/bin/python benchmarks/fp8_accuracy.py MODEL [--tokens 32]

MODEL: any model reference `llamaops serve` takes (e.g. the tiny lifecycle's registered model).
"""
import argparse

import torch

from llamaops.platform.model.hf import load_model_or_hf
from llamaops.platform.serve.fp8 import fp8_layers
from llamaops.platform.serve.fp8_accuracy import greedy_agreement, layer_errors
from llamaops.platform.tokenizer import load_tokenizer
from llamaops.platform.tracking.model_reference import model_directory

PROMPTS = ["Hello, how are you?", "What is your name?", "I like to", "Do you know any jokes?", "The weather today is",
           "Tell me about computers.", "What do you think about music?", "Can you help me?", "Where do you live?",
           "Are you a robot?", "What is the capital of France?", "My favourite food is"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--tokens", type=int, default=32, help="greedy tokens after each prompt")
    args = parser.parse_args()
    torch.manual_seed(0)
    with model_directory(args.model) as directory:
        model = load_model_or_hf(directory, torch.float32).eval()
    tokenizer = load_tokenizer()
    prompts = [tokenizer.encode(p, bos=True) for p in PROMPTS]
    cfg = model.cfg
    print(f"model {args.model}: {cfg.n_layers} blocks, dim {cfg.dim}, ffn {cfg.ffn_hidden_dim}; FP8 blocks "
          f"{list(fp8_layers(cfg))}")
    print(f"{'projection':<12} {'bf16 vs exact':>14} {'fp8 vs exact':>13} {'fp8 vs bf16':>12}")
    for name, (bf16, fp8, between) in layer_errors(model, torch.tensor([sum(prompts, [])])).items():
        print(f"{name:<12} {bf16:14.4f} {fp8:13.4f} {between:12.4f}")
    kept, total, whole = greedy_agreement(model, prompts, args.tokens)
    print(f"greedy agreement with bf16: {kept}/{total} = {kept / total:.3f} of next-token choices; "
          f"{whole}/{len(prompts)} continuations of {args.tokens} tokens identical")


if __name__ == "__main__":
    main()
