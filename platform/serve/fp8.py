"""FP8 weights for serving, as Llama 3 served 405B on one 8-GPU node (paper, section 6.2).

The feed-forward projections (w1, w3, w2) of every block but the first and the last hold e4m3
weights with one fp32 scale per output row; attention, embeddings, norms and the output layer stay
in the model's dtype. Each forward quantizes its input the same way, one scale per token, with the
token's absolute maximum capped at `ACTIVATION_AMAX_BOUND` (the paper's upper bound on the dynamic
scaling factors), and multiplies in fp8 with fp32 accumulation: `torch._scaled_mm` on a GPU, and
on a CPU a reference path with the same arithmetic (fp8 values widened to fp32, products summed in
fp32, then both scales applied), which the tests use.
"""
import torch
from torch import nn

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.model import Transformer

FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max  # 448
ACTIVATION_AMAX_BOUND = 1200.0
FP8_MODULES = ("feed_forward.w1", "feed_forward.w3", "feed_forward.w2")
MIN_SCALE = 1e-12  # an all-zero row keeps a finite scale


def fp8_layers(cfg: ModelConfig) -> range:
    """The blocks whose feed-forward weights go to FP8: all but the first and the last."""
    return range(1, cfg.n_layers - 1)


def is_fp8_module(name: str, cfg: ModelConfig) -> bool:
    """`layers.<i>.feed_forward.w1` and its kind, for a block in fp8_layers."""
    parts = name.split(".")
    return (len(parts) == 4 and parts[0] == "layers" and int(parts[1]) in fp8_layers(cfg)
            and ".".join(parts[2:]) in FP8_MODULES)


def quantize_rows(x: torch.Tensor, amax_bound: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(e4m3 values, fp32 scales [rows, 1]) with x ~= values * scales, one scale per row."""
    amax = x.detach().abs().amax(dim=-1, keepdim=True).float()
    if amax_bound is not None:
        amax = amax.clamp(max=amax_bound)
    scale = (amax / FP8_MAX).clamp(min=MIN_SCALE)
    return (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8), scale


def scaled_matmul(xq: torch.Tensor, x_scale: torch.Tensor, wq: torch.Tensor, w_scale: torch.Tensor,
                  out_dtype: torch.dtype) -> torch.Tensor:
    """(xq * x_scale) @ (wq * w_scale)^T for row-scaled fp8 operands [M, K] and [N, K]."""
    if xq.is_cuda:
        return torch._scaled_mm(xq, wq.t(), scale_a=x_scale, scale_b=w_scale.view(1, -1), out_dtype=out_dtype)
    return ((xq.float() @ wq.float().t()) * x_scale * w_scale.view(1, -1)).to(out_dtype)


class Fp8Linear(nn.Module):
    """A bias-free linear layer with row-scaled e4m3 weights; `reduce` (a tensor-parallel group's
    all-reduce) ends a row-parallel projection."""

    def __init__(self, weight: torch.Tensor, reduce=None) -> None:
        super().__init__()
        values, scales = quantize_rows(weight)
        self.weight = nn.Parameter(values, requires_grad=False)
        self.scale = nn.Parameter(scales.view(-1), requires_grad=False)
        self.out_dtype = weight.dtype
        self.reduce = reduce

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        xq, x_scale = quantize_rows(rows, ACTIVATION_AMAX_BOUND)
        y = scaled_matmul(xq, x_scale, self.weight, self.scale, self.out_dtype).view(*x.shape[:-1], -1)
        return self.reduce(y) if self.reduce is not None else y


def to_fp8(model: Transformer) -> Transformer:
    """Swap a whole model's FP8 projections (plain linear layers) for Fp8Linear, in place."""
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and is_fp8_module(name, model.cfg):
            parent, child = name.rsplit(".", 1)
            setattr(model.get_submodule(parent), child, Fp8Linear(module.weight.detach()))
    return model
