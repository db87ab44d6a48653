"""The native llamaops model directory: `llamaops_model.json` (the ModelConfig) + `model.safetensors`
(the state dict in Meta's names), or, for a model written a group of tensors at a time (train
stages publish straight from their sharded checkpoints), `model-00001-of-0000N.safetensors` files
and `model.safetensors.index.json` mapping each tensor to its file, as Hugging Face shards.
Directories are written atomically: a temp sibling, then a rename. `manifest.json` (written last,
store/manifest.py) holds every file's SHA-256 and block hashes: the config, the index and each
weights file's header are checked before they are parsed, and weights before they are used.
A directory without one (an older llamaops, or made by hand) is refused until re-created or sealed.
"""
import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.store.atomic import replace_directory
from llamaops.platform.store.manifest import MANIFEST_FILE, Manifest, ManifestError, read_manifest, seal
from llamaops.platform.store.uri import opened_in_part

from .transformer import Transformer
from .verified_slices import VerifiedSlice, verified_header

CONFIG_FILE = "llamaops_model.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
FORMAT = "llamaops-model"
FORMAT_VERSION = 1


class ModelDirectoryError(ValueError):
    """A model directory is missing, unreadable or does not match its config; the message says what to do."""


def check_destination(dst: Path, overwrite: bool = False) -> Path:
    """Fail fast, before any work, when `dst` cannot become a new model directory."""
    dst = Path(dst)
    if dst.exists() and not dst.is_dir():
        raise ModelDirectoryError(f"{dst} exists and is not a directory; choose another destination")
    if dst.is_dir() and any(dst.iterdir()) and not overwrite:
        raise ModelDirectoryError(
            f"{dst} already exists and is not empty; choose another destination or remove it first"
        )
    return dst


@contextmanager
def atomic_directory(dst: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temp directory next to `dst` and rename it to `dst` once the block succeeds;
    on failure it is removed and `dst` is untouched."""
    with replace_directory(check_destination(dst, overwrite)) as tmp:
        yield tmp


def save_model(model: Transformer, directory: Path, overwrite: bool = False) -> Path:
    """Write `model` as a native model directory and return its path."""
    require_whole_model(model)
    return write_model_shards(model.cfg, [model.state_dict()], 1, directory, overwrite)


def read_model_config(directory: Path) -> ModelConfig:
    return _read_config(directory)[0]


def _read_config(directory: Path) -> tuple[ModelConfig, Manifest]:
    """The config and the manifest of a model directory, once every listed file is there whole."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelDirectoryError(
            f"{directory} is not a directory; pass a llamaops model directory"
            " (written by save_model or `llamaops model import-hf`)"
        )
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise ModelDirectoryError(f"{path} is missing; {directory} is not a llamaops model directory")
    manifest = model_manifest(directory)
    with _model_errors():
        manifest.check_sizes()
        text = manifest.verified_bytes(CONFIG_FILE)
    try:
        header = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirectoryError(f"{path} is unreadable or corrupt ({exc}); re-create the model directory") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or "config" not in header:
        raise ModelDirectoryError(f"{path} is not a llamaops model config; re-create the model directory")
    if header.get("format_version") != FORMAT_VERSION:
        raise ModelDirectoryError(
            f"{path} has format version {header.get('format_version')!r}, this llamaops reads {FORMAT_VERSION};"
            " use a matching llamaops version"
        )
    try:
        return ModelConfig.model_validate(header["config"]), manifest
    except ValidationError as exc:
        raise ModelDirectoryError(f"{path}: invalid model config: {first_error(exc)}") from None


def model_manifest(directory: Path) -> Manifest:
    """The manifest of a model directory; without one its files cannot be trusted, so it is refused."""
    try:
        return read_manifest(directory)
    except ManifestError as exc:
        raise ModelDirectoryError(
            f"{exc} (written by an older llamaops, or by hand); re-create {directory} (save it again or"
            f" `llamaops model import-hf`), or if you trust its files run `llamaops model seal {directory}`"
        ) from None


def seal_model_directory(directory: Path) -> Path:
    """Write the manifest of a model directory that has none, trusting the files it holds now."""
    directory = Path(directory)
    if (directory / MANIFEST_FILE).exists():
        raise ModelDirectoryError(f"{directory / MANIFEST_FILE} already exists; nothing was changed")
    if not (directory / CONFIG_FILE).is_file():
        raise ModelDirectoryError(f"{directory / CONFIG_FILE} is missing; {directory} is not a llamaops model directory")
    seal(directory)
    read_model_config(directory)
    return directory


@contextmanager
def _model_errors() -> Iterator[None]:
    """A file that does not match the manifest as the one-line error of a model directory."""
    try:
        yield
    except ManifestError as exc:
        raise ModelDirectoryError(f"{exc}; re-create the model directory") from None


def shard_file(index: int, count: int) -> str:
    """The name of weights file `index` (from 1) of `count`, as Hugging Face names its shards."""
    return f"model-{index:05d}-of-{count:05d}.safetensors"


def plan_shards(sizes: dict[str, int], max_bytes: int) -> list[list[str]]:
    """Tensor names (in order) grouped into shards of at most `max_bytes` (bytes per name in
    `sizes`), greedily; a tensor bigger than that gets a shard of its own."""
    shards: list[list[str]] = [[]]
    size = 0
    for name, nbytes in sizes.items():
        if shards[-1] and size + nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    return shards


def write_model_shards(
    cfg: ModelConfig, shards: Iterable[dict[str, torch.Tensor]], count: int, directory: Path, overwrite: bool = False,
) -> Path:
    """Write a native model directory one group of tensors at a time (`count` groups, each a
    name -> tensor dict, produced while the previous one is already on disk), so a model far
    bigger than memory can be written. One group is the plain `model.safetensors`. The manifest
    is written last, inside the temp directory: a directory that appears has one."""
    directory = Path(directory)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": cfg.model_dump(mode="json")}
    with atomic_directory(directory, overwrite) as tmp:
        (tmp / CONFIG_FILE).write_text(json.dumps(header, indent=2) + "\n")
        weight_map: dict[str, str] = {}
        written = 0
        for written, tensors in enumerate(shards, start=1):
            file = WEIGHTS_FILE if count == 1 else shard_file(written, count)
            save_file({n: t.detach().to("cpu").contiguous() for n, t in tensors.items()}, tmp / file,
                      metadata={"format": "pt"})
            readable_as_umask_allows(tmp / file)
            weight_map.update(dict.fromkeys(tensors, file))
        if written != count:
            raise ValueError(f"write_model_shards: {written} groups of tensors given, {count} announced")
        if count > 1:
            (tmp / INDEX_FILE).write_text(json.dumps({"weight_map": dict(sorted(weight_map.items()))}, indent=1) + "\n")
        seal(tmp)  # one writer: it hashes its own files, reading each back once
    return directory


def readable_as_umask_allows(path: Path) -> None:
    """safetensors creates files owner-only (0600); weights hold no secret: the mode any other file
    gets (0644 under the usual umask), so a serving or eval process of another user can read them."""
    umask = os.umask(0o022)
    os.umask(umask)
    path.chmod(0o666 & ~umask)


def weight_files(directory: Path, manifest: Manifest) -> list[str]:
    """The names of the weights files of a native model directory (the index checked against the
    manifest before it is parsed), or one line on what is missing."""
    directory = Path(directory)
    if WEIGHTS_FILE in manifest.files:
        return [WEIGHTS_FILE]
    if INDEX_FILE not in manifest.files:
        raise ModelDirectoryError(f"{directory / WEIGHTS_FILE} is missing; re-create the model directory")
    with _model_errors():
        text = manifest.verified_bytes(INDEX_FILE)
    return [path.name for path in indexed_weight_files(directory, INDEX_FILE, text)]


def indexed_weight_files(directory: Path, index_name: str, text: bytes | None = None) -> list[Path]:
    """The files a safetensors index (`weight_map`: tensor -> file; `text`: its bytes, already
    checked, else read) names, each a plain file name inside `directory`: an index naming another
    path (`../x`, `/etc/x`) is refused, not followed."""
    index = directory / index_name
    try:
        files = sorted(set(json.loads(index.read_bytes() if text is None else text)["weight_map"].values()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ModelDirectoryError(f"{index} is unreadable or corrupt ({exc}); re-create the model directory") from None
    outside = [f for f in files if not isinstance(f, str) or Path(f).name != f or f in ("", ".", "..")]
    if outside:
        raise ModelDirectoryError(f"{index} names {outside[0]!r}, which is not a file in {directory}; "
                                  "re-create the model directory")
    missing = [name for name in files if not (directory / name).is_file()]
    if missing:
        raise ModelDirectoryError(f"{directory / missing[0]} is missing ({len(missing)} of {len(files)} weights files);"
                                  " re-create the model directory")
    return [directory / name for name in files]


def load_model(directory: Path, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> Transformer:
    """Read a native model directory; weights keep their stored dtype unless `dtype` is given.
    Each weights file is hashed whole before it is opened: one more read of the model (from the
    page cache, mostly) for the one reader that reads all of it anyway."""
    directory = Path(directory)
    cfg, manifest = _read_config(directory)
    state: dict[str, torch.Tensor] = {}
    files = weight_files(directory, manifest)
    for name in files:
        path = directory / name
        with _model_errors():
            manifest.verify_file(name)
        try:
            with safe_open(path, framework="pt", device=str(device)) as f:
                for tensor_name in f.keys():
                    tensor = f.get_tensor(tensor_name)
                    state[tensor_name] = tensor if dtype is None else tensor.to(dtype)
        except (SafetensorError, OSError) as exc:
            raise ModelDirectoryError(f"{path} is corrupt ({exc}); re-create the model directory") from None
    return build_model(cfg, state, str(directory / files[0] if len(files) == 1 else directory), device)


def build_model(
    cfg: ModelConfig, state: dict[str, torch.Tensor], source: str, device: torch.device | str
) -> Transformer:
    """A Transformer holding exactly `state` (no copies), after checking its names and shapes against `cfg`."""
    with torch.device("meta"):
        model = Transformer(cfg)
    check_tensor_shapes(model, {name: tensor.shape for name, tensor in state.items()}, source)
    model.load_state_dict(state, assign=True)
    model.init_buffers(device)
    return model


def check_tensor_shapes(model: Transformer, shapes: dict[str, Any], source: str) -> None:
    """`shapes` (tensor name -> shape, read from `source`) are exactly `model`'s state dict's."""
    expected = model.state_dict()
    missing, unexpected = sorted(expected.keys() - shapes.keys()), sorted(shapes.keys() - expected.keys())
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise ModelDirectoryError(f"{source}: tensors do not match the model config ({what}); re-create the model")
    for name, shape in shapes.items():
        if tuple(shape) != tuple(expected[name].shape):
            raise ModelDirectoryError(
                f"{source}: {name} has shape {list(shape)} but the config needs"
                f" {list(expected[name].shape)}; the weights and config do not belong together"
            )


@contextmanager
def model_in_part(uri: str) -> Iterator[tuple[Path, Callable[[str, int, int], None] | None]]:
    """The model artifact at `uri` for a reader of parts of its weights (weight_slices): a local
    one as it is; an s3:// one with its config and index downloaded, its weights files sparse and
    the blocks a reader checks fetched on demand (store.opened_in_part), so a rank downloads its
    shards' blocks, never the whole model."""
    with opened_in_part(uri, lambda name: name.endswith(".safetensors")) as opened:
        yield opened


@contextmanager
def weight_slices(directory: Path, fill: Callable[[str, int, int], None] | None = None
                  ) -> Iterator[tuple[ModelConfig, dict[str, Any]]]:
    """A native model directory's config and its tensors as lazy slices (name -> safetensors'
    get_slice, on the CPU: indexing one with a box, `slices[name][rows, columns]`, reads only
    that box's bytes), after checking the names and shapes against the config. For a reader that
    needs a part of each tensor (one rank's shards), never the whole model: the headers are
    checked against the manifest before they are parsed, and a box's blocks before it is read."""
    directory = Path(directory)
    cfg, manifest = _read_config(directory)
    manifest.fill = fill  # (model_in_part) the blocks checked are the blocks read
    files = weight_files(directory, manifest)
    with ExitStack() as stack:
        slices: dict[str, Any] = {}
        for name in files:
            path = directory / name
            try:
                with _model_errors():
                    spans = verified_header(manifest, name)
                weights = stack.enter_context(safe_open(path, framework="pt", device="cpu"))
                slices |= {t: _Checked(weights.get_slice(t), manifest, name, spans[t]) for t in weights.keys()}
            except (SafetensorError, OSError, ValueError, KeyError, TypeError) as exc:
                if isinstance(exc, ModelDirectoryError):
                    raise
                raise ModelDirectoryError(f"{path} is corrupt ({exc}); re-create the model directory") from None
        with torch.device("meta"):
            model = Transformer(cfg)
        check_tensor_shapes(model, {name: s.get_shape() for name, s in slices.items()}, str(directory))
        yield cfg, slices


class _Checked(VerifiedSlice):
    """A verified slice whose damaged block is the one-line error of a model directory."""

    def __getitem__(self, key: Any) -> Any:
        with _model_errors():
            return super().__getitem__(key)


def first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"])
    return f"{where}: {err['msg']}" if where else err["msg"]


def require_whole_model(model: Transformer) -> None:
    parts = (model.tok_embeddings, model.norm, model.output)
    if any(part is None for part in parts) or len(model.layers) != model.cfg.n_layers:
        raise ValueError("only a whole model can be saved, not a pipeline stage; gather the stages first")
