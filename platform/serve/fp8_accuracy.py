"""How far FP8 weights (fp8.py) move a model from bf16: each FP8 projection's output error, and the
greedy choices FP8 keeps (benchmarks/fp8_accuracy.py reports both; the tests bound them)."""
import copy

import torch
import torch.nn.functional as F

from llamaops.platform.model import Transformer

from .fp8 import Fp8Linear, fp8_layers, to_fp8


def layer_errors(model: Transformer, rows: torch.Tensor) -> dict[str, tuple[float, float, float]]:
    """{layer.projection: (bf16 vs exact, fp8 vs exact, fp8 vs bf16)} relative Frobenius errors."""
    inputs: dict[str, torch.Tensor] = {}
    hooks = [getattr(model.layers[str(i)].feed_forward, w).register_forward_pre_hook(
        lambda module, args, name=f"{i}.{w}": inputs.__setitem__(name, args[0].detach()))
        for i in fp8_layers(model.cfg) for w in ("w1", "w3", "w2")]
    with torch.no_grad():
        model(rows)
    for hook in hooks:
        hook.remove()
    errors = {}
    for name, x in inputs.items():
        layer, projection = name.split(".")
        weight = getattr(model.layers[layer].feed_forward, projection).weight.detach()
        exact = F.linear(x.double(), weight.double())
        bf16 = F.linear(x.bfloat16(), weight.bfloat16()).double()
        fp8 = Fp8Linear(weight)(x).double()
        errors[name] = (float((bf16 - exact).norm() / exact.norm()), float((fp8 - exact).norm() / exact.norm()),
                        float((fp8 - bf16).norm() / bf16.norm()))
    return errors


def greedy_agreement(model: Transformer, prompts: list[list[int]], tokens: int) -> tuple[int, int, int]:
    """(choices kept, choices, prompts whose whole continuation is kept)."""
    bf16, fp8 = copy.deepcopy(model).bfloat16(), to_fp8(copy.deepcopy(model))
    bf16.init_buffers(torch.device("cpu"))
    kept = total = whole = 0
    with torch.no_grad():
        for prompt in prompts:
            sequence = list(prompt)
            for _ in range(tokens):
                sequence.append(int(bf16(torch.tensor([sequence]), last_only=True)[0, -1].argmax()))
            rows = torch.tensor([sequence])
            expected = bf16(rows)[0, len(prompt) - 1 : -1].argmax(-1)
            same = fp8(rows)[0, len(prompt) - 1 : -1].argmax(-1) == expected
            kept, total, whole = kept + int(same.sum()), total + same.numel(), whole + int(bool(same.all()))
    return kept, total, whole
