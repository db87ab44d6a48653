"""A tampered checkpoint runs no code: its metadata is unpickled by an allow-list and its
non-tensor items as weights only, so checking or restoring it creates nothing."""
import pickle
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException

from llamaops.platform.store.uri import local_path
from llamaops.platform.train import safe_dcp
from llamaops.platform.train.checkpointing import STATE_DIR, is_valid_checkpoint, latest_checkpoint, step_uri

from .test_checkpointing import _saved


class _CreatesAFile:
    """Unpickling this opens (so creates) a file: the stand-in for any command a pickle may run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def test_a_crafted_metadata_file_is_not_run_and_the_checkpoint_is_skipped(tmp_path: Path):
    root = (tmp_path / "ckpt").as_uri()
    _saved(root, [1, 2])
    marker = tmp_path / "pwned"
    (local_path(step_uri(root, 2)) / STATE_DIR / ".metadata").write_bytes(pickle.dumps(_CreatesAFile(marker)))
    assert not is_valid_checkpoint(root, 2)
    assert latest_checkpoint(root, [1, 2]) == 1
    assert not marker.exists()


def test_a_crafted_object_inside_otherwise_valid_metadata_is_refused(tmp_path: Path):
    root = (tmp_path / "ckpt").as_uri()
    _saved(root, [1])
    metadata_file = local_path(step_uri(root, 1)) / STATE_DIR / ".metadata"
    metadata = safe_dcp.read_metadata(metadata_file.parent, None)
    marker = tmp_path / "pwned"
    metadata.planner_data = _CreatesAFile(marker)  # a field DCP itself fills: any object fits there
    metadata_file.write_bytes(pickle.dumps(metadata))
    with pytest.raises(safe_dcp.UnsafeCheckpointError, match="names io.open"):
        safe_dcp.read_metadata(metadata_file.parent, None)
    assert latest_checkpoint(root, [1]) is None and not marker.exists()


def test_a_non_tensor_item_is_loaded_as_weights_only(tmp_path: Path):
    marker = tmp_path / "pwned"
    dcp.save({"lr": 0.5, "extra": _CreatesAFile(marker)}, checkpoint_id=tmp_path / "state", no_dist=True)
    assert not marker.exists()
    state = {"lr": 0.0, "extra": None}
    with pytest.raises((CheckpointException, pickle.UnpicklingError)):  # DCP wraps a rank's error
        safe_dcp.load(state, tmp_path / "state", no_dist=True, manifest=None)
    assert not marker.exists()
    plain = {"lr": 0.0}
    dcp.save({"lr": 0.5}, checkpoint_id=tmp_path / "plain", no_dist=True)
    safe_dcp.load(plain, tmp_path / "plain", no_dist=True, manifest=None)
    assert plain == {"lr": 0.5}


def test_a_real_checkpoints_metadata_reads_through_the_allow_list(tmp_path: Path):
    state = {"w": torch.randn(3, 5, dtype=torch.bfloat16), "step": 7, "betas": (0.9, 0.95), "name": "x"}
    dcp.save(state, checkpoint_id=tmp_path, no_dist=True)
    metadata = safe_dcp.read_metadata(tmp_path, None)
    assert metadata.state_dict_metadata["w"].properties.dtype == torch.bfloat16
    loaded = {"w": torch.zeros(3, 5, dtype=torch.bfloat16), "step": 0, "betas": None, "name": ""}
    safe_dcp.load(loaded, tmp_path, no_dist=True, manifest=None)
    assert torch.equal(loaded["w"], state["w"]) and loaded["step"] == 7 and loaded["name"] == "x"
    assert tuple(loaded["betas"]) == (0.9, 0.95)


class _ByName:
    """Pickles as getattr(owner, name): how Python 3.11.2 pickles an Enum member (by name)."""

    def __init__(self, owner: object, name: str) -> None:
        self.owner, self.name = owner, name

    def __reduce__(self):
        return getattr, (self.owner, self.name)


def test_metadata_with_enum_members_pickled_by_name_reads_and_nothing_else_is_looked_up(tmp_path: Path):
    """Checkpoints written where Enum members pickle by name (Debian 12's Python 3.11.2) read
    anywhere; the getattr they name reaches only a member of an allowed Enum."""
    from torch.distributed.checkpoint.metadata import _MEM_FORMAT_ENCODING

    dcp.save({"w": torch.ones(2)}, checkpoint_id=tmp_path, no_dist=True)
    metadata = safe_dcp.read_metadata(tmp_path, None)
    metadata.planner_data = _ByName(_MEM_FORMAT_ENCODING, "TORCH_CONTIGUOUS_FORMAT")
    assert safe_dcp.parse_metadata(pickle.dumps(metadata)).planner_data is _MEM_FORMAT_ENCODING.TORCH_CONTIGUOUS_FORMAT
    for owner, name in ((torch.Size, "__class__"), (_MEM_FORMAT_ENCODING, "__class__"), (Path, "home")):
        metadata.planner_data = _ByName(owner, name)
        with pytest.raises(safe_dcp.UnsafeCheckpointError):
            safe_dcp.parse_metadata(pickle.dumps(metadata))
