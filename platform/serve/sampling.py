"""Next-token choice: greedy (exact argmax) or seeded temperature / top-k / top-p sampling."""
from dataclasses import dataclass, field

import torch

# Below this temperature the distribution is a point mass on the argmax for any logits a model
# makes; dividing by it would only overflow the scores to inf and the softmax to NaN.
MIN_TEMPERATURE = 1e-5


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 means no top-k cut
    stop: tuple[str, ...] = ()
    seed: int | None = None
    stop_ids: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")

    @property
    def greedy(self) -> bool:
        return self.temperature < MIN_TEMPERATURE or self.top_k == 1


TOP_P_CANDIDATES = 1024  # tokens ranked before falling back to sorting the whole vocabulary


def make_generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, ()).item()))
    return generator


def _top_p_candidates(probs: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities sorted descending with their ids, enough of them to hold the top-p prefix: a
    partial top-k when its mass already reaches top_p (the usual case), a full sort only when the
    distribution is too flat for that."""
    top, ids = torch.topk(probs, min(TOP_P_CANDIDATES, probs.numel()))
    if top.numel() < probs.numel() and float(top.sum()) < top_p:
        top, ids = probs.sort(descending=True)
    return top, ids


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    """One token id from a row of logits [vocab].

    top-k first narrows the row to k candidates, so softmax, the top-p prefix and the draw touch k
    values instead of the whole vocabulary; the draw inverts the CDF with one seeded uniform
    (cheaper than `multinomial` over 128k entries, and the same seed gives the same token)."""
    if params.greedy:
        return int(logits.argmax())
    scores = logits.float() / params.temperature
    ids = None  # candidate token ids when scores no longer cover the whole vocabulary in order
    if params.top_k and params.top_k < scores.numel():
        scores, ids = torch.topk(scores, params.top_k)  # sorted, descending
    probs = torch.softmax(scores, dim=-1)
    if params.top_p < 1:
        if ids is None:
            probs, ids = _top_p_candidates(probs, params.top_p)
        # Keep the smallest prefix whose mass reaches top_p. The first token always stays: a top_p
        # below float32's smallest value (1e-46) rounds to 0, which would otherwise drop them all.
        beyond = probs.cumsum(0) - probs >= params.top_p
        beyond[0] = False
        probs = probs.masked_fill(beyond, 0.0)
    cdf = probs.cumsum(0)
    u = torch.rand(1, generator=generator) * cdf[-1]
    # The first index whose CDF exceeds u: a token of zero probability never is one.
    choice = min(int(torch.searchsorted(cdf, u, right=True)), int(probs.nonzero()[-1]))
    return int(ids[choice]) if ids is not None else choice
