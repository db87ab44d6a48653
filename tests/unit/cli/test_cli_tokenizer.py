import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from llamaops.cli.main import app

runner = CliRunner()


def test_encode_prints_llama_3_ids():
    assert runner.invoke(app, ["tokenizer", "encode", "Hello world!"]).stdout.split() == ["9906", "1917", "0"]
    with_bos = runner.invoke(app, ["tokenizer", "encode", "Hello world!", "--bos", "--json"])
    assert with_bos.exit_code == 0
    assert json.loads(with_bos.stdout) == [128000, 9906, 1917, 0]


def test_decode_inverts_encode():
    result = runner.invoke(app, ["tokenizer", "decode", "9906", "1917", "0"])
    assert (result.exit_code, result.stdout) == (0, "Hello world!\n")


def test_encode_through_the_installed_command():
    llamaops = Path(sys.executable).parent / "llamaops"
    result = subprocess.run([str(llamaops), "tokenizer", "encode", "Hello world!"], capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout) == (0, "9906 1917 0\n")
