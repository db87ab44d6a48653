"""The unit every data-prep step passes along, and the error a user's bad data input raises."""
from collections.abc import Sequence
from dataclasses import dataclass, field


class DataError(ValueError):
    """Bad data input (unknown source, missing path, empty corpus): the message says what to fix."""


@dataclass
class Document:
    id: str  # unique within its source, e.g. the file path it came from
    text: str
    source: str  # the name or URI from DataConfig.sources
    language: str | None = None  # ISO 639-1 code, "python" for code, None when unknown
    tokens: Sequence[int] = field(default_factory=list)  # filled by the tokenize step (a uint32 array)
    url: str | None = None  # where the text was found, when known (URL de-duplication)


CODE_LANGUAGES = frozenset({"python"})  # languages that are programming languages, not natural ones
