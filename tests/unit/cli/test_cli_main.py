import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import llamaops
from llamaops.cli.main import app

LLAMAOPS = Path(sys.executable).parent / "llamaops"
runner = CliRunner()


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(LLAMAOPS), *args], capture_output=True, text=True, timeout=120)


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == llamaops.__version__


def test_installed_console_script_prints_version_and_presets():
    version = run("--version")
    assert (version.returncode, version.stdout.strip(), version.stderr) == (0, llamaops.__version__, "")
    listing = run("presets", "list")
    assert listing.returncode == 0 and "full-405b" in listing.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["presets", "show", "nope"], "error: unknown preset 'nope'; choose one of: tiny, 8b, 70b, 405b, full-405b"),
        (["presets", "show", "tiny", "--set", "pretrain.lrr=1"], "error: unknown config field 'pretrain.lrr'"),
        (["presets", "show", "tiny", "--set", "peak_lr"], "error: override 'peak_lr' must look like key=value"),
        (["presets", "show", "tiny", "--config", "/no/such.yaml"], "error: config file /no/such.yaml does not exist"),
        (["model", "info", "nope", "--json"], "error: unknown preset 'nope'"),
        (["model", "info", "tiny", "--set", "model.n_heads=3"], "error: model: dim 128 is not divisible by n_heads 3"),
        (["tokenizer", "decode", "999999999"], "error: token id 999999999 is not in the vocabulary [0, 128256)"),
        (["presets", "show", "tiny", "--config", "BINARY"], "error: config file BINARY is not text"),
        (["presets", "show", "tiny", "--set", "pretrain.total_tokens=" + "[" * 5000 + "]" * 5000],
         "error: override 'pretrain.total_tokens' nests its value too deeply"),
    ],
)
def test_user_errors_exit_2_with_one_line_on_stderr(args, message, tmp_path):
    binary = tmp_path / "config.yaml"
    binary.write_bytes(bytes(range(256)))
    args, message = [str(binary) if a == "BINARY" else a for a in args], message.replace("BINARY", str(binary))
    result = run(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_missing_files_are_user_errors_too(monkeypatch):
    def missing(*_args, **_kwargs):
        raise FileNotFoundError(2, "No such file or directory", "/data/shard-0")

    monkeypatch.setattr("llamaops.platform.config.load_preset", missing)
    result = runner.invoke(app, ["presets", "show", "tiny"])
    assert result.exit_code == 2
    assert result.stderr == "error: no such file or directory: /data/shard-0\n"


@pytest.mark.parametrize("bug", [RuntimeError("boom"), ValueError("a bare ValueError is a bug, not bad input")])
def test_unexpected_errors_keep_their_traceback(monkeypatch, bug):
    def broken(*_args, **_kwargs):
        raise bug

    monkeypatch.setattr("llamaops.platform.config.load_preset", broken)
    result = runner.invoke(app, ["presets", "show", "tiny"])
    assert result.exit_code == 1
    assert result.exception is bug


def test_shell_completion_is_offered():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout


def test_fast_commands_do_not_import_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from llamaops.cli.main import app\n"
        "for args in (['--version'], ['presets', 'list'], ['presets', 'show', '405b', '--json']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_module_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "llamaops.cli.main", "--version"], capture_output=True, text=True, timeout=120
    )
    assert (result.returncode, result.stdout.strip()) == (0, llamaops.__version__)


def test_shell_completion_completes_preset_names():
    env = {**os.environ, "_LLAMAOPS_COMPLETE": "complete_bash", "COMP_WORDS": "llamaops model info 4", "COMP_CWORD": "3"}
    result = subprocess.run([str(LLAMAOPS)], capture_output=True, text=True, timeout=120, env=env)
    assert result.stdout.split() == ["405b"]
