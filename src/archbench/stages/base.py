"""The stage base: owns the sequence every stage follows on one run (prepare → device → scoped threads →
compute), the context a stage sees, where a stage writes and how it saves a figure. Each stage (profile,
explain, map) supplies only what differs: its settings, its checks, its work and its sweep summary.

Device rule, the same for every stage: the stage's own `device` setting when it is given (a sweep file's
`profile.device` / `map.device`, a command's `--device`), else the device the caller resolved for the run
(the runner's, right after training), else the run's own `train.device`, resolved again. It is resolved
once per run, here, and handed to the stage.

Threads: the stage's own `threads` setting when given, else the run's `train.threads`, else left as they
are; whatever was set is restored when the stage is done with the run, so a later run in the same process
trains with its own setting. Importing this module imports no torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archbench.store.layout import RUNS_DIR, RunLayout, stage_dir, sweep_of

if TYPE_CHECKING:
    import torch

    from archbench.config import SweepConfig
    from archbench.store.record import RunRecord, StageIndex

FIGURE_DPI = 110


class StageSkip(Exception):
    """Raised by a stage when a run is not for it (wrong data kind) or is already up to date."""

    def __init__(self, reason: str, block: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.block = block


@dataclass
class StageContext:
    """One run as a stage sees it: its folder and record, the stage's settings, and what runs share."""

    run_dir: Path
    record: RunRecord
    settings: Any
    device: Any = None  # the device the caller resolved for this run (the runner's); None: none given
    shared: dict[str, Any] = field(default_factory=dict)  # lives for one driver call: datasets, scenes, ...

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir)

    @property
    def sweep_dir(self) -> Path:
        """The run's sweep folder (a loose run folder stands for its own sweep)."""
        return sweep_of(self.run_dir) or self.run_dir

    def bundle(self) -> Any:
        """The run's dataset, rebuilt and fingerprint-checked; one dataset is kept across runs."""
        from archbench.engine.artifacts import load_bundle

        key = self.record.data_fingerprint or self.record.run_id
        cache = self.shared.setdefault("bundles", {})
        if key not in cache:
            cache.clear()  # datasets can be large: keep one
            cache[key] = load_bundle(self.record)
        return cache[key]


class Stage:
    """A post-training stage. The driver (archbench.stages.run_stage) calls `block_for` on each completed
    run and `summarise` once per sweep; a stage overrides `settings`, `compute`, `summarise` and, when it
    has checks that need no device, `prepare`. A stage's settings may carry `device` and `threads`."""

    name: str = ""

    def settings(self, cfg: SweepConfig) -> Any | None:
        """The stage's settings from the sweep file's `<name>:` section; None: the stage is off."""
        raise NotImplementedError

    def prepare(self, ctx: StageContext) -> Any:
        """Checks and inputs that need no device (raise StageSkip to skip the run); given to `compute`."""
        return None

    def compute(self, ctx: StageContext, device: torch.device, prepared: Any) -> dict[str, Any]:
        """The run's record block."""
        raise NotImplementedError

    def summarise(self, sweep_dir: Path, settings: Any, shared: dict[str, Any]) -> StageIndex | None:
        """Redraw `<sweep>/stages/<name>/` from every run's block."""
        raise NotImplementedError

    def block_for(self, ctx: StageContext) -> dict[str, Any]:
        """The common sequence on one run: prepare, resolve the device, then compute with scoped threads."""
        prepared = self.prepare(ctx)
        device = stage_device(ctx)
        with scoped_threads(stage_threads(ctx)):
            return self.compute(ctx, device, prepared)


def stage_device(ctx: StageContext) -> torch.device:
    """The device rule (see the module docstring): the stage's setting, else the caller's, else the run's."""
    from archbench.engine.runtime import resolve_device

    given = getattr(ctx.settings, "device", None)
    if given is not None:
        return resolve_device(given)
    if ctx.device is not None:
        import torch

        return torch.device(ctx.device)
    return resolve_device(ctx.record.spec.train.device)


def stage_threads(ctx: StageContext) -> int | None:
    """The stage's `threads` setting, else the run's `train.threads` (None: leave them as they are)."""
    given = getattr(ctx.settings, "threads", None)
    return int(given) if given is not None else ctx.record.spec.train.threads


@contextmanager
def scoped_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to `threads` (when given) for the block, restored afterwards."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_folders(sweep_dir: Path) -> list[Path]:
    """Every run folder of a sweep (`<sweep>/runs/*/`), sorted; [] when it has no runs/ folder."""
    runs = Path(sweep_dir) / RUNS_DIR
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []


def stage_output(sweep_dir: Path, name: str) -> Path:
    """`<sweep>/stages/<name>/` (store.layout), created; refuses a symlink that leads out of the sweep."""
    from archbench.util.paths import safe_join

    path = stage_dir(sweep_dir, name)
    safe_join(Path(sweep_dir), *path.relative_to(sweep_dir).parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def pyplot() -> Any:
    """matplotlib.pyplot, headless (Agg): stage figures are files, never windows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, *, dpi: int = FIGURE_DPI, tight: bool = True) -> None:
    """Every stage figure is saved here: a PNG rendered in memory and written atomically (a reader sees
    the old file or the new one, never half), its folder created, the figure closed."""
    import io

    from archbench.util.paths import atomic_write_bytes

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    finally:
        pyplot().close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
