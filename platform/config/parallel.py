"""Parallel layout in the Llama 3 paper's order [TP, CP, PP, DP], and how each rank runs its share:
parameter precision, activation checkpointing, torch.compile."""
from typing import Any, Literal

from pydantic import PositiveInt, field_validator

from .base import Config

Checkpointing = Literal["none", "full", "selective"]


class ParallelLayout(Config):
    tp: PositiveInt = 1  # tensor parallel (with sequence parallel), inside a node
    cp: PositiveInt = 1  # context parallel: the sequence split across ranks
    pp: PositiveInt = 1  # pipeline stages
    dp: PositiveInt = 1  # data parallel, sharded with FSDP
    # Recompute in backward: "full" each block's whole forward (keeps only its input), "selective"
    # the cheap elementwise work (keeps the matmul and attention outputs). Old files' true/false
    # still load as "full"/"none".
    activation_checkpointing: Checkpointing = "none"
    # The dtype FSDP2 gathers the weights in, so the forward and backward compute in it. Master
    # weights, gradients (reduced in fp32) and AdamW's moments stay fp32 either way.
    param_dtype: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False  # torch.compile each transformer block (not with tp > 1)
    pp_schedule: Literal["1f1b", "interleaved_1f1b"] = "1f1b"
    pp_stages_per_rank: PositiveInt = 1  # virtual stages; > 1 needs interleaved_1f1b
    pp_microbatches: PositiveInt = 4  # per step; 1F1B needs at least pp
    # Without PP: the forward/backward passes a DP rank splits its rows of a step into, their
    # gradients added up (gradient accumulation), so a pass holds the activations of its rows only.
    accumulation_steps: PositiveInt = 1

    @field_validator("activation_checkpointing", mode="before")
    @classmethod
    def _old_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return "full" if value else "none"
        return value

    @property
    def world_size(self) -> int:
        return self.tp * self.cp * self.pp * self.dp

    def describe(self) -> str:
        return f"TP {self.tp} x CP {self.cp} x PP {self.pp} x DP {self.dp} = {self.world_size}"
