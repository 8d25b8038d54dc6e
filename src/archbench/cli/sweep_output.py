"""What `archbench run` prints besides progress and the results table: the planned runs of a dry run, a
tuning plan, and the closing summary of a sweep. Printing only; the caller passes its console."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from archbench.store.layout import SweepLayout
from archbench.util.terminal import literal, one_line

if TYPE_CHECKING:
    from archbench.execution.types import SweepSummary

DRY_RUN_TABLE_ROWS = 50  # a terminal shows this many planned runs as a table; a pipe gets them all


def print_dry_run(console: Console, cfg: Any, runs: list[Any], root: Path) -> None:
    """The resolved paths, then the planned runs: a rich table of the first rows on a terminal, plain
    tab-separated text otherwise (rendering a 10,000-row rich table took most of a dry run's time)."""
    from archbench.sweep.expand import describe_paths

    axes_keys = list(cfg.grid)
    title = literal(f"{cfg.name}: {len(runs)} runs → {SweepLayout(root).runs}/")
    paths = [literal(line) for line in describe_paths(cfg)]
    if not console.is_terminal:
        lines = [title, *paths, "\t".join(["#", "run id", *axes_keys])]
        lines += [
            "\t".join([str(i), r.run_id, *(literal(r.axes[k]) for k in axes_keys)])
            for i, r in enumerate(runs, 1)
        ]
        sys.stdout.write("\n".join(lines) + f"\n{len(runs)} runs\n")
        return
    if paths:
        console.print("\n".join(paths), soft_wrap=True)
    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("run id")
    for k in axes_keys:
        table.add_column(k)
    for i, r in enumerate(runs[:DRY_RUN_TABLE_ROWS], 1):
        table.add_row(str(i), r.run_id, *(literal(r.axes[k]) for k in axes_keys))
    console.print(table)
    more = len(runs) - DRY_RUN_TABLE_ROWS
    tail = f" ({more} more not shown; pipe the output to a file for all of them)" if more > 0 else ""
    console.print(f"{len(runs)} runs{tail}", highlight=False)


def _some(ids: list[str], n: int = 5) -> str:
    more = f" and {len(ids) - n} more" if len(ids) > n else ""
    return ", ".join(ids[:n]) + more


def print_plan_change(console: Console, root: Path, runs: list[Any]) -> None:
    """One line when the sweep folder already has a plan and this one differs: which runs it adds and which
    it no longer plans (they stay, listed by `ls --all`); nothing when the plan is new or unchanged."""
    from archbench.store.plans import plan_change

    change = plan_change(root, [r.run_id for r in runs])
    if not change.changed:
        return
    parts = []
    if change.added:
        parts.append(f"adds {len(change.added)} run(s) ({_some(change.added)})")
    if change.dropped:
        parts.append(
            f"no longer plans {len(change.dropped)} ({_some(change.dropped)}; kept, "
            f"`archbench ls --all {root}` lists them)"
        )
    console.print(literal(f"plan of {root} changed: this sweep " + " and ".join(parts)), soft_wrap=True)


def print_waiting(console: Console, held: list[Any]) -> None:
    """--wait: the runs this sweep now waits for (held by other live processes)."""
    ids = [r.run_id for r in held]
    console.print(
        literal(f"waiting for {len(ids)} run(s) held by other processes: {_some(ids)} (Ctrl-C stops)"),
        soft_wrap=True,
    )


def print_sweep_summary(console: Console, cfg: Any, total: int, summary: SweepSummary) -> None:
    """After the results table: the outcome counts, runs per node, tracking left to sync, and why each run
    failed or was left busy."""
    parts = [
        f"{summary.count(k)} {k}"
        for k in ("trained", "skipped", "failed", "killed", "busy")
        if summary.count(k)
    ]
    console.print(literal(f"sweep {cfg.name}: {total} runs: " + ", ".join(parts)), soft_wrap=True)
    per_node: dict[str, int] = {}
    for rid, node in summary.nodes.items():
        if summary.outcomes.get(rid) != "skipped":
            per_node[node] = per_node.get(node, 0) + 1
    if per_node:
        console.print(
            literal("runs per node: " + ", ".join(f"{n}: {c}" for n, c in sorted(per_node.items()))),
            soft_wrap=True,
        )
    if cfg.tracking is not None and cfg.tracking.mlflow is not None:
        _print_tracking_behind(console, summary.sweep_dir, cfg.tracking.mlflow)
    for rid, reason in summary.reasons.items():
        if summary.outcomes.get(rid) == "failed":
            console.print(literal(f"  failed {rid}: {one_line(reason)}"), soft_wrap=True)
        elif summary.outcomes.get(rid) == "busy":
            console.print(
                literal(f"  busy {rid}: {reason}; another process is working on it, re-run when it is done"),
                soft_wrap=True,
            )


def _print_tracking_behind(console: Console, sweep_dir: Path, spec: Any) -> None:
    """Which runs the MLflow server has not received yet, and the command that sends them."""
    from archbench.tracking import outbox, sync_command

    behind = sorted({e["run_id"] for e in outbox.entries(sweep_dir)})
    if behind:
        console.print(
            literal(
                f"tracking: {len(behind)} run(s) not yet in MLflow (listed in "
                f"{sweep_dir / outbox.OUTBOX_NAME}); when the server is back run: "
                f"{sync_command(sweep_dir, spec)}"
            ),
            soft_wrap=True,
        )


def print_tune_plan(console: Console, cfg: Any, cells: list[Any]) -> None:
    from archbench.sweep.expand import compared_axes, describe_paths, sweep_dir

    t = cfg.tune
    axes = compared_axes(cfg)
    lines = [f"{cfg.name}: tune {len(cells)} compared cells → {sweep_dir(cfg)}/", *describe_paths(cfg)]
    for i, r in enumerate(cells, 1):
        lines.append(f"{i:>4}  " + "  ".join(f"{k}={r.axes.get(k)}" for k in axes))
    console.print(literal("\n".join(lines)), soft_wrap=True)
    space = ", ".join(f"{k} ({p.type})" for k, p in t.space.items())
    epochs = f", at most {t.epochs} epochs" if t.epochs else ""
    if t.parallel > 1:  # the local executor trains one run at a time
        ray = cfg.executor.kind == "ray"
        epochs += f", up to {t.parallel} at once" if ray else ", one at a time (tune.parallel needs ray)"
    console.print(
        literal(
            f"phase 1: {t.trials} trials per cell{epochs} over {space}; {t.metric} on val, "
            f"pruner {t.pruner}\n"
            f"phase 2: the best of each cell with seeds {t.seeds}, evaluated on test "
            f"({len(cells) * (t.trials + len(t.seeds))} runs at most)"
        ),
        soft_wrap=True,
    )
