"""A model on Ray workers for generation and scoring (rejection sampling, evaluation): data-parallel
groups sharing the work, each group one model split over `tp` ranks (serve/tensor_parallel.py),
every rank reading only its shards of the model.

The driver holds prompts, texts and figures, never a model. Group g takes a contiguous share of
the items; generation request i keeps seed `params.seed + i` whichever group runs it, so nothing
depends on the layout. Within a group every rank runs the same code on the same items (the
serving engine for generation); the group's first rank returns the results.
"""
import socket
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from llamaops.platform.model.checkpoint import model_in_part, read_model_config
from llamaops.platform.model.precision import cpu_compute_dtype, flush_denormals
from llamaops.platform.serve.head import OutputHead
from llamaops.platform.serve.sampling import SamplingParams
from llamaops.platform.serve.tensor_parallel import TensorParallelGroup, load_tensor_parallel
from llamaops.platform.tokenizer import load_tokenizer

from .generation import generate
from .multiple_choice import ChoiceScore, score_continuations

SCORE_ROWS = 16  # dialogs scored in one forward
PLACEMENT_TIMEOUT_S = 300  # for the ranks' CPUs and GPUs, e.g. while an autoscaler adds nodes


class ModelWorkersError(RuntimeError):
    """The generation workers cannot start."""


@dataclass(frozen=True)
class WorkerLayout:
    tp: int = 1  # ranks holding one copy of the model
    groups: int = 1  # copies, each generating its share of the prompts
    use_gpu: bool = False
    threads: int = 1  # torch threads of a CPU rank

    @property
    def world_size(self) -> int:
        return self.tp * self.groups


def shares(count: int, groups: int) -> list[range]:
    """Contiguous, near-equal ranges of `count` items, one per group."""
    return [range(g * count // groups, (g + 1) * count // groups) for g in range(groups)]


class ModelRank:
    """One Ray actor: a rank of a tensor-parallel group (run through `ray.remote`)."""

    def endpoint(self) -> tuple[str, int]:
        import ray

        with socket.socket() as probe:
            probe.bind(("", 0))
            return ray.util.get_node_ip_address(), probe.getsockname()[1]

    def join(self, rank: int, layout: WorkerLayout, address: str, port: int) -> None:
        import torch.distributed as dist

        torch.set_num_threads(layout.threads)
        flush_denormals()
        self.device = torch.device("cuda", 0) if layout.use_gpu else torch.device("cpu")
        dist.init_process_group("nccl" if layout.use_gpu else "gloo", init_method=f"tcp://{address}:{port}",
                                rank=rank, world_size=layout.world_size)
        groups = [dist.new_group(list(range(g * layout.tp, (g + 1) * layout.tp))) for g in range(layout.groups)]
        self.tp = TensorParallelGroup(rank % layout.tp, layout.tp, groups[rank // layout.tp])
        self.model = self.head = None
        self.tokenizer = load_tokenizer()

    def load(self, model_uri: str) -> None:
        self.model = self.head = None  # the last model's memory goes before the next one comes
        dtype = torch.bfloat16 if self.device.type == "cuda" else cpu_compute_dtype(torch.float32)
        with model_in_part(model_uri) as (directory, fill):
            model, head = load_tensor_parallel(directory, self.tp, self.device, dtype, fill)
        self.model, self.head = model, head if self.tp.size > 1 else None

    def held_bytes(self) -> int:
        """Bytes of the weights this rank holds."""
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams, max_batch: int) -> list[str]:
        return generate(self.model, self.tokenizer, prompts, params, max_batch, head=self.head)

    @torch.inference_mode()
    def scores(self, dialogs: Sequence[Sequence[int]], score_token: int) -> list[float]:
        """Each token dialog's `score_token` logit at its last position (the reward model's score)."""
        head = self._head()
        out = []
        for start in range(0, len(dialogs), SCORE_ROWS):
            rows = dialogs[start : start + SCORE_ROWS]
            tokens = torch.tensor([t for row in rows for t in row], device=self.device).unsqueeze(0)
            document_ids = torch.cat([torch.full((len(row),), n) for n, row in enumerate(rows)]).unsqueeze(0)
            hidden = self.model(tokens, document_ids=document_ids.to(self.device), project=False)[0]
            ends = torch.tensor([len(row) for row in rows]).cumsum(0) - 1
            out += head.token_logits(hidden[ends.to(self.device)], score_token).tolist()
        return out

    def window_nll_sums(self, indices: list[int], data_uri: str, seq_len: int, batch_size: int) -> list[float]:
        """eval.perplexity.window_nll_sums of the validation windows `indices`."""
        from llamaops.platform.store import fetched

        from .perplexity import open_validation, window_nll_sums

        with fetched(data_uri) as directory:
            stream = open_validation(directory, seq_len)
            return window_nll_sums(self.model, self._head(), stream, indices, seq_len, batch_size)

    def choice_scores(self, items: list[tuple[list[int], list[list[int]]]]) -> list[list[ChoiceScore]]:
        """eval.multiple_choice.score_continuations of each (context, continuations)."""
        return [score_continuations(self.model, context, choices, self._head()) for context, choices in items]

    def _head(self) -> OutputHead:
        return self.head or OutputHead(self.model.output.weight, screen=False)

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


class ModelWorkers:
    """The workers of one layout, joined into one process group; a context manager."""

    def __init__(self, layout: WorkerLayout) -> None:
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from llamaops.platform.train.ray_runner import ensure_ray

        ensure_ray(layout.world_size)
        self.layout = layout
        # PACK keeps a group's ranks, which are consecutive bundles, on as few nodes as it can.
        bundle = {"CPU": layout.threads, **({"GPU": 1} if layout.use_gpu else {})}
        self.placement = ray.util.placement_group([bundle] * layout.world_size, strategy="PACK")
        try:
            ray.get(self.placement.ready(), timeout=PLACEMENT_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            ray.util.remove_placement_group(self.placement)
            raise ModelWorkersError(
                f"{layout.world_size} model worker ranks of {bundle} found no room in {PLACEMENT_TIMEOUT_S} s "
                f"(the Ray cluster has {ray.cluster_resources()}); give the step more workers or lower its layout"
            ) from None
        self.ranks = [ray.remote(ModelRank).options(
            num_cpus=layout.threads, num_gpus=1 if layout.use_gpu else 0,
            scheduling_strategy=PlacementGroupSchedulingStrategy(self.placement, placement_group_bundle_index=n),
        ).remote() for n in range(layout.world_size)]
        try:
            address, port = ray.get(self.ranks[0].endpoint.remote())
            ray.get([r.join.remote(n, layout, address, port) for n, r in enumerate(self.ranks)])
        except BaseException:
            self._release()
            raise

    def __enter__(self) -> "ModelWorkers":
        return self

    def __exit__(self, *exc: object) -> None:
        import ray

        try:
            ray.get([r.close.remote() for r in self.ranks], timeout=60)
        finally:
            self._release()

    def _release(self) -> None:
        import ray

        for r in self.ranks:
            ray.kill(r)
        ray.util.remove_placement_group(self.placement)

    def load(self, model_uri: str) -> None:
        """Every rank reads its shards of the model at `model_uri` (a directory, file:// or s3://),
        once the model's config is read here: a missing or damaged artifact is one line, not a
        worker's traceback."""
        import ray

        with model_in_part(model_uri) as (directory, _):
            read_model_config(directory)
        ray.get([r.load.remote(model_uri) for r in self.ranks])

    def _each_group(self, method: str, items: Sequence, *args) -> list:
        """Run `method` on every group's share of `items`; the results in the items' order."""
        import ray

        parts = shares(len(items), self.layout.groups)
        calls = []
        for g, part in enumerate(parts):
            share = [items[i] for i in part]
            group_args = [a(part.start) if callable(a) else a for a in args]
            calls.append([getattr(r, method).remote(share, *group_args)
                          for r in self.ranks[g * self.layout.tp : (g + 1) * self.layout.tp]])
        results = ray.get([c for group in calls for c in group])
        return [x for g in range(self.layout.groups) for x in results[g * self.layout.tp]]

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams, max_batch: int) -> list[str]:
        """`eval.generation.generate` over the groups: the same texts as one process gives."""
        seed = params.seed if params.seed is not None else 0
        return self._each_group("generate", [list(p) for p in prompts],
                                lambda first: replace(params, seed=seed + first), max_batch)

    def held_bytes(self) -> list[int]:
        """Each rank's weight bytes."""
        import ray

        return ray.get([r.held_bytes.remote() for r in self.ranks])

    def scores(self, dialogs: Sequence[Sequence[int]], score_token: int) -> list[float]:
        """Each token dialog's `score_token` logit at its last position, as `ModelRank.scores`."""
        return self._each_group("scores", [list(d) for d in dialogs], score_token)

    def window_nll_sums(self, indices: list[int], data_uri: str, seq_len: int, batch_size: int) -> list[float]:
        return self._each_group("window_nll_sums", indices, data_uri, seq_len, batch_size)

    def choice_scores(self, items: list[tuple[list[int], list[list[int]]]]) -> list[list[ChoiceScore]]:
        return self._each_group("choice_scores", items)
