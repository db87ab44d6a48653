import json

import pytest
from typer.testing import CliRunner

from llamaops.cli.main import app
from llamaops.platform.config.model import ModelConfig
from llamaops.platform.model import Transformer
from llamaops.platform.model.checkpoint import save_model
from llamaops.platform.tokenizer import load_tokenizer

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    cfg = ModelConfig(dim=16, n_layers=1, n_heads=2, n_kv_heads=1, ffn_hidden_dim=32,
                      vocab_size=load_tokenizer().vocab_size, max_seq_len=512, rope_scaling=None)
    model = Transformer(cfg)
    model.init_weights(seed=0)
    return save_model(model, tmp_path_factory.mktemp("model") / "m")


@pytest.fixture
def task_file(tmp_path):
    records = [{"question": f"q{i}", "choices": ["yes", "no"], "answer": i % 2} for i in range(4)]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "yesno.yaml").write_text("data_file: items.jsonl\n")
    return tmp_path / "yesno.yaml"


def test_tasks_lists_the_builtin_tasks():
    result = runner.invoke(app, ["eval", "tasks", "--json"])
    assert result.exit_code == 0
    kinds = {t["name"]: t["kind"] for t in json.loads(result.stdout)}
    assert kinds["mmlu_dev_de"] == "multiple_choice" and "mmlu_dev_th" in kinds
    assert kinds["gsm8k_cot"] == kinds["arithmetic"] == "generation"


def test_run_reports_json_files_and_gates(model_dir, task_file, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["eval", "run", str(model_dir), "--tasks", str(task_file), "--json",
                                 "--output", str(out), "--gate", "yesno.acc>=0", "--items"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    task = report["tasks"]["yesno"]
    assert task["items"] == 4 and 0 <= task["acc"] <= 1 and task["chance"] == 0.5 and "acc_stderr" in task
    assert report["gate"]["passed"] and len(report["items"]["yesno"]) == 4
    assert json.loads((out / "report.json").read_text())["tasks"] == report["tasks"]
    assert "| yesno | 4 |" in (out / "report.md").read_text()

    failing = runner.invoke(app, ["eval", "run", str(model_dir), "--tasks", str(task_file), "--gate", "yesno.acc>=1.01"])
    assert failing.exit_code == 1 and "Gate: FAILED" in failing.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tasks", "nope"], "error: unknown task 'nope': not a built-in task nor a file; see `llamaops eval tasks`"),
        (["--tasks", "BAD"], "error: task file BAD: limit: Input should be greater than 0"),
        (["--tasks", "BADGEN"], "error: task file BADGEN: extractor: Input should be 'regex', 'first_number' or 'last_number'"),
        (["--tasks", "arithmetic", "--gate", "arithmetic.acc>=0.1"],
         "error: gate metric 'arithmetic.acc' was not measured; choose from ['arithmetic.exact_match'"),
        (["--tasks", "mmlu_dev_de", "--gate", "acc=1"], "error: gate 'acc=1' is not METRIC>=VALUE or METRIC<=VALUE"),
        (["--tasks", "mmlu_dev_de", "--gate", "mmlu_dev_de.f1>=0.1"], "error: gate metric 'mmlu_dev_de.f1' was not measured; choose from ['mmlu_dev_de.acc'"),
    ],
)
def test_bad_input_fails_in_one_line(model_dir, tmp_path, args, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text("mmlu_dev: [de]\nlimit: 0\n")
    bad_generation = tmp_path / "badgen.yaml"
    bad_generation.write_text("kind: generation\ngsm8k_cot: true\nextractor: any_number\n")
    args = [{"BAD": str(bad), "BADGEN": str(bad_generation)}.get(a, a) for a in args]
    message = message.replace("BADGEN", str(bad_generation)).replace("BAD", str(bad))
    result = runner.invoke(app, ["eval", "run", str(model_dir), *args])
    assert result.exit_code == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1


def test_missing_model_fails_in_one_line(tmp_path):
    result = runner.invoke(app, ["eval", "run", str(tmp_path / "gone"), "--tasks", "mmlu_dev_de"])
    assert result.exit_code == 2
    assert result.stderr == (f"error: model {tmp_path / 'gone'}: does not exist; pass models:/NAME@ALIAS, "
                             "models:/NAME/VERSION, a registered NAME, an s3:// or file:// artifact, or a model directory "
                             "(native or Hugging Face)\n")


def test_code_and_needle_run_on_a_model(model_dir):
    code = runner.invoke(app, ["eval", "code", str(model_dir), "--problems", "1", "--samples", "2", "--k", "1,2",
                               "--max-new-tokens", "4", "--json"])
    assert code.exit_code == 0, code.output
    report = json.loads(code.stdout)
    assert report["problems"] == 1 and sum(report["outcomes"].values()) == 2 and 0 <= report["metrics"]["pass@2"] <= 1

    needle = runner.invoke(app, ["eval", "needle", str(model_dir), "--lengths", "128", "--depths", "0.5", "--json"])
    assert needle.exit_code == 0, needle.output
    assert set(json.loads(needle.stdout)["metrics"]) == {"needle_accuracy", "needle_accuracy@128"}


def test_code_and_needle_bad_input(model_dir):
    bad_k = runner.invoke(app, ["eval", "code", str(model_dir), "--samples", "1", "--k", "5"])
    assert bad_k.exit_code == 2 and bad_k.stderr == "error: pass@k needs 1 <= k <= --samples (1); got k=[5]\n"
    too_long = runner.invoke(app, ["eval", "needle", str(model_dir), "--lengths", "4096"])
    assert too_long.exit_code == 2 and "exceeds the model's max_seq_len 512" in too_long.stderr
