"""Parallel layout in the Llama 3 paper's order [TP, CP, PP, DP]."""
from typing import Literal

from pydantic import PositiveInt

from .base import Config


class ParallelLayout(Config):
    tp: PositiveInt = 1  # tensor parallel (with sequence parallel), inside a node
    cp: PositiveInt = 1  # context parallel: the sequence split across ranks
    pp: PositiveInt = 1  # pipeline stages
    dp: PositiveInt = 1  # data parallel, sharded with FSDP
    activation_checkpointing: bool = False
    pp_schedule: Literal["1f1b", "interleaved_1f1b"] = "1f1b"
    pp_stages_per_rank: PositiveInt = 1  # virtual stages; > 1 needs interleaved_1f1b
    pp_microbatches: PositiveInt = 4  # per step; 1F1B needs at least pp

    @property
    def world_size(self) -> int:
        return self.tp * self.cp * self.pp * self.dp

    def describe(self) -> str:
        return f"TP {self.tp} x CP {self.cp} x PP {self.pp} x DP {self.dp} = {self.world_size}"
