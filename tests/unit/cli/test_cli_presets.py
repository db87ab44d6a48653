import json

import yaml
from typer.testing import CliRunner

from llamaops.cli.main import app
from llamaops.platform.config import PRESETS, load_preset

runner = CliRunner()


def test_list_is_an_aligned_table_of_every_preset():
    result = runner.invoke(app, ["presets", "list"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["NAME", "WORLD"]
    assert [line.split()[0] for line in lines[1:]] == list(PRESETS)
    assert lines[-1].split()[:2] == ["full-405b", "16384"]
    description_column = {line.index(load_preset(line.split()[0]).description) for line in lines[1:]}
    assert len(description_column) == 1


def test_show_prints_the_validated_preset_as_yaml_or_json():
    as_yaml = runner.invoke(app, ["presets", "show", "full-405b"])
    as_json = runner.invoke(app, ["presets", "show", "full-405b", "--json"])
    assert as_yaml.exit_code == as_json.exit_code == 0
    expected = load_preset("full-405b").model_dump(mode="json")
    assert yaml.safe_load(as_yaml.stdout) == expected == json.loads(as_json.stdout)
    assert json.loads(as_json.stdout)["long_context"]["layout"] == {
        "tp": 8, "cp": 16, "pp": 16, "dp": 8, "activation_checkpointing": "selective",
        "param_dtype": "bf16", "compile": False,
        "pp_schedule": "1f1b", "pp_stages_per_rank": 1, "pp_microbatches": 16, "accumulation_steps": 1,
    }


def test_show_applies_config_file_then_sets(tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("pretrain:\n  optimizer:\n    peak_lr: 0.01\n    warmup_steps: 7\n")
    result = runner.invoke(
        app, ["presets", "show", "tiny", "--json", "-c", str(config), "--set", "pretrain.optimizer.warmup_steps=3",
              "-s", "model.n_layers=2"]
    )
    assert result.exit_code == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["pretrain"]["optimizer"]["peak_lr"] == 0.01
    assert values["pretrain"]["optimizer"]["warmup_steps"] == 3
    assert values["model"]["n_layers"] == 2
