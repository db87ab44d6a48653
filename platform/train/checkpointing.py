"""Training checkpoints under the sibling URI `output_uri + "-checkpoints"`, one artifact per step.

`step_000010/` holds the model as a native model directory (`model/`), the optimizer and RNG
state (`trainer.pt`) and the progress (`progress.json`: completed steps, data cursor, the loss
history so far). Each is published with `staged_output`, so only complete checkpoints count.
Checkpoint steps follow from the plan, so the latest is found by probing them newest first:
no listing, the same on file:// and s3://.
"""
import json
import shutil
from dataclasses import dataclass, field
from typing import Any

import torch

from llamaops.platform.model.checkpoint import load_model, save_model
from llamaops.platform.model.transformer import Transformer
from llamaops.platform.store import fetched, is_complete, staged_output
from llamaops.platform.store.uri import local_path

MODEL_DIR = "model"
TRAINER_FILE = "trainer.pt"
PROGRESS_FILE = "progress.json"


def checkpoints_uri(output_uri: str) -> str:
    return output_uri.rstrip("/") + "-checkpoints"


def step_uri(root_uri: str, step: int) -> str:
    return f"{root_uri.rstrip('/')}/step_{step:06d}"


@dataclass
class Progress:
    step: int  # optimizer steps completed
    cursor: int  # data position: next token of the training split
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per completed step


def save_checkpoint(
    root_uri: str, model: Transformer, optimizer: torch.optim.Optimizer, progress: Progress
) -> None:
    trainer_state = {"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()}
    with staged_output(step_uri(root_uri, progress.step), overwrite=True) as out:
        save_model(model, out / MODEL_DIR)
        torch.save(trainer_state, out / TRAINER_FILE)
        (out / PROGRESS_FILE).write_text(json.dumps(progress.__dict__) + "\n")


def latest_checkpoint(root_uri: str, candidate_steps: list[int]) -> int | None:
    for step in sorted(candidate_steps, reverse=True):
        if is_complete(step_uri(root_uri, step)):
            return step
    return None


def load_progress(root_uri: str, step: int) -> Progress:
    with fetched(step_uri(root_uri, step)) as directory:
        return Progress(**json.loads((directory / PROGRESS_FILE).read_text()))


def restore_checkpoint(root_uri: str, step: int, model: Transformer, optimizer: torch.optim.Optimizer) -> Progress:
    """Load weights, optimizer and RNG state of checkpoint `step` in place; return its progress."""
    with fetched(step_uri(root_uri, step)) as directory:
        model.load_state_dict(load_model(directory / MODEL_DIR).state_dict())
        trainer_state = torch.load(directory / TRAINER_FILE, weights_only=True)
        optimizer.load_state_dict(trainer_state["optimizer"])
        torch.set_rng_state(trainer_state["torch_rng"])
        return Progress(**json.loads((directory / PROGRESS_FILE).read_text()))


def load_checkpoint_model(root_uri: str, step: int) -> Transformer:
    with fetched(step_uri(root_uri, step)) as directory:
        return load_model(directory / MODEL_DIR)


def remove_checkpoint(root_uri: str, step: int) -> None:
    uri = step_uri(root_uri, step)
    if uri.startswith("s3://"):
        _remove_s3_prefix(uri)
    else:
        shutil.rmtree(local_path(uri), ignore_errors=True)


def _remove_s3_prefix(uri: str) -> None:
    from llamaops.platform.store.s3 import COMPLETE_MARKER, S3Location, S3Settings

    where = S3Location.parse(uri)
    client = S3Settings.from_env().client()
    client.remove_object(where.bucket, where.marker_key)  # unfinished from here on, never read
    for obj in client.list_objects(where.bucket, prefix=f"{where.prefix}/", recursive=True):
        if not obj.object_name.endswith(COMPLETE_MARKER):
            client.remove_object(where.bucket, obj.object_name)


def average_models(models: list[Transformer]) -> Transformer:
    """Polyak averaging: the element-wise mean of the models' weights, into the first model."""
    target = models[0]
    states: list[dict[str, Any]] = [m.state_dict() for m in models]
    averaged = {name: torch.stack([s[name].float() for s in states]).mean(0).to(t.dtype) for name, t in states[0].items()}
    target.load_state_dict(averaged)
    return target
