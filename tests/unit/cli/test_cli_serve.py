"""`llamaops serve`'s auth settings: a key that is not there fails closed, an open bind warns."""
import pytest
import torch
from typer.testing import CliRunner

from llamaops.cli.main import app
from llamaops.platform.serve import server

runner = CliRunner()


@pytest.fixture
def started(monkeypatch):
    """What run_server was asked to do (the model is never loaded, no socket is bound). `serve`
    turns autograd off for its whole process; here that process is the test session's, so the
    fixture turns it back on."""
    calls = []
    monkeypatch.setattr(server, "run_server", lambda load, settings, host, port: calls.append((settings, host)))
    monkeypatch.delenv("LLAMAOPS_API_KEY", raising=False)
    yield calls
    torch.set_grad_enabled(True)


@pytest.mark.parametrize("content", ["", "  \n\t\n"])
def test_a_key_file_without_a_key_is_refused_instead_of_turning_auth_off(tmp_path, started, content):
    key_file = tmp_path / "key"
    key_file.write_text(content)
    result = runner.invoke(app, ["serve", str(tmp_path), "--api-key-file", str(key_file)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: --api-key-file {key_file} holds no key") and result.stderr.count("\n") == 1
    assert started == []


def test_a_whitespace_key_in_the_environment_is_refused(tmp_path, started, monkeypatch):
    monkeypatch.setenv("LLAMAOPS_API_KEY", "   ")
    result = runner.invoke(app, ["serve", str(tmp_path)])
    assert result.exit_code == 2 and result.stderr.startswith("error: LLAMAOPS_API_KEY holds no key")
    assert started == []


def test_the_key_is_read_stripped_from_the_file(tmp_path, started):
    key_file = tmp_path / "key"
    key_file.write_text("s3cret\n")
    result = runner.invoke(app, ["serve", str(tmp_path), "--api-key-file", str(key_file)])
    assert result.exit_code == 0, result.output
    assert started[0][0].api_key == "s3cret" and "s3cret" not in result.output


@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), ("192.0.2.7", True), ("127.0.0.1", False),
                                              ("::1", False), ("localhost", False)])
def test_binding_beyond_loopback_without_a_key_warns(tmp_path, started, host, warned):
    result = runner.invoke(app, ["serve", str(tmp_path), "--host", host])
    assert result.exit_code == 0, result.output
    assert ("no API key" in result.output) == warned
    assert started[0][0].api_key is None


def test_a_quantization_it_does_not_serve_is_refused(started):
    result = runner.invoke(app, ["serve", "unused-model", "--quantization", "int4"], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and not started
    assert "'int4' is not a quantization llamaops serves: use fp8" in " ".join(result.output.split())
