"""The tuning summary: owns `<sweep>/tune/summary.json` and the report's tuning section (stage index).

Per compared cell: the budget given and what was actually spent (trials by state, training epochs counted
from the trial runs' own records), the best trial and its parameters, the final run ids. The section in
`<sweep>/stages/tune/` (index.json, budget.csv, trials.csv, figures) is what `archbench report` embeds;
its `protocol` sentence is printed above the comparison table. Figures are matplotlib (Agg).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from archbench.config import SweepConfig
from archbench.store.layout import INDEX_NAME, RunLayout, SweepLayout
from archbench.store.record import read_record
from archbench.sweep.expand import PlannedRun, compared_axes
from archbench.tune import plan
from archbench.tune import study as studies
from archbench.util.paths import atomic_write_text

METRIC_WORDS = {"val_acc": "validation accuracy", "val_loss": "validation loss"}


def _epochs_of(run_dir: Path) -> int:
    """Epochs a trial run actually trained: its record's history, else its last checkpoint's (failed)."""
    rec = read_record(run_dir)
    if rec is not None and rec.history:
        return len(rec.history)
    last = RunLayout(run_dir).checkpoint("last")
    if not last.exists():
        return 0
    from archbench.store.checkpoint import load_latest

    state, _ = load_latest(last)
    return len(state["history"]) if state is not None else 0


def cell_summary(
    cfg: SweepConfig, root: Path, cell: PlannedRun, name: str, st: Any, finals: list[PlannedRun]
) -> dict[str, Any]:
    assert cfg.tune is not None
    spent = studies.spent_trials(st)
    by_state: dict[str, int] = {}
    for t in spent:
        by_state[t.state.name.lower()] = by_state.get(t.state.name.lower(), 0) + 1
    run_ids = sorted({str(t.user_attrs["run_id"]) for t in spent if "run_id" in t.user_attrs})
    epochs = sum(_epochs_of(SweepLayout(root).run_dir(rid)) for rid in run_ids)
    best = studies.best_trial(st)
    mine = [r for r in finals if (r.tune or {}).get("study") == name]
    return {
        "label": plan.cell_label(cell),
        "axes": cell.axes,
        "study": name,
        "budget": {"trials": cfg.tune.trials, "epochs": cfg.tune.epochs},
        "spent": {
            "trials": len(spent),
            "by_state": by_state,
            "distinct_runs": len(run_ids),  # a proposal equal to an earlier one reuses that trial's run
            "epochs": epochs,
            "abandoned_and_requeued": len(studies.abandoned(st)),
        },
        "best": None
        if best is None
        else {
            "trial": best.number,
            "value": best.value,
            "params": dict(best.params),
            "run_id": best.user_attrs.get("run_id"),
        },
        "final_runs": [r.run_id for r in mine],
        "trials": [
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value,
                "last_intermediate": (
                    t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
                ),
                "epochs": t.user_attrs.get("epochs"),
                "params": dict(t.params),
                "run_id": t.user_attrs.get("run_id"),
                "requeued_from": t.user_attrs.get("requeued_from"),
                "abandoned": t.number in studies.abandoned(st),
            }
            for t in st.get_trials(deepcopy=False)
        ],
    }


def protocol_sentence(cfg: SweepConfig, cells: list[dict[str, Any]]) -> str:
    assert cfg.tune is not None
    t = cfg.tune
    budget = f"{t.trials} Optuna trials" + (f" (at most {t.epochs} training epochs)" if t.epochs else "")
    pruner = {
        "median": "median pruning",
        "successive_halving": "successive-halving pruning",
        "none": "no pruning",
    }
    seeds = ", ".join(str(s) for s in t.seeds)
    return (
        f"Protocol: each of the {len(cells)} compared configurations ({', '.join(compared_axes(cfg))}) was "
        f"tuned with the same budget of {budget}, TPE sampling and {pruner[t.pruner]} on the per-epoch "
        f"{METRIC_WORDS[t.metric]}, never looking at the test split; its best configuration "
        f"was then trained with seeds {seeds} and evaluated once on the test split, and the comparison "
        "tables use those final runs only."
    )


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue()


def _fmt(v: Any) -> Any:
    return f"{v:.4g}" if isinstance(v, float) else v


def write_summary(
    cfg: SweepConfig,
    root: Path,
    cells: list[PlannedRun],
    names: list[str],
    opened: list[Any],
    finals: list[PlannedRun],
) -> dict[str, Any]:
    """Write summary.json and the tuning section (index.json, CSVs, figures); return the summary."""
    assert cfg.tune is not None
    per_cell = [
        cell_summary(cfg, root, c, n, st, finals) for c, n, st in zip(cells, names, opened, strict=True)
    ]
    trials_spent = {c["spent"]["trials"] for c in per_cell}
    cap = cfg.tune.epochs
    equal = len(trials_spent) == 1 and (cap is None or all(c["spent"]["epochs"] <= cap for c in per_cell))
    summary = {
        "archbench_tune": 1,
        "metric": cfg.tune.metric,
        "pruner": cfg.tune.pruner,
        "seeds": cfg.tune.seeds,
        "compare": compared_axes(cfg),
        "space": {k: v.model_dump(exclude_none=True) for k, v in cfg.tune.space.items()},
        "storage": str(studies.storage_path(cfg, root)),
        "equal_budget": equal,
        "protocol": protocol_sentence(cfg, per_cell),
        "cells": per_cell,
    }
    layout = SweepLayout(root)
    layout.tune.mkdir(parents=True, exist_ok=True)
    atomic_write_text(layout.tune_summary, json.dumps(summary, indent=2, default=str))
    write_section(layout.stage_dir("tune"), summary)
    return summary


def write_section(out: Path, summary: dict[str, Any]) -> None:
    """The report's tuning section: budget and trial tables, history and importance figures, index.json."""
    out.mkdir(parents=True, exist_ok=True)
    cells = summary["cells"]
    budget_rows = []
    trial_rows = []
    for c in cells:
        best = c["best"] or {}
        budget_rows.append(
            {
                "configuration": c["label"],
                "trials budget": c["budget"]["trials"],
                "trials spent": c["spent"]["trials"],
                "distinct runs": c["spent"]["distinct_runs"],
                **{f"{k}": v for k, v in sorted(c["spent"]["by_state"].items())},
                "epochs spent": c["spent"]["epochs"],
                "epochs budget": c["budget"]["epochs"] or "",
                "requeued": c["spent"]["abandoned_and_requeued"],
                f"best {summary['metric']}": _fmt(best.get("value")),
                "best trial": best.get("trial", ""),
                "best params": "; ".join(f"{k}={_fmt(v)}" for k, v in (best.get("params") or {}).items()),
                "final runs": len(c["final_runs"]),
            }
        )
        for t in c["trials"]:
            trial_rows.append(
                {
                    "configuration": c["label"],
                    "trial": t["number"],
                    "state": "abandoned (requeued)" if t["abandoned"] else t["state"],
                    summary["metric"]: _fmt(t["value"]),
                    "epochs": t["epochs"] if t["epochs"] is not None else "",
                    **{k: _fmt(v) for k, v in t["params"].items()},
                    "run_id": t["run_id"] or "",
                }
            )
    atomic_write_text(out / "budget.csv", _csv(budget_rows))
    atomic_write_text(out / "trials.csv", _csv(trial_rows))
    figures = []
    notes = [
        "Budget per compared configuration: trials and training epochs actually spent, counted from the "
        "trial runs' own records (a trial abandoned by a killed process is requeued with the same "
        "parameters and resumes its run; it is counted once)."
        + ("" if summary["equal_budget"] else " WARNING: the configurations did not get equal budgets.")
    ]
    if _history_figure(out / "optimisation_history.png", cells, summary["metric"]):
        figures.append(
            {
                "path": "optimisation_history.png",
                "caption": "Optimisation history per configuration: "
                f"{METRIC_WORDS[summary['metric']]} of each trial (pruned trials at their last reported "
                "epoch) and the best so far.",
            }
        )
    importances, problems = _importances(summary)
    if importances and _importance_figure(out / "param_importances.png", importances):
        figures.append(
            {
                "path": "param_importances.png",
                "caption": "Hyper-parameter importances per configuration "
                "(optuna.importance.get_param_importances, fANOVA over completed trials).",
            }
        )
    notes += problems
    index = {
        "title": "Tuning",
        "protocol": summary["protocol"],
        "notes": notes,
        "figures": figures,
        "tables": [
            {"title": "Tuning budget and best parameters", "csv": "budget.csv"},
            {"title": "Tuning trials", "csv": "trials.csv"},
        ],
    }
    atomic_write_text(out / INDEX_NAME, json.dumps(index, indent=2, default=str))


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _history_figure(path: Path, cells: list[dict[str, Any]], metric: str) -> bool:
    if not any(c["trials"] for c in cells):
        return False
    plt = _plt()
    n = len(cells)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, sharey=True)
    flat = list(axes.ravel())
    maximize = metric == "val_acc"
    for ax, c in zip(flat, cells, strict=False):
        done = [t for t in c["trials"] if not t["abandoned"]]
        xs_c = [t["number"] for t in done if t["state"] == "complete" and t["value"] is not None]
        ys_c = [t["value"] for t in done if t["state"] == "complete" and t["value"] is not None]
        xs_p = [t["number"] for t in done if t["state"] == "pruned" and t["last_intermediate"] is not None]
        ys_p = [
            t["last_intermediate"]
            for t in done
            if t["state"] == "pruned" and t["last_intermediate"] is not None
        ]
        ax.plot(xs_c, ys_c, "o", color="black", label="complete")
        ax.plot(xs_p, ys_p, "x", color="0.45", label="pruned")
        best_x, best_y, cur = [], [], None
        for x, y in sorted(zip(xs_c, ys_c, strict=True)):
            cur = y if cur is None else (max(cur, y) if maximize else min(cur, y))
            best_x.append(x)
            best_y.append(cur)
        last = max((t["number"] for t in done), default=None)
        if best_x and last is not None and last > best_x[-1]:
            best_x.append(last)
            best_y.append(best_y[-1])
        if best_x:
            ax.step(best_x, best_y, where="post", color="black", linewidth=1.2, label="best so far")
        ax.set_title(str(c["label"]), fontsize=9)
        ax.set_xlabel("trial")
        ax.grid(alpha=0.3)
    flat[0].set_ylabel(METRIC_WORDS[metric])
    flat[0].legend(fontsize=7)
    for ax in flat[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _importances(summary: dict[str, Any]) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Per cell, Optuna's parameter importances (needs a few completed trials); problems as notes."""
    import optuna

    out: dict[str, dict[str, float]] = {}
    problems = []
    for c in summary["cells"]:
        try:
            st = optuna.load_study(study_name=c["study"], storage=studies.open_storage(summary["storage"]))
            out[str(c["label"])] = dict(optuna.importance.get_param_importances(st))
        except (ValueError, RuntimeError) as exc:
            problems.append(f"{c['label']}: no parameter importances ({exc})")
    return out, problems


def _importance_figure(path: Path, importances: dict[str, dict[str, float]]) -> bool:
    plt = _plt()
    n = len(importances)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 2.6), squeeze=False)
    for ax, (label, imp) in zip(axes.ravel(), importances.items(), strict=True):
        keys = list(imp)[::-1]
        ax.barh(keys, [imp[k] for k in keys], color="0.35")
        ax.set_xlim(0, 1)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("importance")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
