"""An input model on real S3 (SeaweedFS) is read in part: a rank downloads the blocks its shards
lie in, never the whole model, and trains exactly as from the same model on local disk, with
ranks that share no filesystem."""
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.model import Transformer
from llamaops.platform.model.checkpoint import model_in_part, save_model, weight_slices
from llamaops.platform.store import manifest, staged_output

from .loop_runs import assert_same_training, loop_job, run_loop

BLOCK = 256  # small manifest blocks: a micro model's tensors (128-byte rows) span many


def _publish(model: Transformer, uris: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifest, "BLOCK_BYTES", BLOCK)
    for uri in uris:
        with staged_output(uri) as directory:
            save_model(model, directory)


def _model(tmp_path: Path) -> Transformer:
    model = Transformer(loop_job(tmp_path, "shape", ParallelLayout()).model)
    model.init_weights(7)
    return model


def test_a_reader_of_half_the_rows_downloads_about_half_the_weights(s3_bucket: str, tmp_path: Path, monkeypatch):
    model = _model(tmp_path)
    _publish(model, [f"{s3_bucket}/model"], monkeypatch)
    whole = model.state_dict()
    total = sum(t.numel() * t.element_size() for t in whole.values())
    with model_in_part(f"{s3_bucket}/model") as (directory, reader):
        assert reader.downloaded_bytes == 0  # the config and index are read, no weights
        with weight_slices(directory, reader) as (_, slices):
            for name, tensor in whole.items():
                half = slices[name][: max(1, tensor.shape[0] // 2)]
                assert half.equal(tensor[: half.shape[0]])
        assert 0.45 * total < reader.downloaded_bytes < 0.6 * total
    assert not directory.exists()  # the partial copy is private and removed


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="a private filesystem per rank needs root and unshare(1) (one mount namespace per rank)")
def test_ranks_that_share_no_filesystem_train_from_an_s3_model_as_from_a_local_one(
    s3_bucket: str, tmp_path: Path, monkeypatch
):
    local, remote = (tmp_path / "model").as_uri(), f"{s3_bucket}/model"
    _publish(_model(tmp_path), [local, remote], monkeypatch)
    layout = ParallelLayout(dp=2)
    want = run_loop(tmp_path, loop_job(tmp_path, "local", layout, init_model_uri=local), 2, "local")
    job = replace(loop_job(tmp_path, "unused", layout, init_model_uri=remote), checkpoint_root=f"{s3_bucket}/ckpt")
    got = run_loop(tmp_path, job, 2, "remote", own_filesystems=True)
    assert_same_training(got, want, rel=0, abs=0)
