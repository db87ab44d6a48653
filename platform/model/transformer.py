"""The Llama 3.1 decoder in plain torch. It knows nothing of parallelism: train/ shards it.

Module names follow Meta's checkpoints (tok_embeddings, layers.N.attention.wq, ...); layers live
in a ModuleDict keyed by index so a pipeline stage can drop layers and keep the others' names, and
the embedding, final norm and output may be None on stages that do not own them.
"""
import math
from collections.abc import Callable
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

from llamaops.platform.config.model import ModelConfig

from .kv_cache import KVCache
from .loss import IGNORE_INDEX, linear_cross_entropy, token_logits
from .rope import apply_rotary, rotary_table
from .weight_init import ONES, Init, fill_, prefixed

AttentionKernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 as the reference does; bf16 variance loses too much.
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight

    def weight_inits(self) -> dict[str, Init]:
        return {"weight": ONES}


class Attention(nn.Module):
    """Grouped-query attention: n_heads query heads share n_kv_heads key/value heads."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)
        # Optional replacement for the attention itself: (q [B, heads, T, head_dim], k, v [B, kv_heads, T,
        # head_dim] rotated, mask) -> [B, heads, T, head_dim], where mask is forward's attention_mask passed as
        # is (None, or whatever the kernel takes). For a kernel that brings its own keys and knows which ones
        # each query sees without a dense mask (e.g. context parallelism's per-chunk key prefixes).
        self.attention_kernel: AttentionKernel | None = None

    def forward(
        self,
        x: torch.Tensor,
        rotary: torch.Tensor,
        mask: torch.Tensor | None,
        cache: KVCache | None = None,
        layer: int = 0,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        batch, seq, _ = x.shape
        q = apply_rotary(self.wq(x).view(batch, seq, -1, self.head_dim), rotary)
        k = apply_rotary(self.wk(x).view(batch, seq, -1, self.head_dim), rotary)
        v = self.wv(x).view(batch, seq, -1, self.head_dim)
        if cache is not None:
            assert positions is not None and mask is not None  # Transformer.forward builds both for a cache
            k, v = cache.update(layer, positions, k, v, length=mask.shape[-1])
            k, v = k.type_as(q), v.type_as(q)
        else:
            k, v = k.transpose(1, 2), v.transpose(1, 2)
            if self.attention_kernel is not None:
                out = self.attention_kernel(q.transpose(1, 2), k, v, mask)
                return self.wo(out.transpose(1, 2).reshape(batch, seq, -1))
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=True
        )
        return self.wo(out.transpose(1, 2).reshape(batch, seq, -1))

    def weight_inits(self, out_std: float) -> dict[str, Init]:
        inner = Init("trunc_normal", std=0.02)
        return {"wq.weight": inner, "wk.weight": inner, "wv.weight": inner,
                "wo.weight": Init("trunc_normal", std=out_std)}


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))

    def weight_inits(self, out_std: float) -> dict[str, Init]:
        inner = Init("trunc_normal", std=0.02)
        return {"w1.weight": inner, "w3.weight": inner, "w2.weight": Init("trunc_normal", std=out_std)}


class TransformerBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attention = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.feed_forward = FeedForward(cfg.dim, cfg.ffn_hidden_dim)
        # Residual projections start smaller with depth so the residual stream's variance stays flat.
        self.out_std = 0.02 / math.sqrt(2 * cfg.n_layers)

    def forward(self, x, rotary, mask, cache=None, positions=None):
        x = x + self.attention(self.attention_norm(x), rotary, mask, cache, self.layer, positions)
        return x + self.feed_forward(self.ffn_norm(x))

    def weight_inits(self) -> dict[str, Init]:
        return {
            **prefixed("attention_norm", self.attention_norm.weight_inits()),
            **prefixed("attention", self.attention.weight_inits(self.out_std)),
            **prefixed("ffn_norm", self.ffn_norm.weight_inits()),
            **prefixed("feed_forward", self.feed_forward.weight_inits(self.out_std)),
        }


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings: nn.Embedding | None = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleDict({str(i): TransformerBlock(cfg, i) for i in range(cfg.n_layers)})
        self.norm: RMSNorm | None = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output: nn.Linear | None = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.register_buffer("rotary", self._rotary_table(), persistent=False)

    def _rotary_table(self, device=None) -> torch.Tensor:
        cfg = self.cfg
        if device is None and any(p.is_meta for p in self.parameters()):
            device = "meta"
        if str(device) == "meta":
            return torch.empty(cfg.max_seq_len, cfg.head_dim // 2, 2, device="meta")
        return rotary_table(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta, cfg.rope_scaling, device)

    def init_buffers(self, device: torch.device | str | None = None) -> None:
        """Recompute the non-persistent rotary table, e.g. after loading weights into a meta-built model."""
        self.rotary = self._rotary_table(device or next(self.parameters()).device)

    def weight_inits(self) -> dict[str, Init]:
        """How each parameter this model holds starts, by its name (a pipeline stage's layers keep
        their names in the whole model, so a stage lists exactly its part of the whole list)."""
        inits: dict[str, Init] = {}
        if self.tok_embeddings is not None:
            inits["tok_embeddings.weight"] = Init("normal")
        for index, block in self.layers.items():
            inits |= prefixed(f"layers.{index}", cast(TransformerBlock, block).weight_inits())
        if self.norm is not None:
            inits["norm.weight"] = ONES
        if self.output is not None:
            std = self.cfg.dim**-0.5  # initial logits O(1) whatever the width
            inits["output.weight"] = Init("trunc_normal", std=std, a=-3 * std, b=3 * std)
        return inits

    def init_weights(self, seed: int, buffer_device: torch.device | str | None = None) -> None:
        """Initialise every weight from `seed`, e.g. after building on the meta device and
        `to_empty`, then the rotary table. The values are those any sharding of the model draws
        for its shards from the same seed (weight_init.py; train/rank_init.py)."""
        self.init_buffers(buffer_device)
        for name, init in self.weight_inits().items():
            fill_(self.get_parameter(name), init, seed, name)

    def forward(
        self,
        tokens: torch.Tensor,
        *,
        positions: torch.Tensor | None = None,
        document_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        targets: torch.Tensor | None = None,
        loss_reduction: Literal["mean", "sum", "none"] = "mean",
        loss_chunk_size: int | None = None,
        count_hits: bool = False,
        loss_weights: torch.Tensor | None = None,
        score_token: int | None = None,
        last_only: bool = False,
        project: bool = True,
    ) -> torch.Tensor:
        """tokens [B, T] (or hidden states [B, T, dim] on a pipeline stage without the embedding).

        document_ids [B, T]: packed sequences; attention stays within a document and positions
        restart at 0 for each document, so a packed row equals its documents run one by one.
        attention_mask [B or 1, 1, T, T] bool (True: may attend), with positions [B, T]: a caller
        that builds both itself; replaces the causal / document mask. With an attention_kernel
        installed, whatever that kernel takes (None with positions: the kernel's own causal rule;
        context parallelism passes the rows' document ids).
        cache: incremental decoding; positions [B, T] are then each row's absolute positions.
        targets [B, T]: training; returns the cross-entropy of the logits against them
        (IGNORE_INDEX = -100 where a position has no target; `loss_reduction` "mean" over the
        counted targets or their "sum") instead of the logits, with the
        output projection fused into the loss (loss.linear_cross_entropy), `loss_chunk_size`
        tokens at a time (default: its own), so [B, T, vocab] logits are never held.
        count_hits (with targets, under no_grad): returns [loss, hits], hits the counted targets
        that are their position's argmax logit (a teacher-forced greedy check).
        loss_weights [B, T] (with "sum"): each position's loss weighted (DPO's gradient); "none"
        (under no_grad): each position's loss, [B, T].
        score_token: instead of logits or a loss, the logit of that one token at every position
        [B, T] (fp32), or with loss_weights their weighted sum (the reward model's score).
        last_only: logits of the last position only ([B, 1, vocab]): what a prefill needs, and
        with a 128K vocabulary most of a small model's prefill cost otherwise.
        project=False: the final-normed hidden states instead of logits; the serving engine
        projects them itself (an exact greedy choice need not read the whole output matrix).
        Returns logits [B, T, vocab] (hidden states on a stage without the output projection).
        """
        h = self.tok_embeddings(tokens) if self.tok_embeddings is not None else tokens
        batch, seq = tokens.shape[:2]  # not h's: under sequence parallelism h holds a shard of seq
        if attention_mask is None:
            if positions is None and any(cast(TransformerBlock, b).attention.attention_kernel is not None
                                         for b in self.layers.values()):
                # the kernel brings keys from elsewhere: positions 0..T-1 of the local tokens would be wrong
                raise ValueError("attention with an attention_kernel needs forward's explicit positions")
            positions, mask = self._positions_and_mask(batch, seq, h.device, positions, document_ids, cache)
        elif positions is None or document_ids is not None or cache is not None:
            raise ValueError("attention_mask needs explicit positions, and neither document_ids nor a cache")
        else:
            mask = attention_mask
        rotary = self.rotary[positions]
        for block in self.layers.values():
            h = block(h, rotary, mask, cache, positions)
        if last_only:
            h = h[:, -1:]
        if self.norm is not None:
            h = self.norm(h)
        if self.output is None or not project:
            return h
        if score_token is not None:
            return token_logits(h, self.output.weight, score_token, loss_weights)
        if targets is not None:
            return linear_cross_entropy(
                h, self.output.weight, targets, ignore_index=IGNORE_INDEX, reduction=loss_reduction,
                chunk_size=loss_chunk_size, count_hits=count_hits, token_weights=loss_weights,
            )
        return self.output(h)

    def _positions_and_mask(self, batch, seq, device, positions, document_ids, cache):
        if cache is not None:
            if positions is None:
                raise ValueError("decoding with a KV cache needs explicit positions [B, T]")
            key_slots = torch.arange(int(positions.max()) + 1, device=device)
            return positions, key_slots.view(1, 1, 1, -1) <= positions.view(batch, 1, seq, 1)
        if document_ids is not None:
            same_doc = document_ids.unsqueeze(-1) == document_ids.unsqueeze(-2)
            causal = torch.ones(seq, seq, dtype=torch.bool, device=device).tril()
            if positions is None:
                positions = positions_within_documents(document_ids)
            return positions, (same_doc & causal).unsqueeze(1)
        if positions is None:
            positions = torch.arange(seq, device=device).expand(batch, seq)
        return positions, None  # plain causal: SDPA's fast is_causal path


def positions_within_documents(document_ids: torch.Tensor) -> torch.Tensor:
    """[B, T] index of each token inside its own document (documents are contiguous runs)."""
    seq = document_ids.shape[1]
    index = torch.arange(seq, device=document_ids.device).expand_as(document_ids)
    starts = torch.ones_like(document_ids, dtype=torch.bool)
    starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    start_index = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values
    return index - start_index
