"""Control characters in what archbench writes: owns the one rule every output follows — terminal, HTML,
Markdown, LaTeX, CSV, SVG and MLflow tags show a control character as a visible escape, never raw.

Names reach outputs from places archbench does not choose: class folder names, sweep and model names in a
YAML file, records on disk. An ESC byte in a class folder's name would recolour the terminal that `cat`s
report.md; a NUL or a newline breaks a CSV row, a LaTeX line or a Markdown table; a bidi override makes a
name read differently from what it is. Each format's own escaping (HTML entities, TeX specials, formula
cells in CSV) comes after this step, so `\\x1b` is then escaped like any other text.
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls, the Unicode line/paragraph separators and the bidi embeddings, overrides
# and isolates. Zero-width joiners and marks are left alone: scripts and emoji need them.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: object, keep: str = "") -> str:
    """`text` as a string with every control character shown as `\\xNN` (`\\uNNNN` above 0xff), except
    those in `keep` (the terminal keeps tab and newline for messages of several lines)."""
    s = str(text)
    if keep:
        return _CONTROL.sub(lambda m: m.group() if m.group() in keep else _escape(m), s)
    return _CONTROL.sub(_escape, s)


__all__ = ["visible"]
