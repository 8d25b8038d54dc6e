"""The tracking outbox: owns the list of runs whose MLflow copy may be stale (tracking-outbox.jsonl).

One JSON line per event that could not be sent (run id, why, how long we waited). Lines are appended with
O_APPEND, so several processes (Ray workers) can note runs at once. `archbench sync` rebuilds the tracker
from the records (the outbox only says what is known to be behind) and then empties it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from archbench.store.layout import OUTBOX_NAME as OUTBOX_NAME  # cli/app.py still spells the path itself
from archbench.store.layout import SweepLayout
from archbench.store.record import now_iso


def note(sweep_root: Path, run_id: str, reason: str, waited_s: float) -> None:
    line = json.dumps(
        {"run_id": run_id, "reason": reason[:500], "waited_s": round(waited_s, 3), "at": now_iso()}
    )
    path = SweepLayout(sweep_root).tracking_outbox
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        os.write(fd, ("\n" + line + "\n").encode())  # leading newline: a torn line never swallows ours
    finally:
        os.close(fd)


def entries(sweep_root: Path) -> list[dict[str, Any]]:
    path = SweepLayout(sweep_root).tracking_outbox
    if not path.exists():
        return []
    out = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            item = json.loads(raw)
        except ValueError:
            continue  # a torn last line from a killed writer
        if isinstance(item, dict) and isinstance(item.get("run_id"), str):
            out.append(item)
    return out


def clear(sweep_root: Path) -> None:
    try:
        os.unlink(SweepLayout(sweep_root).tracking_outbox)
    except FileNotFoundError:
        pass
