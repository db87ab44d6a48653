"""Where the tracking store is and how a bad one is reported (no MLflow needed)."""
import socket
import time
from pathlib import Path

import pytest

from llamaops.platform.tracking import TrackingError, check_tracking, resolve_tracking_uri


def test_default_is_sqlite_under_llamaops_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMAOPS_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert resolve_tracking_uri() == "http://mlflow:5000"
    assert resolve_tracking_uri("sqlite:////x/y.db") == "sqlite:////x/y.db"


def test_unreachable_server_is_one_quick_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(TrackingError) as error:
        check_tracking(f"http://user:hunter2@127.0.0.1:{port}")
    assert time.monotonic() - started < 4
    message = str(error.value)
    assert message.startswith(f"MLflow tracking server http://127.0.0.1:{port} does not answer")
    assert message.endswith("start it or set MLFLOW_TRACKING_URI to a reachable server")
    assert "hunter2" not in message and "\n" not in message


@pytest.mark.parametrize(
    "uri, message",
    [
        ("ftp://host/db", "unsupported tracking URI 'ftp://host/db'"),
        ("sqlite:///no/such/folder/mlflow.db", "tracking database folder"),
        ("sqlite://relative.db", "must look like sqlite:///path/to/mlflow.db"),
    ],
)
def test_bad_uris_are_refused(uri: str, message: str) -> None:
    with pytest.raises(TrackingError, match=message):
        check_tracking(uri)
