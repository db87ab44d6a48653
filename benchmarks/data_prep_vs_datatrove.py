"""Data-prep throughput (MB/s of input text) of llamaops against datatrove doing the same work on
the same input in the same run: MinHash near-dedup, the same heuristic filters, tokenization.

    .venv/bin/python benchmarks/data_prep_vs_datatrove.py                    # ~8 MB, 1 and 2 Ray workers
    .venv/bin/python benchmarks/data_prep_vs_datatrove.py --documents 2000 --json

Input: `--documents` synthetic English-like documents (Zipf-distributed pseudo-words, ~400 words
each) in one JSONL file, 15% of them near-duplicates of another (a few words edited).

The same work on both sides:
- filters: share of non-blank lines that repeat (<= 0.3; datatrove GopherRepetitionFilter
  dup_line_frac), words covered by repeated word 5-grams (<= 0.5; its dup_n_grams ((5, 0.5))),
  '#' and '...' per word (<= 0.1; GopherQualityFilter max_symbol_word_ratio); every other rule of
  either side is switched off;
- MinHash: word 5-grams, 16 bands x 8 rows (128 permutations), union-find clusters, the first
  copy of a cluster kept (datatrove: signature, buckets, cluster and filter stages on local disk);
- tokenization with the same tiktoken Llama 3 tokenizer (datatrove's DocumentTokenizer loads a
  Hugging Face tokenizer, slower than tiktoken here: a custom step calls ours, so the comparison
  is of the pipelines, not the tokenizers).
llamaops also normalizes text and removes exact duplicates (cheap, not switched off). Output
counts are printed so the work can be checked to be the same.

The 1 -> 2 Ray worker speed-up (warm: after a first 2-worker run that starts the worker processes,
whose time is printed as the cold start) is measured on llamaops' full default pipeline (cleaning,
PII, all dedup levels, language id, all filters, tokenization), with where the 2-worker run's CPU
goes (platform/data/timings.py): Ray task CPU per worker and per stage (parallel), driver CPU by
phase (serial), Ray's extra CPU against the in-process run, the Amdahl bound for 2 workers and the
idle-core estimate, next to os.cpu_count() and os.getloadavg(). See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MATCHED_SETTINGS = [
    "data.repair_mojibake=false", "data.remove_boilerplate_lines=false", "data.scrub_pii=false",
    "data.dedup_urls=false", "data.max_line_repeats=null", "data.identify_languages=false",
    "data.max_dirty_word_fraction=null", "data.max_token_kl_zscore=null", "data.min_chars=0",
    "data.min_alphanumeric_fraction=0", "data.max_duplicate_line_fraction=0.3",
    "data.max_duplicate_ngram_fraction=0.5", "data.max_symbol_word_ratio=0.1",
    "data.minhash_bands=16", "data.minhash_rows=8", "data.minhash_ngram=5",
]  # fmt: skip


def write_corpus(path: Path, documents: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    syllables = ["ka", "lo", "mi", "ne", "ro", "ta", "su", "vi", "de", "an", "er", "in", "or", "th", "st"]
    vocabulary = np.array(["".join(rng.choice(syllables, rng.integers(1, 4))) for _ in range(30_000)])
    weights = 1.0 / np.arange(1, len(vocabulary) + 1)
    weights /= weights.sum()
    texts: list[str] = []
    for _ in range(documents):
        if texts and rng.random() < 0.15:
            words = texts[int(rng.integers(len(texts)))].split(" ")
            for j in rng.choice(len(words), 3, replace=False):
                words[j] = "edited"
            texts.append(" ".join(words))
            continue
        words = rng.choice(vocabulary, int(rng.integers(200, 600)), p=weights)
        sentences = [" ".join(words[k : k + 12]) + "." for k in range(0, len(words), 12)]
        texts.append("\n".join(" ".join(sentences[k : k + 4]) for k in range(0, len(sentences), 4)))
    with path.open("w") as out:
        for i, text in enumerate(texts):
            out.write(json.dumps({"id": str(i), "text": text}) + "\n")
    return path.stat().st_size


def run_llamaops(corpus: Path, out: Path, settings: list[str], workers: int) -> tuple[float, dict]:
    from llamaops.platform.config import load_preset
    from llamaops.platform.data.prep import prepare_data

    uncapped = ["data.max_documents_per_source=null", "data.max_tokens=null"]  # the tiny preset samples 400
    data = load_preset("tiny", overrides=[f"data.sources=['{corpus.parent.as_uri()}']", *uncapped, *settings]).data
    start = time.perf_counter()
    result = prepare_data(data, out.as_uri(), workers=workers)
    return time.perf_counter() - start, result.report


def run_datatrove(corpus: Path, work: Path) -> tuple[float, dict]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.base import PipelineStep
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.word_tokenizers import WordTokenizer

    from llamaops.platform.tokenizer import load_tokenizer

    class Whitespace(WordTokenizer):
        """Words split on whitespace, as llamaops splits them (datatrove's English default needs spaCy)."""

        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            return text.split("\n")

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            spans, start = [], 0
            for line in text.split("\n"):
                spans.append((start, start + len(line)))
                start += len(line) + 1
            return spans

    words = Whitespace()

    class Tokenize(PipelineStep):
        name = "llama3 tiktoken"

        def run(self, data, rank: int = 0, world_size: int = 1):
            tokenizer = load_tokenizer()
            for doc in data:
                doc.metadata["n_tokens"] = len(tokenizer.encode(doc.text, bos=True, eos=True))
                self.stat_update("tokens", value=doc.metadata["n_tokens"])
                yield doc

    config = MinhashConfig(n_grams=5, num_buckets=16, hashes_per_bucket=8)
    repetition = GopherRepetitionFilter(
        dup_line_frac=0.3, dup_para_frac=None, dup_line_char_frac=None, dup_para_char_frac=None,
        top_n_grams=(), dup_n_grams=((5, 0.5),), language=words,
    )  # fmt: skip
    quality = GopherQualityFilter(
        min_doc_words=None, max_doc_words=None, min_avg_word_length=None, max_avg_word_length=None,
        max_symbol_word_ratio=0.1, max_bullet_lines_ratio=None, max_ellipsis_lines_ratio=None,
        max_non_alpha_words_ratio=None, min_stop_words=None, language=words,
    )  # fmt: skip
    stages = [
        [JsonlReader(str(corpus.parent)), repetition, quality, JsonlWriter(str(work / "filtered")),
         MinhashDedupSignature(output_folder=str(work / "sigs"), config=config, language=words)],
        [MinhashDedupBuckets(input_folder=str(work / "sigs"), output_folder=str(work / "buckets"), config=config)],
        [MinhashDedupCluster(input_folder=str(work / "buckets"), output_folder=str(work / "remove"), config=config)],
        [JsonlReader(str(work / "filtered")), MinhashDedupFilter(input_folder=str(work / "remove")), Tokenize(),
         JsonlWriter(str(work / "out"))],
    ]  # fmt: skip
    start = time.perf_counter()
    stats = []
    for index, pipeline in enumerate(stages):
        executor = LocalPipelineExecutor(
            pipeline=pipeline, tasks=config.num_buckets if index == 1 else 1, workers=1,
            logging_dir=str(work / f"logs{index}"), skip_completed=False,
        )  # fmt: skip
        stats.append(executor.run())
    elapsed = time.perf_counter() - start
    kept = sum(1 for path in (work / "out").rglob("*.jsonl*") for _ in _lines(path))
    tokens = sum(json.loads(line)["metadata"]["n_tokens"] for path in (work / "out").rglob("*.jsonl*") for line in _lines(path))
    return elapsed, {"documents_out": kept, "tokens_out": tokens}


def measure_scaling(corpus: Path, root: Path, repeats: int) -> dict:
    """llamaops' full default pipeline on 1 worker (in-process) and 2 Ray workers, with where the
    2-worker run spends its CPU: Ray tasks per worker (parallel) and the driver (serial)."""
    from llamaops.platform.data.timings import collecting
    from llamaops.platform.train.ray_runner import ensure_ray

    started = time.perf_counter()
    ensure_ray(workers=2)
    ray_init = time.perf_counter() - started
    # The first 2-worker run also starts the Ray worker processes and imports in them (a fixed cost
    # a long job pays once); the warm runs after it measure the pipeline itself.
    cold, _ = run_llamaops(corpus, root / "cold", [], workers=2)
    runs: dict[int, list] = {1: [], 2: []}
    for repeat in range(repeats):
        for workers in (1, 2):
            with collecting() as timings:
                cpu = time.process_time()
                seconds, _ = run_llamaops(corpus, root / f"w{workers}-{repeat}", [], workers=workers)
                runs[workers].append((seconds, time.process_time() - cpu, timings.summary()))
    (one, one_cpu, _), (two, _, where) = min(runs[1], key=lambda run: run[0]), min(runs[2], key=lambda run: run[0])
    serial, parallel = where["driver_cpu_s"], where["task_cpu_s_sum"]
    fraction = where["serial_fraction"]
    return {
        "seconds_1_worker": round(one, 2), "cpu_s_1_worker": round(one_cpu, 2),
        "seconds_2_ray_workers": round(two, 2), "seconds_2_ray_workers_cold": round(cold, 2),
        "ray_init_s": round(ray_init, 2), "speedup_1_to_2": round(one / two, 2),
        "seconds_all_runs": {workers: [round(run[0], 2) for run in found] for workers, found in runs.items()},
        "two_workers": {key: (round(value, 3) if isinstance(value, float) else value) for key, value in where.items()
                        if not key.endswith("by_phase") and not key.endswith("by_kind")},
        "driver_cpu_s_by_phase": {key: round(value, 3) for key, value in where["driver_cpu_s_by_phase"].items()},
        "task_cpu_s_by_kind": {key: round(value, 3) for key, value in where["task_cpu_s_by_kind"].items()},
        # Amdahl with the 2-worker run's own split: serial s, parallel 1 - s spread over 2 workers.
        "amdahl_bound_2_workers": round(1 / (fraction + (1 - fraction) / 2), 2),
        # Against the in-process run on 2 idle cores: the driver's serial CPU plus each stage's tasks
        # balanced over 2 workers (counts Ray's extra CPU and uneven tasks; not Ray's scheduling latency).
        "idle_core_estimate_s": round(serial + where["task_cpu_s_balanced_2_workers"], 2),
        "idle_core_speedup_vs_in_process": round(one_cpu / (serial + where["task_cpu_s_balanced_2_workers"]), 2),
        "ray_cpu_overhead_s": round(serial + parallel - one_cpu, 2),
        "cpu_count": os.cpu_count(), "load_average": [round(value, 1) for value in os.getloadavg()],
    }  # fmt: skip


def print_scaling(f: dict) -> None:
    two = f["two_workers"]
    print(f"llamaops full pipeline: 1 worker {f['seconds_1_worker']:.2f} s, 2 Ray workers {f['seconds_2_ray_workers']:.2f} s "
          f"(all runs: {f['seconds_all_runs']}); cold 2-worker run {f['seconds_2_ray_workers_cold']:.2f} s, "
          f"ray.init {f['ray_init_s']:.2f} s")
    print(f"  where the 2-worker run's CPU goes: {two['tasks']} Ray tasks on {two['worker_processes']} worker processes, "
          f"task CPU sum {two['task_cpu_s_sum']:.2f} s ({', '.join(f'{k} {v:.2f}' for k, v in f['task_cpu_s_by_kind'].items())}), "
          f"max over workers {two['task_cpu_s_max_worker']:.2f} s as this host scheduled them, "
          f"{two['task_cpu_s_balanced_2_workers']:.2f} s with each of the {two['stages']} stages balanced over 2; "
          f"driver (serial) {two['driver_cpu_s']:.2f} s")
    print("  driver CPU by phase: " + ", ".join(f"{k} {v:.2f}" for k, v in f["driver_cpu_s_by_phase"].items() if v >= 0.01))
    print(f"  in-process 1 worker: {f['cpu_s_1_worker']:.2f} CPU s; Ray's extra CPU for the same work "
          f"{f['ray_cpu_overhead_s']:.2f} s")
    print(f"  serial fraction {two['serial_fraction']:.2f} -> Amdahl bound for 2 workers {f['amdahl_bound_2_workers']:.2f}x; "
          f"on 2 idle cores: serial + balanced stages = {f['idle_core_estimate_s']:.2f} s, "
          f"{f['idle_core_speedup_vs_in_process']:.2f}x the in-process run's {f['cpu_s_1_worker']:.2f} CPU s")
    print(f"  measured speed-up {f['speedup_1_to_2']:.2f}x with os.cpu_count()={f['cpu_count']}, "
          f"os.getloadavg()={tuple(f['load_average'])}")  # fmt: skip


def _lines(path: Path):
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        yield from handle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=4000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-ray", action="store_true", help="skip the 1 -> 2 Ray worker measurement")
    parser.add_argument("--scaling-only", action="store_true", help="skip the datatrove comparison")
    parser.add_argument("--repeats", type=int, default=2, help="warm 1- and 2-worker runs each (the fastest counts)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    root = Path(tempfile.mkdtemp(prefix="llo-bench-"))
    try:
        corpus = root / "in" / "corpus.jsonl"
        corpus.parent.mkdir()
        size_mb = write_corpus(corpus, args.documents) / 1e6
        results: dict = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                         "documents": args.documents, "input_mb": round(size_mb, 2), "cpus": os.cpu_count()}  # fmt: skip
        if not args.scaling_only:
            dt_seconds, dt_out = run_datatrove(corpus, root / "datatrove")
            llo_seconds, llo_report = run_llamaops(corpus, root / "llamaops", MATCHED_SETTINGS, workers=1)
            results["datatrove"] = {"seconds": round(dt_seconds, 2), "mb_per_s": round(size_mb / dt_seconds, 3), **dt_out}
            results["llamaops"] = {
                "seconds": round(llo_seconds, 2), "mb_per_s": round(size_mb / llo_seconds, 3),
                "documents_out": llo_report["documents_out"], "tokens_out": llo_report["tokens_out"],
            }  # fmt: skip
            results["ratio_llamaops_over_datatrove"] = round(dt_seconds / llo_seconds, 2)
        if not args.no_ray:
            results["llamaops_full_pipeline"] = measure_scaling(corpus, root, args.repeats)
        if args.json:
            print(json.dumps(results, indent=2))
        else:
            print(f"input: {args.documents} documents, {size_mb:.1f} MB, {results['cpus']} CPUs")
            for name in ("datatrove", "llamaops"):
                if name in results:
                    r = results[name]
                    print(f"{name:<10} {r['seconds']:>7.2f} s  {r['mb_per_s']:.3f} MB/s  "
                          f"{r['documents_out']} documents, {r['tokens_out']} tokens out")  # fmt: skip
            if "ratio_llamaops_over_datatrove" in results:
                print(f"ratio (llamaops / datatrove throughput): {results['ratio_llamaops_over_datatrove']:.2f}x")
            if "llamaops_full_pipeline" in results:
                print_scaling(results["llamaops_full_pipeline"])
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
