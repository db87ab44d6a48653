from pathlib import Path

import pytest

from .micro import write_shards


@pytest.fixture
def shards_uri(tmp_path: Path) -> str:
    return write_shards((tmp_path / "shards").as_uri(), train_tokens=20_000)
