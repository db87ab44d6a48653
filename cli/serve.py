"""`llamaops serve MODEL`: an OpenAI-compatible HTTP server over the continuous-batching engine."""
import os
from pathlib import Path
from typing import Annotated

import typer


class ServeError(ValueError):
    """Bad serve arguments (a user error: one line, exit 2)."""


def _api_key(api_key_file: Path | None) -> str | None:
    if api_key_file is not None:
        key = api_key_file.read_text().strip()
        if not key:
            raise ServeError(f"API key file {api_key_file} is empty; put the key on its first line")
        return key
    return os.environ.get("LLAMAOPS_API_KEY") or None


def serve(
    model: Annotated[str, typer.Argument(help="models:/NAME@alias, s3:// or file:// URI, or a checkpoint / HF directory.")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    api_key_file: Annotated[
        Path | None, typer.Option(help="File holding the API key (default: env LLAMAOPS_API_KEY; none: no auth).")
    ] = None,
    served_model_name: Annotated[str | None, typer.Option(help="Model id clients use (default: MODEL).")] = None,
    max_batch: Annotated[int, typer.Option(min=1, help="Requests decoded together.")] = 16,
    max_queue: Annotated[int, typer.Option(min=1, help="Waiting requests before 429.")] = 256,
    token_budget: Annotated[int, typer.Option(min=1, help="Tokens per engine step (decode + prefill chunks).")] = 512,
    max_seq_len: Annotated[int | None, typer.Option(min=2, help="Context length (default: the model's).")] = None,
    dtype: Annotated[str, typer.Option(help="float32 or bfloat16.")] = "float32",
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads.")] = None,
) -> None:
    """Serve MODEL with /v1/models, /v1/completions, /v1/chat/completions, /health, /ready, /metrics."""
    import torch
    import uvicorn

    from llamaops.platform.serve import Engine, load_serving_model
    from llamaops.platform.serve.server import create_app
    from llamaops.platform.tokenizer import load_tokenizer

    if dtype not in ("float32", "bfloat16"):
        raise ServeError(f"unknown dtype {dtype!r}; use float32 or bfloat16")
    key = _api_key(api_key_file)
    if threads:
        torch.set_num_threads(threads)
    loaded = load_serving_model(model, dtype=getattr(torch, dtype))
    tokenizer = load_tokenizer()
    engine = Engine(
        loaded,
        stop_ids=tokenizer.stop_ids,
        decode=tokenizer.decode,
        max_batch=max_batch,
        max_queue=max_queue,
        token_budget=token_budget,
        max_seq_len=max_seq_len,
    )
    app = create_app(engine, tokenizer, served_model_name or model, api_key=key)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=60)
