"""Records of local pipeline runs: LLAMAOPS_HOME/runs/<run_id>.json, for `pipeline runs` and --resume."""
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from llamaops.platform.store import home

from .errors import PipelineError

RunStatus = Literal["running", "succeeded", "failed", "interrupted"]
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass
class RunRecord:
    run_id: str
    preset: str
    preset_json: str
    tracking_uri: str
    artifact_root: str
    mlflow_run_id: str
    status: RunStatus = "running"
    started_at: float = 0.0
    ended_at: float | None = None
    stages_done: list[str] = field(default_factory=list)
    model_version: str | None = None
    error: str | None = None
    pid: int = field(default_factory=os.getpid)

    @property
    def shown_status(self) -> RunStatus:
        """`interrupted` for a run whose submitting process is gone without recording an end."""
        if self.status == "running" and not _alive(self.pid):
            return "interrupted"
        return self.status


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def runs_dir() -> Path:
    path = home() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_dir(run_id: str) -> Path:
    """Run-scoped scratch: KFP's pipeline root, TMPDIR and the step events."""
    return runs_dir() / run_id


def check_run_id(run_id: str) -> None:
    if not _RUN_ID.match(run_id):
        raise PipelineError(f"run id '{run_id}' must be letters, digits, '_', '.' or '-'")


def save_run(record: RunRecord) -> None:
    path = runs_dir() / f"{record.run_id}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(record), indent=2))
    tmp.replace(path)


def load_run(run_id: str) -> RunRecord:
    check_run_id(run_id)
    path = runs_dir() / f"{run_id}.json"
    if not path.is_file():
        raise PipelineError(f"no local run '{run_id}'; `llamaops pipeline runs` lists them (a KFP run: pass --host URL)")
    return RunRecord(**json.loads(path.read_text()))


def list_runs() -> list[RunRecord]:
    records = [RunRecord(**json.loads(path.read_text())) for path in runs_dir().glob("*.json")]
    return sorted(records, key=lambda record: record.started_at)
