"""Fault injection for the reliability tests: owns parsing ARCHBENCH_FAULT; off (and free) by default.

Syntax: comma-separated `what@where[#run-substring]`, for example
  kill@step:17          SIGKILL this process just before global step 17
  killonce@step:17      SIGKILL before step 17 unless the run resumed (a retry gets past it)
  hang@step:17          stop forever before step 17 (a stuck run, for driver-kill tests)
  hangonce@step:17      stop before step 17 unless the run resumed (held there until its node is removed)
  term@step:5           send SIGTERM to this process just before step 5
  kill@trial:3          SIGKILL the process training tuning trial 3 (of any study) after its first epoch
  hang@trial:3          stop forever there instead
  nan@step:3            make the loss at step 3 non-finite
  oom@step:2            raise torch.cuda.OutOfMemoryError in the forward pass at step 2
  kill@checkpoint_write die half-way through writing a checkpoint (`:N`: the N-th write of this process)
  kill@after_checkpoint die after the final checkpoint, before the record is written
  kill@record_write     die half-way through writing the final (completed) record
  kill@tracking_final   die after the final record, before MLflow is told of it (tracking.mlflow only)
  enospc@checkpoint     fail writing a checkpoint with ENOSPC (disk full)
A `#text` suffix limits the fault to runs whose id contains `text`.
ARCHBENCH_DEBUG_SKIP_RESTORE=rng,scheduler turns off parts of resume (only to prove the tests guard them).
"""

from __future__ import annotations

import os
import signal
from functools import lru_cache
from typing import TypeVar

T = TypeVar("T")

_current_run: str = ""


@lru_cache(maxsize=4)
def _parse(text: str) -> tuple[tuple[str, str, str], ...]:
    out = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        spec, _, scope = item.partition("#")
        out.append((spec, scope, item))
    return tuple(out)


def set_run(run_id: str) -> None:
    global _current_run
    _current_run = run_id


def active(name: str, step: int | None = None) -> bool:
    """Is fault `name` (e.g. 'kill@step', 'kill@record_write') switched on here and now?"""
    text = os.environ.get("ARCHBENCH_FAULT")
    if not text:
        return False
    for spec, scope, _ in _parse(text):
        if scope and scope not in _current_run:
            continue
        if step is None:
            if spec == name:
                return True
        elif spec.startswith(name + ":"):
            try:
                if int(spec.split(":", 1)[1]) == step:
                    return True
            except ValueError:
                continue
    return False


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def hang() -> None:
    import time

    while True:
        time.sleep(3600)


def skip_restore(part: str) -> bool:
    return part in os.environ.get("ARCHBENCH_DEBUG_SKIP_RESTORE", "").split(",")


# --- the training step's fault points (kept out of the step body) ---------------------------------------


def before_step(step: int, resumes: int = 0) -> None:
    """kill@step: SIGKILL now (killonce@step: only in a run never resumed); hang@step: stop responding
    (hangonce@step: only in a run never resumed);
    term@step: SIGTERM to ourselves (the loop stops at the next boundary)."""
    if active("kill@step", step) or (resumes == 0 and active("killonce@step", step)):
        die()
    if active("hang@step", step) or (resumes == 0 and active("hangonce@step", step)):
        hang()
    if active("term@step", step):
        os.kill(os.getpid(), signal.SIGTERM)


def in_forward(step: int) -> None:
    """oom@step: an out-of-memory error where the forward pass would raise one."""
    if active("oom@step", step):
        import torch

        raise torch.cuda.OutOfMemoryError("injected out-of-memory (ARCHBENCH_FAULT)")


def on_loss(loss: T, step: int) -> T:
    """nan@step: the loss made non-finite (the loop must stop before the optimizer step)."""
    return loss * float("nan") if active("nan@step", step) else loss  # type: ignore[operator,return-value]
