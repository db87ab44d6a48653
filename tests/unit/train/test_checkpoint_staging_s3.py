"""The s3:// staging in one process, its S3 calls stood in for by a local "bucket" directory: rank
0's manifest travels with its own uploaded files, written before the completion marker, and names
every file uploaded."""
import json
import shutil
from pathlib import Path

import torch

from llamaops.platform.model.transformer import Transformer
from llamaops.platform.store import s3
from llamaops.platform.train.checkpointing import Progress, check_checkpoint, save_checkpoint

from .parallel_worker import MICRO


class _Bucket:
    """Uploads copied into `root/<prefix>`; the marker written last, as publish_parts does."""

    def __init__(self, root: Path):
        self.root, self.events = root, []

    def part_upload(self, uri: str):
        bucket = self

        class Part:
            def __init__(self, uri: str):
                self.directory = bucket.root / "staging"
                self.directory.mkdir(parents=True, exist_ok=True)
                self.target = bucket.root / s3.S3Location.parse(uri).prefix

            def upload(self) -> dict[str, int]:
                files = {p.relative_to(self.directory).as_posix(): p.stat().st_size
                         for p in sorted(self.directory.rglob("*")) if p.is_file()}
                shutil.copytree(self.directory, self.target, dirs_exist_ok=True)
                shutil.rmtree(self.directory)
                bucket.events.append(("upload", sorted(files)))
                return files

        return Part(uri)

    def publish_parts(self, uri: str, parts: list[dict[str, int]]) -> None:
        target = self.root / s3.S3Location.parse(uri).prefix
        files = {name: size for part in parts for name, size in part.items()}
        (target / "_COMPLETE").write_text(json.dumps({"files": files}))
        self.events.append(("marker", sorted(files)))


def test_on_s3_rank_zero_uploads_the_manifest_of_every_file_before_the_marker(tmp_path, monkeypatch):
    bucket = _Bucket(tmp_path / "bucket")
    monkeypatch.setattr(s3, "begin_parts", lambda uri: None)
    monkeypatch.setattr(s3, "PartUpload", bucket.part_upload)
    monkeypatch.setattr(s3, "publish_parts", bucket.publish_parts)
    model = Transformer(MICRO)
    model.init_weights(seed=0)
    optimizer = torch.optim.AdamW(model.parameters())
    save_checkpoint("s3://bucket/run-checkpoints", [model], [optimizer], Progress(step=1, cursor=10))
    (upload, uploaded), (marker, published) = bucket.events
    assert (upload, marker) == ("upload", "marker") and uploaded == published
    assert "manifest.json" in uploaded
    step = tmp_path / "bucket" / "run-checkpoints" / "step_000001"
    listed = json.loads((step / "manifest.json").read_text())["files"]
    assert listed.keys() == set(uploaded) - {"manifest.json"}
    check_checkpoint(step)
