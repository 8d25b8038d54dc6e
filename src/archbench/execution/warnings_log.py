"""A run's library warnings: owns `warnings.log` (one line per warning) while the run executes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from archbench.store.layout import RunLayout
from archbench.store.record import now_iso


class RunWarnings:
    """Library warnings raised while a run trains, evaluates and runs its stages go to
    `runs/<id>/warnings.log` (one line each, first occurrence per place, appended across resumes) instead of
    the terminal; the record's `warnings` holds how many lines the log has (`total`)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = RunLayout(run_dir).warnings_log
        self.count = 0  # lines this process added
        self._saved: Any = None

    def _show(
        self, message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None
    ) -> None:
        text = " ".join(str(message).split())
        entry = f"{now_iso()} {category.__name__}: {text} ({filename}:{lineno})\n"
        try:
            fd = os.open(
                self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o644
            )
            with os.fdopen(fd, "a", encoding="utf-8") as f:
                f.write(entry)
            self.count += 1
        except OSError:
            pass  # never fail a run over its warning log

    def total(self) -> int:
        try:
            with open(self.path, encoding="utf-8") as f:
                return sum(1 for _ in f)
        except OSError:
            return self.count

    def __enter__(self) -> RunWarnings:
        import warnings

        self._saved = warnings.catch_warnings()
        self._saved.__enter__()
        warnings.simplefilter("default")
        warnings.showwarning = self._show
        return self

    def __exit__(self, *exc: object) -> None:
        self._saved.__exit__(*exc)
