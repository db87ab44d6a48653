"""llamaops' multiple-choice scoring agrees with lm-evaluation-harness on the same model and data.

A small model with the real Llama 3 vocabulary is saved natively and exported to Hugging Face
format (fp32, with tokenizer.json); lm-eval 0.4.13 runs on the export in a subprocess, offline,
with a local YAML task over a JSON-lines file; llamaops runs its own task file over the same file.
Accuracy must be equal and every per-choice log-likelihood within 1e-4.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("lm_eval", reason="lm-eval is in the test extra: scripts/install.sh --test")
pytest.importorskip("accelerate", reason="lm-eval's HF backend needs accelerate: scripts/install.sh --test")

from llamaops.platform.config.model import ModelConfig  # noqa: E402
from llamaops.platform.eval.harness import evaluate_task, load_eval_model  # noqa: E402
from llamaops.platform.eval.tasks import load_task, task_records  # noqa: E402
from llamaops.platform.model import Transformer  # noqa: E402
from llamaops.platform.model.checkpoint import save_model  # noqa: E402
from llamaops.platform.model.hf import export_hf  # noqa: E402
from llamaops.platform.tokenizer import load_tokenizer  # noqa: E402

ITEMS = 24
MAX_CHOICE_TOKENS = 12
LM_EVAL_TASK = """\
task: llamaops_agreement
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: choices
doc_to_target: answer
target_delimiter: " "
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""
LLAMAOPS_TASK = """\
kind: multiple_choice
data_file: items.jsonl
prompt: "Question: {question}\\nAnswer:"
"""


def _sharp_model() -> Transformer:
    """Random weights, scaled so choices get clearly different log-likelihoods (no near-ties)."""
    cfg = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden_dim=192,
                      vocab_size=load_tokenizer().vocab_size, max_seq_len=512)
    torch.manual_seed(0)
    model = Transformer(cfg)
    model.init_weights(seed=0)
    with torch.no_grad():
        for block in model.layers.values():
            block.attention.wq.weight.mul_(4)
            block.attention.wk.weight.mul_(4)
            block.attention.wo.weight.mul_(10)
            block.feed_forward.w2.weight.mul_(5)
        model.output.weight.mul_(3)
    return model.eval()


def _short_choice_records(count: int) -> list[dict]:
    """MMLU dev items whose choices are at most MAX_CHOICE_TOKENS long. An fp32 sum of log-probs
    carries a rounding error proportional to its magnitude (about 1e-7 relative): two correct
    implementations of a 100-token choice's log-likelihood (~ -1000) already differ by ~1e-4."""
    tokenizer = load_tokenizer()
    records = [r for r in task_records(load_task("mmlu_dev_de"))
               if max(len(tokenizer.encode(f" {c}")) for c in r["choices"]) <= MAX_CHOICE_TOKENS]
    assert len(records) >= count
    return records[:count]


def _lm_eval_samples(hf_dir: Path, include: Path, out: Path, tmp_path: Path) -> list[dict]:
    env = os.environ | {
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf-home"), "HF_DATASETS_CACHE": str(tmp_path / "hf-datasets"),
        "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "2",
    }
    command = [
        sys.executable, "-m", "lm_eval", "--model", "hf",
        "--model_args", f"pretrained={hf_dir},dtype=float32", "--tasks", "llamaops_agreement",
        "--include_path", str(include), "--device", "cpu", "--batch_size", "8",
        "--log_samples", "--output_path", str(out),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    files = sorted(out.rglob("samples_llamaops_agreement_*.jsonl"))
    assert files, f"lm-eval wrote no samples under {out}"
    return sorted((json.loads(line) for line in files[-1].read_text().splitlines()), key=lambda s: s["doc_id"])


@pytest.mark.slow
def test_multiple_choice_matches_lm_eval(tmp_path):
    torch.set_num_threads(2)
    native, hf_dir = tmp_path / "native", tmp_path / "hf"
    save_model(_sharp_model(), native)
    export_hf(native, hf_dir, dtype=torch.float32)

    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    records = _short_choice_records(ITEMS)
    data = task_dir / "items.jsonl"
    data.write_text("".join(json.dumps({k: r[k] for k in ("question", "choices", "answer")}, ensure_ascii=False) + "\n"
                            for r in records), encoding="utf-8")
    (task_dir / "llamaops_agreement.yaml").write_text(LM_EVAL_TASK.format(data=data))
    (task_dir / "llamaops.task").write_text(LLAMAOPS_TASK)  # not *.yaml: lm-eval's include_path would read it

    samples = _lm_eval_samples(hf_dir, task_dir, tmp_path / "lm-eval-out", tmp_path)
    ours = evaluate_task(load_eval_model(hf_dir), load_tokenizer(), load_task(str(task_dir / "llamaops.task")))

    assert len(samples) == len(ours.items) == ITEMS
    theirs_ll = [[float(r[0]) for r in s["filtered_resps"]] for s in samples]
    worst = max(abs(a - b) for item, lls in zip(ours.items, theirs_ll) for a, b in zip(item.log_likelihoods, lls))
    print(f"agreement: {len(samples)} items, acc {ours.metrics['acc']:.4f}, max |dLL| {worst:.2e}")
    assert worst < 1e-4, f"largest per-choice log-likelihood difference {worst:.2e}"
    their_acc = sum(s["acc"] for s in samples) / len(samples)
    assert ours.metrics["acc"] == their_acc
    assert [i.predicted == i.answer for i in ours.items] == [bool(s["acc"]) for s in samples]
    # Not a degenerate agreement: the items' choices really differ in likelihood.
    assert min(max(lls) - sorted(lls)[-2] for lls in theirs_ll) > 1e-3
