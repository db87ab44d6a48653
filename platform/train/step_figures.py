"""Figures the training workers measure at a step, published next to the checkpoints.

Rank 0 writes them atomically at `<checkpoint root>/<kind>/step-<k>`; a restarted worker group or
a resumed driver finds them there, so nothing is measured twice and the driver, which holds no
model, reads what the workers measured on the sharded one.
"""
import json

import numpy as np

from llamaops.platform.store import fetched, is_complete, staged_output

FIGURES_FILE = "figures.json"


def figures_uri(checkpoint_root: str, kind: str, step: int) -> str:
    return checkpoint_root.rstrip("/") + f"/{kind}/step-{step}"


def load_step_figures(checkpoint_root: str, kind: str, step: int) -> dict | None:
    """The figures of `kind` published at `step`, or None."""
    uri = figures_uri(checkpoint_root, kind, step)
    if not is_complete(uri):
        return None
    with fetched(uri) as directory:
        return json.loads((directory / FIGURES_FILE).read_text())


def load_step_arrays(checkpoint_root: str, kind: str, step: int) -> dict[str, np.ndarray] | None:
    """The arrays of `kind` published at `step`, by name, or None."""
    uri = figures_uri(checkpoint_root, kind, step)
    if not is_complete(uri):
        return None
    with fetched(uri) as directory:
        return {path.stem: np.load(path) for path in directory.glob("*.npy")}


def publish_step_figures(checkpoint_root: str, kind: str, step: int, figures: dict,
                         arrays: dict[str, np.ndarray] | None = None) -> None:
    """Publish `figures` (JSON) and `arrays` (one .npy each, for per-example figures)."""
    with staged_output(figures_uri(checkpoint_root, kind, step), overwrite=True) as out:
        (out / FIGURES_FILE).write_text(json.dumps(figures, indent=1) + "\n")
        for name, values in (arrays or {}).items():
            np.save(out / f"{name}.npy", values)
