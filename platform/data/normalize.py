"""Text normalization applied before any comparison, so duplicates differ only in content."""
import re
import unicodedata

_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)
_MANY_BLANK_LINES = re.compile(r"\n{4,}")  # 4 newlines = 3 blank lines


def normalize_text(text: str) -> str:
    """Unicode NFC, unix newlines, no trailing spaces, at most two blank lines in a row, no edge blank lines."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _TRAILING_SPACE.sub("", text)
    return _MANY_BLANK_LINES.sub("\n\n\n", text).strip("\n")
