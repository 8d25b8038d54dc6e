"""What every `archbench` command shares on its command line: `-h` beside `--help`, `--version`, and
boolean flags shown as flags; owns no command of its own.

Typer's rich help prints a type column for every option, `<bool>` included, even for a flag that takes no
value (`--dry-run <bool>` reads as if it wanted `--dry-run true`). `FlagCommand` and `FlagGroup` give each
flag an empty metavar, so the help shows `--dry-run` and `--memory / --no-memory` alone; parsing is
unchanged (a flag's metavar is only ever displayed).
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

HELP_OPTION_NAMES = ["-h", "--help"]
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": HELP_OPTION_NAMES}


def _flags_as_flags(params: list[Any]) -> list[Any]:
    for p in params:
        if getattr(p, "is_flag", False) and getattr(p, "metavar", None) is None:
            p.metavar = ""
    return params


class FlagCommand(TyperCommand):
    """A command whose help shows boolean options (and -h/--help) as flags, without a `<bool>` type."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_as_flags(super().get_params(ctx))


class FlagGroup(TyperGroup):
    """A command group whose help shows boolean options (and -h/--help) as flags."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_as_flags(super().get_params(ctx))


def version_text() -> str:
    """`archbench X.Y.Z` (the package's `__version__`, which a test keeps equal to pyproject's)."""
    import archbench

    return f"archbench {archbench.__version__}"


def show_version(value: bool) -> None:
    """The eager `--version` option's callback: print the version and exit 0 before any command runs."""
    if value:
        typer.echo(version_text())
        raise typer.Exit(code=0)


# What every exit code means, whichever command gives it (each command's module docstring says which it
# gives); the generated reference (docs/reference/exit-codes.md) prints this table.
EXIT_CODES: dict[int, str] = {
    0: "done: every run completed (or was already), or the command did what it was asked",
    1: "some runs failed (the others were all tried), or a check found a problem it names "
    "(verify, profile's parameter check, export parity, cache verify)",
    2: "invalid input — sweep file, option, data layout, folder — one line on stderr, nothing created",
    3: "`run`: some runs were left busy, claimed by another live process (a failure takes precedence)",
    130: "`run`: stopped by SIGTERM or Ctrl-C; the current run checkpointed and is recorded killed",
}
