"""Serving: llamaops' engine and server against Hugging Face transformers' `generate` (with its KV
cache), same weights, same prompts, greedy, in the same run on this machine's CPU.

    .venv/bin/python benchmarks/serve_vs_transformers.py            # batch 1 + 8 and 32 HTTP clients
    .venv/bin/python benchmarks/serve_vs_transformers.py --json
    .venv/bin/python benchmarks/serve_vs_transformers.py --device cuda   # on a GPU machine

On a machine without CUDA, `--device cuda` prints one line saying it skipped and exits 0.

1. In process, batch 1: time to first token (prefill + one token) and decode tokens/s of
   `Engine.generate` vs `LlamaForCausalLM.generate(do_sample=False)`, alternating, medians. The
   greedy tokens of both must be identical (checked; the run aborts otherwise). The engine runs
   twice: as served (greedy through the int8-screened exact argmax, see platform/serve/head.py)
   and with the full output projection (`screen_greedy=False`), so the screen's share is visible;
   a third time with paged KV blocks of 16 tokens (`kv_block_size=16`), to show what paging costs.
2. Over HTTP, C concurrent clients (8 and 32), each sending its own prompt to /v1/completions
   (token-id prompts, max_tokens fixed, greedy): aggregate completion tokens/s, p50/p99 request
   latency and the server's peak RSS. llamaops: `llamaops serve` (continuous batching). Peer: the
   same HF model behind an equally small HTTP front (stdlib ThreadingHTTPServer, the same JSON)
   that runs `generate` for one request at a time: what `generate` gives a server without a
   batching scheduler around it.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

from llamaops.platform.config.model import ModelConfig  # noqa: E402
from llamaops.platform.model import Transformer  # noqa: E402
from llamaops.platform.model.checkpoint import save_model  # noqa: E402
from llamaops.platform.model.hf import save_hf  # noqa: E402

CONFIG = ModelConfig(dim=256, n_layers=4, n_heads=8, n_kv_heads=2, ffn_hidden_dim=768, max_seq_len=1024)


def build(workdir: Path) -> tuple[Path, Path]:
    model = Transformer(CONFIG)
    model.init_weights(seed=0)
    native = save_model(model, workdir / "native")
    hf = save_hf(model, workdir / "hf", dtype=torch.float32)
    return native, hf


def prompts(count: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1000, 100_000, (int(torch.randint(16, 65, (1,), generator=g)),), generator=g).tolist()
            for _ in range(count)]


def load_hf_model(hf_dir: Path, device: str = "cpu"):
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32, attn_implementation="sdpa")
    return model.to(device).eval()


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def hf_generate(model, prompt: list[int], new_tokens: int) -> list[int]:
    ids = torch.tensor([prompt], device=model.device)
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0)
    return out[0, len(prompt):].tolist()


BATCH_ONE = ("llamaops", "llamaops-full-projection", "llamaops-paged-kv", "transformers")


def batch_one(native: Path, hf_dir: Path, new_tokens: int, repeats: int, device: str = "cpu") -> dict:
    from llamaops.platform.model.checkpoint import load_model
    from llamaops.platform.serve import Engine, SamplingParams
    from llamaops.platform.tokenizer import load_tokenizer

    model = load_model(native).to(device)
    engines = {"llamaops": Engine(model, load_tokenizer(), max_batch=1),
               "llamaops-full-projection": Engine(model, load_tokenizer(), max_batch=1, screen_greedy=False),
               "llamaops-paged-kv": Engine(model, load_tokenizer(), max_batch=1, kv_block_size=16)}
    hf = load_hf_model(hf_dir, device)
    prompt = prompts(1, seed=1)[0]

    def run(name: str, n: int) -> list[int]:
        if name == "transformers":
            return hf_generate(hf, prompt, n)
        return engines[name].generate([prompt], SamplingParams(max_tokens=n, temperature=0))[0].generated

    expected = run("transformers", new_tokens)
    for name in engines:
        if run(name, new_tokens) != expected:
            raise SystemExit(f"greedy tokens differ between {name} and transformers: not the same model, aborting")
    times = {name: {1: [], new_tokens: []} for name in BATCH_ONE}
    for i in range(repeats):
        for name in (BATCH_ONE if i % 2 == 0 else BATCH_ONE[::-1]):
            for n in (1, new_tokens):
                synchronize(device)
                start = time.perf_counter()
                run(name, n)
                synchronize(device)
                times[name][n].append(time.perf_counter() - start)
    result = {}
    for name, by_n in times.items():
        ttft = statistics.median(by_n[1])
        whole = statistics.median(by_n[new_tokens])
        result[name] = {"ttft_s": ttft, "decode_tokens_per_s": (new_tokens - 1) / (whole - ttft)}
    result["decode_speedup"] = result["llamaops"]["decode_tokens_per_s"] / result["transformers"]["decode_tokens_per_s"]
    for variant in ("full-projection", "paged-kv"):
        result[f"decode_speedup_{variant}"] = (
            result[f"llamaops-{variant}"]["decode_tokens_per_s"] / result["transformers"]["decode_tokens_per_s"])
    result["ttft_speedup"] = result["transformers"]["ttft_s"] / result["llamaops"]["ttft_s"]
    return result


# -- the peer's HTTP front -----------------------------------------------------------------------
def serve_transformers(hf_dir: str, port: int, device: str) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    model = load_hf_model(Path(hf_dir), device)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            self._reply({"status": "ready"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:  # generate serves one request at a time
                tokens = hf_generate(model, body["prompt"], body["max_tokens"])
            self._reply({"choices": [{"text": "", "finish_reason": "length"}],
                         "usage": {"prompt_tokens": len(body["prompt"]), "completion_tokens": len(tokens)}})

        def _reply(self, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    class Server(ThreadingHTTPServer):
        request_queue_size = 256  # the default backlog of 5 resets connections of a 32-client burst

    Server(("127.0.0.1", port), Handler).serve_forever()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} never became ready")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_test(port: int, model: str, clients: int, new_tokens: int) -> dict:
    requests = prompts(clients, seed=2)
    latencies, tokens = [], []

    def client(prompt: list[int]) -> None:
        body = json.dumps({"model": model, "prompt": prompt, "max_tokens": new_tokens, "temperature": 0}).encode()
        start = time.perf_counter()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as r:
            tokens.append(json.loads(r.read())["usage"]["completion_tokens"])
        latencies.append(time.perf_counter() - start)

    threads = [threading.Thread(target=client, args=(p,)) for p in requests]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    latencies.sort()
    return {"tokens_per_s": sum(tokens) / wall, "p50_s": latencies[len(latencies) // 2],
            "p99_s": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], "completion_tokens": sum(tokens)}


def http_runs(native: Path, hf_dir: Path, client_counts: list[int], new_tokens: int, threads: int,
              device: str = "cpu") -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), BENCH_THREADS=str(threads))
    results: dict = {}
    servers = {
        "llamaops": lambda port: [sys.executable, "-m", "llamaops.cli.main", "serve", str(native), "--port", str(port),
                                  "--name", "bench", "--max-batch", str(max(client_counts)), "--device", device],
        "transformers": lambda port: [sys.executable, __file__, "--peer-server", str(hf_dir), str(port), device],
    }
    for name, argv in servers.items():  # one server at a time: they would compete for the cores
        port = free_port()
        proc = subprocess.Popen(argv(port), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(f"http://127.0.0.1:{port}/" + ("ready" if name == "llamaops" else ""), proc)
            load_test(port, "bench", 2, 4)  # warm-up
            results[name] = {c: load_test(port, "bench", c, new_tokens) for c in client_counts}
            results[name]["peak_rss_mib"] = peak_rss_mib(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
    for c in client_counts:
        results[f"speedup_{c}_clients"] = results["llamaops"][c]["tokens_per_s"] / results["transformers"][c]["tokens_per_s"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--http-tokens", type=int, default=32)
    parser.add_argument("--clients", default="8,32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (both sides run there)")
    parser.add_argument("--no-http", action="store_true", help="batch 1 in process only")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--peer-server", nargs=3, metavar=("HF_DIR", "PORT", "DEVICE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_server:
        serve_transformers(args.peer_server[0], int(args.peer_server[1]), args.peer_server[2])
        return
    if args.device != "cpu" and not torch.cuda.is_available():
        print(f"skipped: --device {args.device} needs CUDA and this machine has none (torch {torch.__version__})")
        return
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="llo-serve-bench-") as tmp:
        native, hf_dir = build(Path(tmp))
        report = {
            "config": CONFIG.model_dump(mode="json"), "torch": torch.__version__, "threads": args.threads,
            "device": args.device,
            "batch_1": batch_one(native, hf_dir, args.new_tokens, args.repeats, args.device),
        }
        if not args.no_http:
            report["http"] = http_runs(native, hf_dir, [int(c) for c in args.clients.split(",")], args.http_tokens,
                                       args.threads, args.device)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return
    b1 = report["batch_1"]
    print(f"model: dim {CONFIG.dim}, {CONFIG.n_layers} layers, vocab {CONFIG.vocab_size}, fp32, {args.threads} threads, "
          f"device {args.device}")
    print("batch 1 (in process, greedy tokens identical):")
    for name in BATCH_ONE:
        print(f"  {name:25s} TTFT {b1[name]['ttft_s'] * 1000:7.1f} ms   decode {b1[name]['decode_tokens_per_s']:7.1f} tok/s")
    print(f"  decode speedup {b1['decode_speedup']:.2f}x (full projection {b1['decode_speedup_full-projection']:.2f}x, "
          f"paged KV {b1['decode_speedup_paged-kv']:.2f}x)   TTFT speedup {b1['ttft_speedup']:.2f}x")
    if "http" not in report:
        return
    http = report["http"]
    print(f"HTTP, /v1/completions, {args.http_tokens} tokens per request:")
    for c in [int(c) for c in args.clients.split(",")]:
        for name in ("llamaops", "transformers"):
            r = http[name][c]
            print(f"  {c:3d} clients {name:12s} {r['tokens_per_s']:7.1f} tok/s   p50 {r['p50_s']:6.2f} s   p99 {r['p99_s']:6.2f} s")
        print(f"  {c:3d} clients speedup {http[f'speedup_{c}_clients']:.2f}x")
    print(f"peak RSS: llamaops {http['llamaops']['peak_rss_mib']:.0f} MiB, transformers {http['transformers']['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
