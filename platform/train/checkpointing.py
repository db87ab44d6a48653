"""Distributed training checkpoints under the sibling URI `output_uri + "-checkpoints"`.

`step_000010/` holds the model and optimizer state as a torch.distributed.checkpoint (DCP) directory
(`state/`: every rank writes its own shards, so FSDP and TP states are saved without gathering and
load into another world size or layout), each rank's RNG state (`rng/rank_00000.pt`), the model
config (`model_config.json`) and the progress (`progress.json`: completed steps, which also fix the
learning rate of the next one, the data cursor and the loss history so far). It is published once
every rank has written (`checkpoint_staging`: on s3:// each rank uploads its own files from its own
filesystem), so only complete checkpoints count. `manifest.json` holds the SHA-256 of every file
(and of each block), hashed by the rank that wrote it; a checkpoint whose files are missing,
truncated or do not match it is skipped for the previous good one, and one without it (written by
an older llamaops) is refused. Checkpoint steps follow from the plan, so the latest is found by probing
them newest first: no listing, the same on file:// and s3://.
"""
import io
import json
import logging
import shutil
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.model.checkpoint import plan_shards, write_model_shards
from llamaops.platform.model.transformer import Transformer
from llamaops.platform.store import COMPLETE_MARKER, ArtifactError, fetched, is_complete
from llamaops.platform.store.manifest import Digest, Manifest, ManifestError, digest_file, read_manifest
from llamaops.platform.store.uri import local_path

from . import safe_dcp
from .checkpoint_staging import OwnDirectories, SharedDirectory, checkpoint_staging, distributed, flag_tensor
from .hashing_writer import HashingWriter

STATE_DIR = "state"
RNG_DIR = "rng"
CONFIG_FILE = "model_config.json"
PROGRESS_FILE = "progress.json"
DEFAULT_SHARD_BYTES = 2 * 2**30  # a published model's weights files: at most this much each
log = logging.getLogger(__name__)


def checkpoints_uri(output_uri: str) -> str:
    return output_uri.rstrip("/") + "-checkpoints"


def step_uri(root_uri: str, step: int) -> str:
    return f"{root_uri.rstrip('/')}/step_{step:06d}"


@dataclass
class Progress:
    step: int  # optimizer steps completed
    cursor: int  # data position: next token of the training split
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per completed step


# Optimizer state keyed by parameter name ("state.layers.3.attention.wq.weight.exp_avg"), like the
# model's: the state of every pipeline split has the same keys, so any layout loads any other.
_STATE_OPTIONS = StateDictOptions(flatten_optimizer_state_dict=True)


def _part_states(parts: list[Transformer], optimizers: list[torch.optim.Optimizer]) -> list[tuple[dict, dict]]:
    return [get_state_dict(part, optimizer, options=_STATE_OPTIONS) for part, optimizer in zip(parts, optimizers)]


def _merged(states: list[tuple[dict, dict]]) -> dict[str, dict]:
    """The rank's parts (its pipeline stages, or the whole model) as one state of global names."""
    merged: dict[str, dict] = {"model": {}, "optimizer": {}}
    for model_state, optimizer_state in states:
        merged["model"].update(model_state)
        merged["optimizer"].update(optimizer_state)
    return merged


class PendingCheckpoint:
    """A checkpoint whose state files are being written (in the background when asynchronous).
    `publish` makes it visible once every rank's files are in; until then (or if a rank dies
    first) it is unfinished, and `latest_checkpoint` never returns it."""

    def __init__(self, staging: SharedDirectory | OwnDirectories, write: Future | None, writer: HashingWriter,
                 rng: dict[str, Digest], step: int, progress: str, config: str):
        self._staging, self._write, self._writer, self._rng = staging, write, writer, rng
        self.step, self._progress, self._config = step, progress, config

    def written(self) -> bool:
        """Whether this rank's state files are all written (no collective)."""
        return self._write is None or self._write.done()

    def publish(self) -> None:
        """Collective: wait for this rank's write (its files hashed as they were written), then
        rank 0 publishes once every rank's is in, with the manifest of all their files."""
        if self._write is not None:
            self._write.result()  # re-raises a failed background write
        self._staging.publish({CONFIG_FILE: self._config, PROGRESS_FILE: self._progress},
                              self._writer.digests | self._rng, self._writer.required)


def start_checkpoint(
    root_uri: str,
    parts: list[Transformer],
    optimizers: list[torch.optim.Optimizer],
    progress: Progress,
    asynchronous: bool = False,
    group: dist.ProcessGroup | None = None,
) -> PendingCheckpoint:
    """Collective when a process group is up: every rank calls it with its own parts (its stages'
    or the whole model's shards). Synchronous: returns once this rank's files are written.
    Asynchronous (DCP async_save): returns once the state is copied to CPU memory; the files are
    written by a background thread whose collectives run on `group` (not the training's)."""
    rank = dist.get_rank() if distributed() else 0
    state = _merged(_part_states(parts, optimizers))
    staging = checkpoint_staging(step_uri(root_uri, progress.step), rank)
    out = staging.directory
    (out / RNG_DIR).mkdir(exist_ok=True)
    rng = f"{RNG_DIR}/rank_{rank:05d}.pt"
    torch.save(torch.get_rng_state(), out / rng)
    writer = HashingWriter(out / STATE_DIR, prefix=f"{STATE_DIR}/")
    write = None
    if asynchronous:
        write = dcp.async_save(state, checkpoint_id=out / STATE_DIR, storage_writer=writer, process_group=group,
                               no_dist=not distributed())
    else:
        dcp.save(state, checkpoint_id=out / STATE_DIR, storage_writer=writer, no_dist=not distributed())
    # The progress as of now: the loop goes on appending to its history while the files are written.
    return PendingCheckpoint(
        staging, write, writer, {rng: digest_file(out / rng)}, progress.step,
        json.dumps(progress.__dict__) + "\n", parts[0].cfg.model_dump_json() + "\n",
    )


def save_checkpoint(
    root_uri: str, parts: list[Transformer], optimizers: list[torch.optim.Optimizer], progress: Progress
) -> None:
    """Write and publish a checkpoint synchronously. Collective when a process group is up."""
    start_checkpoint(root_uri, parts, optimizers, progress).publish()


def check_checkpoint(directory: Path) -> Manifest:
    """The checkpoint's manifest, once every file it lists is there with its size, and the files
    that are parsed (DCP metadata, progress, config) match their hashes and name no file it does not
    list: a few small reads, cheap enough for every restart. Data blocks are checked where read.
    Raises ArtifactError otherwise."""
    try:
        manifest = read_manifest(directory)
    except ArtifactError as error:
        raise ArtifactError(f"checkpoint {directory}: {error}; it was written by an older llamaops or is damaged:"
                            " delete it (training resumes from an earlier one)") from None
    try:
        manifest.check_sizes()
        metadata = safe_dcp.read_metadata(directory / STATE_DIR, manifest.under(STATE_DIR))
        json.loads(manifest.verified_bytes(PROGRESS_FILE))
        ModelConfig.model_validate_json(manifest.verified_bytes(CONFIG_FILE))
    except Exception as error:  # missing, damaged or unreadable files: whatever the cause
        raise ArtifactError(f"checkpoint {directory} is damaged: {error}") from None
    for item in metadata.storage_data.values():
        relative = f"{STATE_DIR}/{item.relative_path}"
        if relative not in manifest.files or manifest.files[relative]["size"] < item.offset + item.length:
            raise ArtifactError(f"checkpoint {directory} is damaged: {relative} is not in its manifest or too short")
    return manifest


def is_valid_checkpoint(root_uri: str, step: int) -> bool:
    uri = step_uri(root_uri, step)
    if not is_complete(uri):
        return False
    try:
        with fetched(uri) as directory:
            check_checkpoint(directory)
        return True
    except ArtifactError as error:  # the older ones are still there; say why this one is passed over
        log.warning("checkpoint %s skipped: %s", uri, error)
        return False


def latest_checkpoint(root_uri: str, candidate_steps: list[int]) -> int | None:
    """The newest complete and intact checkpoint among `candidate_steps`; a damaged one is skipped."""
    for step in sorted(candidate_steps, reverse=True):
        if is_valid_checkpoint(root_uri, step):
            return step
    return None


def load_progress(root_uri: str, step: int) -> Progress:
    with fetched(step_uri(root_uri, step)) as directory:
        return Progress(**json.loads(check_checkpoint(directory).verified_bytes(PROGRESS_FILE)))


def restore_checkpoint(
    root_uri: str, step: int, parts: list[Transformer], optimizers: list[torch.optim.Optimizer]
) -> Progress:
    """Load weights, optimizer and RNG state of checkpoint `step` in place, resharded to however
    `parts` are split and sharded now; return its progress. Collective when a process group is up.
    Each rank checks the blocks it reads against the manifest (ArtifactError if one is damaged)."""
    rank = dist.get_rank() if distributed() else 0
    with fetched(step_uri(root_uri, step)) as directory:
        manifest = check_checkpoint(directory)
        rng, progress, damage = None, None, None
        try:  # this rank's small files, checked before the collective load
            progress = Progress(**json.loads(manifest.verified_bytes(PROGRESS_FILE)))
            name = f"{RNG_DIR}/rank_{rank:05d}.pt"
            if name in manifest.files:  # a rank the writing run did not have keeps its own seed
                rng = torch.load(io.BytesIO(manifest.verified_bytes(name)), weights_only=True)
        except ManifestError as error:
            damage = error
        _agree_intact(damage)
        states = _part_states(parts, optimizers)
        state = _merged(states)
        safe_dcp.load(state, directory / STATE_DIR, not distributed(), manifest.under(STATE_DIR))
        # dcp.load fills tensors in place but replaces plain values (learning rates...) in `state`.
        for part, optimizer, (model_state, optimizer_state) in zip(parts, optimizers, states):
            set_state_dict(
                part, optimizer,
                model_state_dict={key: state["model"][key] for key in model_state},
                optim_state_dict={key: state["optimizer"][key] for key in optimizer_state},
                options=_STATE_OPTIONS,
            )
        if rng is not None:
            torch.set_rng_state(rng)
        return progress


def _agree_intact(damage: ManifestError | None) -> None:
    """Collective: raise ManifestError on every rank if any rank found a damaged file, so that
    all ranks fail a restore alike (DCP's load already fails on every rank for its own files)."""
    found = flag_tensor(int(damage is not None))
    if distributed():
        dist.all_reduce(found)
    if damage is not None:
        raise damage
    if found.item():
        raise ManifestError("another rank found a damaged file in this checkpoint")


def load_checkpoint_model(root_uri: str, step: int) -> Transformer:
    """The whole model of checkpoint `step`, unsharded, in one process (no process group needed).
    For tests and small models: publishing goes through `publish_checkpoint_model`."""
    with fetched(step_uri(root_uri, step)) as directory:
        manifest = check_checkpoint(directory)
        model = Transformer(ModelConfig.model_validate_json(manifest.verified_bytes(CONFIG_FILE)))
        state = {"model": model.state_dict()}
        safe_dcp.load(state, directory / STATE_DIR, True, manifest.under(STATE_DIR))
        model.load_state_dict(state["model"])
        return model


def publish_checkpoint_model(
    root_uri: str, steps: list[int], output: Path, max_shard_bytes: int = DEFAULT_SHARD_BYTES
) -> None:
    """Write the model of checkpoints `steps` (their element-wise mean, Polyak averaging, when
    several) as a native model directory at `output`, one group of at most `max_shard_bytes` of
    tensors at a time: each group is read from every checkpoint's shards (DCP loads only the
    tensors asked for), averaged and written before the next is read, so memory holds
    len(steps) groups, never the whole model (a 405B model is 1.6 TB in fp32)."""
    with ExitStack() as stack:
        directories = [stack.enter_context(fetched(step_uri(root_uri, step))) for step in steps]
        manifests = [check_checkpoint(directory) for directory in directories]
        cfg = ModelConfig.model_validate_json(manifests[0].verified_bytes(CONFIG_FILE))
        with torch.device("meta"):
            shapes = Transformer(cfg).state_dict()
        states = [manifest.under(STATE_DIR) for manifest in manifests]
        stored = safe_dcp.read_metadata(directories[0] / STATE_DIR, states[0]).state_dict_metadata
        dtypes = {name: stored[f"model.{name}"].properties.dtype for name in shapes}
        groups = plan_shards({name: t.numel() * dtypes[name].itemsize for name, t in shapes.items()}, max_shard_bytes)

        def averaged_groups():
            for names in groups:
                parts = []
                for directory, manifest in zip(directories, states):
                    part = {name: torch.empty(shapes[name].shape, dtype=dtypes[name]) for name in names}
                    safe_dcp.load({"model": part}, directory / STATE_DIR, True, manifest)
                    parts.append(part)
                if len(parts) == 1:
                    yield parts[0]
                    continue
                yield {name: torch.stack([part[name].float() for part in parts]).mean(0).to(dtypes[name]) for name in names}

        write_model_shards(cfg, averaged_groups(), len(groups), output)


def remove_checkpoint(root_uri: str, step: int) -> None:
    uri = step_uri(root_uri, step)
    if uri.startswith("s3://"):
        _remove_s3_prefix(uri)
    else:
        shutil.rmtree(local_path(uri), ignore_errors=True)


def withdraw_checkpoint(root_uri: str, step: int) -> None:
    """Make checkpoint `step` unfinished (its completion marker removed): never read again, its
    files kept until it is rewritten or pruned."""
    uri = step_uri(root_uri, step)
    if uri.startswith("s3://"):
        from llamaops.platform.store.s3 import S3Location, S3Settings

        where = S3Location.parse(uri)
        S3Settings.from_env().client().remove_object(where.bucket, where.marker_key)
    else:
        (local_path(uri) / COMPLETE_MARKER).unlink(missing_ok=True)


def _remove_s3_prefix(uri: str) -> None:
    from llamaops.platform.store.s3 import COMPLETE_MARKER, S3Location, S3Settings

    where = S3Location.parse(uri)
    client = S3Settings.from_env().client()
    client.remove_object(where.bucket, where.marker_key)  # unfinished from here on, never read
    for obj in client.list_objects(where.bucket, prefix=f"{where.prefix}/", recursive=True):
        if not obj.object_name.endswith(COMPLETE_MARKER):
            client.remove_object(where.bucket, obj.object_name)
