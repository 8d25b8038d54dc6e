"""Progress display of a running sweep: owns the terminal bars and the plain timestamped log lines.

On a terminal: rich progress bars. Anywhere else (a file, a pipe, CI, nohup): one flushed, timestamped line
at a steady cadence (every `every` seconds) with run, epoch, step/total, loss, accuracy, img/s and ETA,
plus one line when a run starts, resumes and ends. Both implement the runner's `Reporter` protocol and
never decide anything: they only show what the runner and the trainer report.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

from archbench.util.terminal import literal, one_line

PROGRESS_ENV = "ARCHBENCH_PROGRESS_EVERY"
DEFAULT_EVERY = 10.0


def progress_every(option: float | None) -> float:
    """Seconds between plain progress lines: the CLI option, else $ARCHBENCH_PROGRESS_EVERY, else 10."""
    if option is not None:
        return max(0.0, option)
    raw = os.environ.get(PROGRESS_ENV, "").strip()
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            pass
    return DEFAULT_EVERY


def fmt_duration(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def resumed_line(planned: Any, epoch: int, step: int) -> str:
    """`resumed <run_id> from epoch k, step s`: the epoch it continues in (1-based) and the steps done."""
    return f"resumed {planned.run_id} from epoch {epoch}, step {step}"


def axes_text(planned: Any) -> str:
    """`model.name=resnet18, train.lr=0.05`: the grid values that tell this run from the sweep's others."""
    axes = getattr(planned, "axes", None) or {}
    return ", ".join(f"{k}={v}" for k, v in axes.items())


def run_label(planned: Any, index: int, total: int) -> str:
    """`run 2/4 <run_id> (model.name=resnet18, train.lr=0.05)`: which run a progress line or bar is about."""
    axes = axes_text(planned)
    return f"run {index}/{total} {planned.run_id}" + (f" ({axes})" if axes else "")


def finished_line(planned: Any, outcome: str, record: Any) -> str:
    """`trained  <run_id>  top-1 … F1 … train …s` or `failed   <run_id>  reason: <reason>: <fix>`."""
    line = f"{outcome:8s} {planned.run_id}"
    node = (record.host or {}).get("ray_node") if record is not None else None
    if node and outcome != "skipped":
        line += f"  [node {node}]"
    if record is not None and record.metrics is not None:
        m = record.metrics
        line += f"  top-1 {m.top1:.4f}  F1 {m.f1_macro:.4f}  train {record.train_seconds or 0:.1f}s"
    elif (
        record is not None and record.history and (getattr(record, "tune", None) or {}).get("role") == "trial"
    ):
        best = max(h.val_acc for h in record.history)
        line += f"  trial {record.tune['trial']}: best val_acc {best:.4f} after {len(record.history)} epochs"
    elif record is not None and record.failure_reason:
        line += f"  reason: {record.failure_reason}"
        if record.failure_detail and record.failure_reason != "killed":
            line += f": {one_line(record.failure_detail)}"
    return line


class _RunClock:
    """Fraction of a run done and its ETA from the batches seen in this process (resume-aware)."""

    def __init__(self, epochs: int, clock: Callable[[], float]) -> None:
        self.epochs = max(1, epochs)
        self.clock = clock
        self.t0 = clock()
        self.frac0: float | None = None
        self.frac = 0.0

    def update(self, epoch: int, done: int, total: int) -> None:
        self.frac = min(1.0, (epoch + done / max(1, total)) / self.epochs)
        if self.frac0 is None:
            # Measure from the first batch this process saw (a resumed run starts part-way through).
            self.frac0 = self.frac
            self.t0 = self.clock()

    def eta(self) -> float | None:
        if self.frac0 is None or self.frac <= self.frac0:
            return None
        rate = (self.clock() - self.t0) / (self.frac - self.frac0)
        return rate * (1.0 - self.frac)


class PlainReporter:
    """Timestamped progress lines for logs: written and flushed at most every `every` seconds."""

    def __init__(
        self,
        stream: TextIO | None = None,
        every: float = DEFAULT_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.every = every
        self.clock = clock
        self.last = -float("inf")
        self.total_runs = 0
        self.index = 0
        self.run_id = ""
        self.run: _RunClock | None = None

    def __enter__(self) -> PlainReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.flush()

    def _emit(self, text: str) -> None:
        stamp = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
        self.stream.write(f"{stamp} {literal(text)}\n")
        self.stream.flush()
        self.last = self.clock()

    def _due(self) -> bool:
        return self.clock() - self.last >= self.every

    def _prefix(self) -> str:
        return f"run {self.index}/{self.total_runs} {self.run_id}"

    def sweep_started(self, total: int, todo: int) -> None:
        self.total_runs = total
        self._emit(f"sweep: {total} runs, {total - todo} already done, {todo} to train")

    def run_started(self, planned: Any, index: int, total: int, epochs: int) -> None:
        self.index, self.total_runs, self.run_id = index + 1, total, planned.run_id
        self.run = _RunClock(epochs, self.clock)
        axes = axes_text(planned)
        self._emit(f"{self._prefix()} started: {epochs} epochs" + (f" ({axes})" if axes else ""))

    def run_resumed(self, planned: Any, epoch: int, step: int) -> None:
        self._emit(resumed_line(planned, epoch, step))

    def batch(self, epoch: int, done: int, total: int, loss: float, acc: float, ips: float) -> None:
        if self.run is None:
            return
        self.run.update(epoch, done, total)
        if not self._due():
            return
        eta = self.run.eta()
        self._emit(
            f"{self._prefix()} epoch {epoch + 1}/{self.run.epochs} step {done}/{total} "
            f"loss {loss:.4f} acc {acc:.4f} {ips:.0f} img/s "
            f"ETA {fmt_duration(eta) if eta is not None else '?'}"
        )

    def epoch(self, stats: dict[str, Any]) -> None:
        if self.run is None or not self._due():
            return
        eta = self.run.eta()
        self._emit(
            f"{self._prefix()} epoch {stats['epoch']}/{self.run.epochs} done: "
            f"train loss {stats['train_loss']:.4f} acc {stats['train_acc']:.4f}, "
            f"val loss {stats['val_loss']:.4f} acc {stats['val_acc']:.4f}, "
            f"{stats['images_per_s']:.0f} img/s ETA {fmt_duration(eta) if eta is not None else '?'}"
        )

    def run_finished(self, planned: Any, outcome: str, record: Any) -> None:
        self.run = None
        self._emit(finished_line(planned, outcome, record))


class RichReporter:
    """Progress bars: runs done/total, and batches within the current epoch with loss, accuracy, img/s.

    The batch bar names its run (`run 2/4 <run_id> epoch 1/2`), and a line above the bars says when a run
    starts, with the grid values that tell it apart, so a bar is never anonymous."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}", markup=False),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.runs_task: Any = None
        self.batch_task: Any = None
        self.epochs = 0
        self.run_name = ""

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def sweep_started(self, total: int, todo: int) -> None:
        self.runs_task = self.progress.add_task(
            "runs of the sweep", total=total, info=f"{total - todo} already done"
        )

    def run_started(self, planned: Any, index: int, total: int, epochs: int) -> None:
        self.epochs = epochs
        self.run_name = f"  run {index + 1}/{total} {planned.run_id}"
        self.progress.console.print(
            literal(f"{run_label(planned, index + 1, total)} started: {epochs} epochs"),
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        if self.batch_task is not None:
            self.progress.remove_task(self.batch_task)
        self.batch_task = self.progress.add_task(f"{self.run_name} epoch 1/{epochs}", total=1, info="")

    def run_resumed(self, planned: Any, epoch: int, step: int) -> None:
        self.progress.console.print(
            literal(resumed_line(planned, epoch, step)), highlight=False, markup=False, soft_wrap=True
        )

    def batch(self, epoch: int, done: int, total: int, loss: float, acc: float, ips: float) -> None:
        self.progress.update(
            self.batch_task,
            description=f"{self.run_name} epoch {epoch + 1}/{self.epochs}",
            completed=done,
            total=total,
            info=f"loss {loss:.3f} acc {acc:.3f} {ips:.0f} img/s",
        )

    def epoch(self, stats: dict[str, Any]) -> None:
        pass

    def run_finished(self, planned: Any, outcome: str, record: Any) -> None:
        self.progress.advance(self.runs_task)
        self.progress.console.print(
            literal(finished_line(planned, outcome, record)), highlight=False, markup=False, soft_wrap=True
        )


def make_reporter(console: Any, every: float | None = None) -> PlainReporter | RichReporter:
    """Bars on a terminal; plain timestamped lines when the output goes to a file or a pipe."""
    if console.is_terminal:
        return RichReporter(console)
    return PlainReporter(console.file, every=progress_every(every))
