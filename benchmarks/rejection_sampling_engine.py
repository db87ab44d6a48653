"""Rejection-sampling generation throughput: the serving engine (platform/eval/generation.py now)
against the sampler it replaced (its own static-batch loop, read from git at BASELINE), on the
same model, prompts, K, batch size and token budget, in the same run. Prints samples/s and the ratio.

    .venv/bin/python benchmarks/rejection_sampling_engine.py
"""
import subprocess
import sys
import time
import types

import torch

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.eval.generation import sample_each
from llamaops.platform.model import Transformer
from llamaops.platform.serve.sampling import SamplingParams
from llamaops.platform.tokenizer import Message, encode_dialog_for_generation, load_tokenizer

BASELINE = "f61250b"  # main before the switch to the engine
PROMPTS, K, MAX_NEW_TOKENS, BATCH = 8, 4, 32, 16


def _baseline_module() -> types.ModuleType:
    source = subprocess.run(["git", "show", f"{BASELINE}:platform/eval/generation.py"], capture_output=True,
                            text=True, check=True).stdout
    module = types.ModuleType("llamaops.platform.eval._old_generation")
    module.__package__ = "llamaops.platform.eval"
    exec(compile(source, "old_generation.py", "exec"), module.__dict__)
    return module


def main() -> None:
    torch.set_num_threads(2)
    tokenizer = load_tokenizer()
    cfg = ModelConfig(dim=256, n_layers=4, n_heads=8, n_kv_heads=4, ffn_hidden_dim=768,
                      vocab_size=tokenizer.vocab_size, max_seq_len=256, rope_scaling=None)
    model = Transformer(cfg)
    model.init_weights(0)
    model.eval()
    dialogs = [(Message("user", f"Question {i}: name a colour and say why."),) for i in range(PROMPTS)]
    encoded = [encode_dialog_for_generation(list(d), tokenizer) for d in dialogs]
    old = _baseline_module()

    def run_old():
        return old.sample_chat_replies(model, tokenizer, dialogs, K, MAX_NEW_TOKENS, old.Sampling(1.0, 1.0, 0), BATCH)

    def run_new():
        return sample_each(model, tokenizer, encoded, K, SamplingParams(max_tokens=MAX_NEW_TOKENS, temperature=1.0, seed=0), BATCH)

    rates = {}
    for name, run in [("old sampler", run_old), ("engine", run_new)] * 2:  # twice: the first pass warms up
        started = time.perf_counter()
        run()
        rates[name] = PROMPTS * K / (time.perf_counter() - started)
    for name, rate in rates.items():
        print(f"{name:12s} {rate:7.2f} samples/s")
    print(f"engine / old sampler: {rates['engine'] / rates['old sampler']:.2f}x "
          f"({PROMPTS} prompts x K={K}, {MAX_NEW_TOKENS} new tokens, batch {BATCH}, torch threads 2)")


if __name__ == "__main__":
    sys.exit(main())
