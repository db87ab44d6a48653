"""Readers that turn one corpus into Documents; each reads plain files and knows its language."""
import importlib.util
import json
import sysconfig
from pathlib import Path

import yaml

from .documents import DataError, Document
from .report import Removed

_STDLIB_SKIPPED_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
_CHATTERBOT_LANGUAGES = {
    "bengali": "bn", "chinese": "zh", "dutch": "nl", "english": "en", "french": "fr", "german": "de",
    "hebrew": "he", "hindi": "hi", "hinglish": "hi-latn", "indonesian": "id", "italian": "it",
    "japanese": "ja", "korean": "ko", "marathi": "mr", "oriya": "or", "persian": "fa",
    "portuguese": "pt", "russian": "ru", "spanish": "es", "swedish": "sv", "tamil": "ta",
    "telugu": "te", "thai": "th", "traditionalchinese": "zh-hant", "turkish": "tr",
    "ukrainian": "uk", "urdu": "ur", "yoruba": "yo",
}  # fmt: skip
_FORTUNE_LANGUAGE_DIRS = {"de": "de", "it": "it", "es": "es", "brasil": "pt", "pt": "pt"}
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's loader is ~10x faster when present
FORTUNES_DIR = Path("/usr/share/games/fortunes")
USER_SUFFIXES = (".txt", ".md", ".jsonl", ".parquet")


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def read_cpython_stdlib(source: str = "cpython-stdlib") -> list[Document]:
    """The running interpreter's standard library sources, without tests and installed packages, nor
    links a distribution adds (Debian's sitecustomize.py points into /etc, absent in images)."""
    root = stdlib_dir()
    paths = [p for p in sorted(root.rglob("*.py")) if not p.is_symlink()
             and _STDLIB_SKIPPED_DIRS.isdisjoint(p.relative_to(root).parts[:-1])]
    return [
        Document(str(path.relative_to(root)), path.read_text(encoding="utf-8", errors="replace"), source, "python")
        for path in paths
    ]


def chatterbot_data_dir() -> Path:
    """The YAML folder of the installed chatterbot-corpus package (found without importing it)."""
    spec = importlib.util.find_spec("chatterbot_corpus")
    locations = list(spec.submodule_search_locations or []) if spec else []
    folder = Path(locations[0]) / "data" if locations else None
    if folder is None or not folder.is_dir():
        raise DataError("source 'chatterbot-corpus' needs its package: pip install chatterbot-corpus==1.3.3")
    return folder


def fortunes_dir(root: Path = FORTUNES_DIR) -> Path:
    if not root.is_dir():
        raise DataError(f"source 'fortunes' needs Debian's fortunes package ({root} is missing): apt install fortunes")
    return root


def read_chatterbot_corpus(source: str = "chatterbot-corpus") -> list[Document]:
    """One document per conversation file: its conversations, one turn a line, a blank line between."""
    root = chatterbot_data_dir()
    documents = []
    for path in sorted(root.rglob("*.yml")):
        content = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER) or {}
        conversations = [
            "\n".join(str(turn) for turn in conversation)
            for conversation in content.get("conversations") or []
            if isinstance(conversation, list)
        ]
        language = _CHATTERBOT_LANGUAGES.get(path.relative_to(root).parts[0])
        documents.append(Document(str(path.relative_to(root)), "\n\n".join(conversations), source, language))
    return documents


def read_fortunes(source: str = "fortunes", root: Path = FORTUNES_DIR) -> list[Document]:
    """One document per Debian fortune file (English at the top, other languages in subfolders)."""
    documents = []
    for path in sorted(fortunes_dir(root).rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or path.is_symlink() or path.suffix in {".dat", ".u8"} or "off" in relative.parts:
            continue
        language = "en" if len(relative.parts) == 1 else _FORTUNE_LANGUAGE_DIRS.get(relative.parts[0])
        entries = [entry.strip("\n") for entry in path.read_text(encoding="utf-8", errors="replace").split("\n%\n")]
        text = "\n\n".join(entry for entry in entries if entry.strip())
        documents.append(Document(str(relative), text, source, language))
    return documents


def read_folder(root: Path, source: str) -> tuple[list[Document], Removed]:
    """A user's folder (or single file): .txt/.md (one document each), .jsonl (one per line) and
    .parquet (one per row), the last two with a "text" field and optional "id", "url", "language".
    Unreadable files, bad encodings and malformed records are skipped with a reason, never raised."""
    if root.is_file():
        paths = [root]
    else:
        paths = sorted(path for path in root.rglob("*") if path.suffix in USER_SUFFIXES and path.is_file())
    documents: list[Document] = []
    skipped: Removed = []
    for path in paths:
        name = str(path.relative_to(root)) if path != root else path.name
        try:
            raw = path.read_bytes() if path.suffix != ".parquet" else b""
        except OSError:
            skipped.append((Document(name, "", source), "unreadable_file"))
            continue
        if path.suffix == ".jsonl":
            _read_jsonl(raw, name, source, documents, skipped)
        elif path.suffix == ".parquet":
            _read_parquet(path, name, source, documents, skipped)
        else:
            try:
                documents.append(Document(id=name, text=raw.decode("utf-8"), source=source))
            except UnicodeDecodeError:
                skipped.append((Document(name, "", source), "bad_encoding"))
    return documents, skipped


def _record_document(record: object, default_id: str, source: str) -> Document | None:
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        return None
    optional = {key: record[key] if isinstance(record.get(key), str) else None for key in ("id", "url", "language")}
    return Document(optional["id"] or default_id, record["text"], source, optional["language"], url=optional["url"])


def _read_jsonl(raw: bytes, name: str, source: str, documents: list[Document], skipped: Removed) -> None:
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            record = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            skipped.append((Document(where, "", source), "bad_encoding"))
            continue
        except json.JSONDecodeError:
            skipped.append((Document(where, "", source), "bad_json"))
            continue
        doc = _record_document(record, where, source)
        if doc is None:
            skipped.append((Document(where, "", source), "no_text_field"))
        else:
            documents.append(doc)


def _read_parquet(path: Path, name: str, source: str, documents: list[Document], skipped: Removed) -> None:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError
        skipped.append((Document(name, "", source), "unreadable_file"))
        return
    if "text" not in table.column_names:
        skipped.append((Document(name, "", source), "no_text_field"))
        return
    columns = [column for column in ("text", "id", "url", "language") if column in table.column_names]
    for number, record in enumerate(table.select(columns).to_pylist()):
        where = f"{name}:{number}"
        doc = _record_document(record, where, source)
        if doc is None:
            skipped.append((Document(where, "", source), "no_text_field"))
        else:
            documents.append(doc)
