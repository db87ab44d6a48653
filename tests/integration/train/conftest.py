"""One local Ray for the whole session (starting it costs ~5 s and >1 GB), shut down at the end."""
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def local_ray() -> Iterator[None]:
    import ray

    from llamaops.platform.train.ray_runner import ensure_ray

    ensure_ray(workers=2)
    yield
    ray.shutdown()
