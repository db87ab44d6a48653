"""`llamaops serve MODEL`: the OpenAI-compatible server."""
import os
from pathlib import Path
from typing import Annotated

import typer

from llamaops.platform.tracking.model_reference import MODEL_REFERENCE_HELP

API_KEY_ENV = "LLAMAOPS_API_KEY"


class ApiKeyError(ValueError):
    """The API key the user pointed at is not there."""


def serve(
    model: Annotated[str, typer.Argument(help=f"The model: {MODEL_REFERENCE_HELP}.", show_default=False)],
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.", min=1, max=65535)] = 8000,
    name: Annotated[str | None, typer.Option(help="Model name clients send (default: from MODEL).")] = None,
    api_key_file: Annotated[Path | None, typer.Option(help=f"File holding the API key (or set {API_KEY_ENV}); no key: no auth.")] = None,
    max_batch: Annotated[int, typer.Option(help="Requests decoded together.", min=1)] = 32,
    max_queue: Annotated[int, typer.Option(help="Waiting requests before answering 429.", min=1)] = 256,
    prefill_chunk: Annotated[int, typer.Option(help="Prompt tokens prefilled per step.", min=1)] = 256,
    max_prefills: Annotated[int, typer.Option(help="Prompts sharing a step's prefill tokens.", min=1)] = 4,
    max_seq_len: Annotated[int | None, typer.Option(help="Context served (default: the model's).", min=2)] = None,
    kv_block_size: Annotated[int | None, typer.Option(help="Keep the KV cache in paged blocks of this many tokens (default: one dense row per slot).", min=1)] = None,
    kv_blocks: Annotated[int | None, typer.Option(help="Paged KV pool size in blocks (default: as many tokens as the dense cache).", min=1)] = None,
    dtype: Annotated[str, typer.Option(help="Weights dtype: auto (as stored), float32 or bfloat16.")] = "auto",
    device: Annotated[str, typer.Option(help="Where the model runs: cpu, cuda or cuda:N.")] = "cpu",
    tensor_parallel: Annotated[int, typer.Option(help="Ranks the model is split over, one process each (GPUs 0..N-1 with --device cuda).", min=1)] = 1,
    quantization: Annotated[str | None, typer.Option(help="fp8: feed-forward weights in FP8 with row-wise scales, as Llama 3 served 405B (`llamaops model serve-plan` sizes it).", show_default=False)] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI for models:/ references.")] = None,
) -> None:
    """Serve a model over an OpenAI-compatible HTTP API."""
    import torch

    from llamaops.platform.serve import load_for_serving
    from llamaops.platform.serve.server import ServerSettings, run_server

    dtypes = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16}
    if dtype not in dtypes:
        raise typer.BadParameter(f"'{dtype}' is not one of auto, float32, bfloat16", param_hint="--dtype")
    if device != "cpu" and not (device.split(":")[0] == "cuda" and torch.cuda.is_available()):
        raise typer.BadParameter(f"'{device}' is not available here: use cpu, or cuda on a machine with a GPU",
                                 param_hint="--device")
    key = _api_key(api_key_file)
    if key is None and not _is_loopback(host):
        typer.echo(f"warning: serving on {host} with no API key: anyone who can reach it can use it; "
                   f"give --api-key-file or set {API_KEY_ENV}", err=True)
    settings = ServerSettings(max_batch=max_batch, max_queue=max_queue, prefill_chunk=prefill_chunk,
                              max_prefills=max_prefills, max_seq_len=max_seq_len, kv_block_size=kv_block_size,
                              kv_blocks=kv_blocks, api_key=key)
    if quantization not in (None, "fp8"):
        raise typer.BadParameter(f"'{quantization}' is not a quantization llamaops serves: use fp8", param_hint="--quantization")
    torch.set_grad_enabled(False)
    if tensor_parallel == 1 and quantization is None:
        run_server(lambda: load_for_serving(model, tracking_uri=tracking_uri, dtype=dtypes[dtype], name=name,
                                            device=device), settings, host, port)
        return
    from llamaops.platform.serve.loading import served_name
    from llamaops.platform.serve.ranks import ServingRanks, rank_spec

    if device not in ("cpu", "cuda"):
        raise typer.BadParameter(f"'{device}' with --tensor-parallel or --quantization: use cpu, or cuda for GPUs 0..N-1",
                                 param_hint="--device")
    spec = rank_spec(model, tensor_parallel, device, dtypes[dtype], settings.engine_options(), tracking_uri,
                     fp8=quantization == "fp8")
    ranks = ServingRanks(spec, name or served_name(model))
    try:
        run_server(ranks.load, settings, host, port)
    finally:
        ranks.close()


def _api_key(api_key_file: Path | None) -> str | None:
    """The key from the file, else the environment; a file or variable holding only whitespace is
    a mistake that would silently turn auth off, so it is refused."""
    if api_key_file is not None:
        key, where = api_key_file.read_text().strip(), f"--api-key-file {api_key_file}"
    else:
        raw = os.environ.get(API_KEY_ENV, "")
        key, where = raw.strip(), API_KEY_ENV
        if not raw:
            return None
    if not key:
        raise ApiKeyError(f"{where} holds no key (only whitespace); put the key in it, or drop it to serve "
                          "without auth")
    return key


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
