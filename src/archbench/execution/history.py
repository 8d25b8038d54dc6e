"""A run's epoch history on disk while it trains: owns `history.csv` and the running record's history."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from archbench.store.layout import RunLayout
from archbench.store.record import EpochStats, RunRecord, write_record
from archbench.util.paths import atomic_write_text


def write_history_csv(run_dir: Path, history: list[dict[str, Any]]) -> None:
    if not history:
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(history[0]))
    w.writeheader()
    w.writerows(history)
    atomic_write_text(RunLayout(run_dir).history, buf.getvalue())


class LiveHistory:
    """Writes `history.csv` and the running record's history after every epoch, so `ls` on a running
    sweep shows how far each run has got (epoch x/y, ETA); then passes the epoch on (reporter, tracking)."""

    def __init__(self, run_dir: Path, record: RunRecord, then: Callable[[dict[str, Any]], None]) -> None:
        self.run_dir, self.record, self.then = run_dir, record, then
        self.history: list[dict[str, Any]] = []
        path = RunLayout(run_dir).history
        if path.is_file():
            try:
                with open(path, newline="") as f:
                    self.history = [dict(row) for row in csv.DictReader(f)]
            except (OSError, csv.Error):
                self.history = []

    def epoch(self, stats: dict[str, Any]) -> None:
        # A resumed run repeats no finished epoch, but a kill between the checkpoint and this write can
        # leave the file one epoch behind or ahead: keep only the epochs before this one, then add it.
        self.history = [h for h in self.history if int(float(h.get("epoch", 0))) < stats["epoch"]]
        self.history.append(dict(stats))
        try:
            write_history_csv(self.run_dir, self.history)
            self.record.history = [EpochStats(**h) for h in self.history]
            write_record(self.run_dir, self.record)
        except (OSError, ValueError):
            pass  # progress only: the final record and history.csv are written when the run ends
        self.then(stats)
