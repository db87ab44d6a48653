"""The engine's output projection: logits for sampled rows, and for greedy rows the exact argmax
without reading the whole output matrix.

Why: at batch 1 a decode step spends about half its time reading the [vocab, dim] output matrix
(128K x dim), yet greedy decoding needs only the index of the largest logit. The screen computes
every logit from an int8 copy of that matrix (a quarter of the fp32 bytes, half of bf16) and
bounds each one's error: the row's quantisation residual, the bf16 rounding of the hidden state
and of the screen's own output, and the accumulation error the model's own projection could have.
Only rows whose upper bound reaches the best lower bound can hold the model's argmax (usually a
handful); they are recomputed from the real weights. When the best two are closer than rounding
can separate, or too many survive, the row falls back to the full projection: the choice is
always the model's argmax.
"""
import torch
import torch.nn.functional as F

MAX_CANDIDATES = 64  # beyond this the full projection is as cheap as the exact recompute
# The screen pays while the step reads the matrix for few rows; with more, one full fp32 matmul
# shares its read across the rows and the screen's int8 kernel and per-logit bounds cost more
# (CPU time, 1 thread, 128K x 256: 4.5 vs 9.9 ms at 1 row, 22 vs 35 at 8, 60 vs 25 at 16).
SCREEN_MAX_ROWS = 8
_QUANT_ROWS = 16_384  # rows quantised at a time: bounds the temporary fp32 copies


class OutputHead:
    def __init__(self, weight: torch.Tensor, *, screen: bool = True) -> None:
        self.weight = weight.detach()
        self.screen = Int8Screen.build(self.weight) if screen else None

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """[N, dim] -> [N, vocab]."""
        return F.linear(hidden, self.weight)

    def token_logits(self, hidden: torch.Tensor, token: int) -> torch.Tensor:
        """[N, dim] -> [N] fp32 logits of one token (a reward model's score)."""
        return hidden.float() @ self.weight[token].float()

    def argmax(self, hidden: torch.Tensor) -> list[int]:
        """The model's greedy token for each row of hidden [N, dim]."""
        screen = self.screen
        if screen is None or len(hidden) > SCREEN_MAX_ROWS:
            return self.logits(hidden).argmax(-1).tolist()
        survivors = screen.candidates(hidden)
        ids = survivors.nonzero()[:, 1]
        tokens = []
        for row, candidates in enumerate(ids.split(survivors.sum(-1).tolist())):
            tokens.append(self._exact_among(screen, hidden[row : row + 1], candidates))
        return tokens

    def _exact_among(self, screen: "Int8Screen", hidden: torch.Tensor, candidates: torch.Tensor) -> int:
        if 1 < candidates.numel() <= MAX_CANDIDATES:
            logits = F.linear(hidden, self.weight[candidates])[0]
            best, second = logits.topk(2).values.tolist()
            if best - second > screen.tie_tolerance(hidden, best):
                return int(candidates[logits.argmax()])
        elif candidates.numel() == 1:
            return int(candidates[0])
        return int(self.logits(hidden)[0].argmax())


class Int8Screen:
    """Per-row symmetric int8 copy of the output matrix with each row's error terms."""

    def __init__(self, weight: torch.Tensor) -> None:
        vocab, dim = weight.shape
        self.quantised = torch.empty(vocab, dim, dtype=torch.int8, device=weight.device)
        self.scales = torch.empty(vocab, dtype=torch.bfloat16, device=weight.device)
        self.residual_norms = torch.empty(vocab, dtype=torch.float32, device=weight.device)
        self.norms = torch.empty(vocab, dtype=torch.float32, device=weight.device)
        for start in range(0, vocab, _QUANT_ROWS):
            rows = weight[start : start + _QUANT_ROWS].float()
            # The scale is rounded to bf16 first (what the kernel multiplies by); the residual is
            # measured against exactly what the kernel sees.
            scale = (rows.abs().amax(1) / 127).clamp_min(torch.finfo(torch.bfloat16).tiny).bfloat16()
            q = torch.round(rows / scale.float()[:, None]).clamp(-127, 127)
            self.quantised[start : start + len(rows)] = q.to(torch.int8)
            self.scales[start : start + len(rows)] = scale
            self.residual_norms[start : start + len(rows)] = (rows - q * scale.float()[:, None]).norm(dim=1)
            self.norms[start : start + len(rows)] = rows.norm(dim=1)
        self.residual_norms *= 1.001  # its own fp32 rounding
        # Accumulation error of any dim-long fp32-accumulated dot product, relative to |w| |h|.
        self.accumulation = dim * 2.0**-23
        # Rounding of the model's own logits: bf16 logits are rounded to 8 bits.
        self.output_rounding = torch.finfo(weight.dtype).eps
        self.max_norm = float(self.norms.max())

    @classmethod
    def build(cls, weight: torch.Tensor) -> "Int8Screen | None":
        """None where the int8 kernel cannot run (it needs dim % 32 == 0; some devices lack it)."""
        if weight.dim() != 2 or weight.shape[1] % 32 or not hasattr(torch, "_weight_int8pack_mm"):
            return None
        try:
            probe = cls(weight[:64])
            expected = F.linear(torch.ones(1, weight.shape[1], device=weight.device, dtype=weight.dtype), weight[:64])
            got = probe.screened(torch.ones(1, weight.shape[1], device=weight.device, dtype=weight.dtype))
            if not torch.allclose(got, expected.float(), rtol=0.05, atol=0.05 * float(probe.norms.max()) + 1e-6):
                return None
        except (RuntimeError, NotImplementedError):
            return None
        return cls(weight)

    def screened(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch._weight_int8pack_mm(hidden.to(torch.bfloat16), self.quantised, self.scales).float()

    def candidates(self, hidden: torch.Tensor) -> torch.Tensor:
        """bool [N, vocab]: the tokens that can still be each row's argmax."""
        hidden32 = hidden.float()
        rounded = hidden.to(torch.bfloat16).float()
        hidden_norm = hidden32.norm(dim=-1, keepdim=True)
        # |exact - screened| <= |residual| |h_bf16| + |w| |h - h_bf16| + the screen's bf16 output
        # rounding (2^-8 |logit|, counted twice to cover the logit's own error) + accumulation
        # errors of both the screen and the model's projection.
        per_row = self.residual_norms * rounded.norm(dim=-1, keepdim=True) + self.norms * (
            (hidden32 - rounded).norm(dim=-1, keepdim=True) + 2 * self.accumulation * hidden_norm
        )
        screened = self.screened(hidden)
        margin = torch.add(per_row, screened.abs(), alpha=2.0**-7 + self.output_rounding)
        best_lower = (screened - margin).amax(-1, keepdim=True)
        return screened + margin >= best_lower

    def tie_tolerance(self, hidden: torch.Tensor, best: float) -> float:
        """How far apart two logits can be computed by two different kernels: below it, the
        recompute cannot tell which one the model's own projection ranks first."""
        return 2 * (self.accumulation * self.max_norm * float(hidden.float().norm()) + self.output_rounding * abs(best))
