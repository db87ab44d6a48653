"""PII scrubbing: email addresses, phone numbers and IPv4 addresses become placeholders."""
import re

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
PATTERNS = (
    ("<EMAIL>", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}")),
    ("<IP_ADDRESS>", re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w.])")),
    # +country code optional; 3-3-4 digits (North American) or a + number of 8 to 15 digits.
    ("<PHONE>", re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?!\w)|\+\d[\d .-]{7,17}\d")),
)


def scrub_pii(text: str) -> tuple[str, int]:
    """The text with PII replaced, and how many replacements were made."""
    total = 0
    for placeholder, pattern in PATTERNS:
        text, count = pattern.subn(placeholder, text)
        total += count
    return text, total
