"""Cleaning: mojibake repair and boilerplate lines, on top of the normalization in normalize.py."""
import re

_BOILERPLATE = re.compile(
    r"(accept (all )?cookies|uses cookies|cookie policy|all rights reserved|privacy policy|terms of (use|service)"
    r"|click here|subscribe to (our|the) newsletter|sign up for|log ?in to (reply|comment)|enable javascript"
    r"|skip to (main )?content|share (this|on) (facebook|twitter))",
    re.IGNORECASE,
)
# A lead byte of a 2-4 byte UTF-8 sequence seen as cp1252/latin-1, then continuation bytes seen the same way.
_CONTINUATION = "\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122"
_MOJIBAKE_RUN = re.compile(f"(?:[\u00c2-\u00f4][{_CONTINUATION}]+)+")
BOILERPLATE_MAX_CHARS = 200  # longer lines are content that happens to mention these phrases


def _as_cp1252_bytes(text: str) -> bytes | None:
    """The bytes a cp1252 decoder turned into `text` (latin-1 for its 5 undefined bytes), or None."""
    out = bytearray()
    for ch in text:
        try:
            out += ch.encode("cp1252")
        except UnicodeEncodeError:
            if ord(ch) > 0xFF:
                return None
            out.append(ord(ch))
    return bytes(out)


def _repair_run(match: re.Match) -> str:
    raw = _as_cp1252_bytes(match.group())
    try:
        return raw.decode("utf-8") if raw is not None else match.group()
    except UnicodeDecodeError:
        return match.group()


def repair_mojibake(text: str) -> str:
    """Undo UTF-8 that was decoded as cp1252 or latin-1 ("cafÃ©" -> "café"), one run of such characters at a time."""
    return _MOJIBAKE_RUN.sub(_repair_run, text)  # a run that is not valid UTF-8 once re-encoded stays


def is_boilerplate(line: str) -> bool:
    return len(line) <= BOILERPLATE_MAX_CHARS and _BOILERPLATE.search(line) is not None


def remove_boilerplate_lines(text: str) -> str:
    return "\n".join(line for line in text.split("\n") if not is_boilerplate(line))
