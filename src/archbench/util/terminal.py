"""Printing to the terminal: owns the rule that user text (names, paths, messages) is shown literally.

Consoles here never interpret rich markup (`[/]`, `[link=…]`) or highlight, and `literal()` turns control
characters (ANSI escapes, carriage returns, NUL) into visible `\\xNN` (escape.py's rule, shared by every
output) so nothing read from a sweep file or a record can drive the terminal.
"""

from __future__ import annotations

from rich.console import Console

from archbench.util.escape import visible


def literal(text: object) -> str:
    """`text` as a string with every control character (except tab/newline) shown as an escape."""
    return visible(text, keep="\t\n")


def one_line(text: object) -> str:
    """`literal(text)` with line breaks folded to `; ` (an error message is one line)."""
    parts = [p.strip() for p in literal(text).splitlines()]
    return "; ".join(p for p in parts if p).replace(":; ", ": ")


def make_console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, markup=False, highlight=False, emoji=False, soft_wrap=False)


__all__ = ["literal", "make_console", "one_line"]
