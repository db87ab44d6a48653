"""Text normalization applied before any comparison, so duplicates differ only in content."""
import re
import unicodedata

from .documents import Document
from .report import Removed

_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)
_MANY_BLANK_LINES = re.compile(r"\n{4,}")  # 4 newlines = 3 blank lines


def normalize_text(text: str) -> str:
    """Unicode NFC, unix newlines, no trailing spaces, at most two blank lines in a row, no edge blank lines."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _TRAILING_SPACE.sub("", text)
    return _MANY_BLANK_LINES.sub("\n\n\n", text).strip("\n")


def normalize_documents(documents: list[Document]) -> tuple[list[Document], Removed]:
    """Normalize every text in place; documents left with no visible character are dropped."""
    kept, removed = [], []
    for doc in documents:
        doc.text = normalize_text(doc.text)
        if doc.text.strip():
            kept.append(doc)
        else:
            removed.append((doc, "empty"))
    return kept, removed
