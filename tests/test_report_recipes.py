"""The report by recipe (issue 27): a sweep whose runs differ by recipe is grouped by it, and the report says
whether the ranking of the other configurations holds under each recipe."""

from __future__ import annotations

import csv
from pathlib import Path

from archbench.report.analysis import ConfigSummary
from archbench.report.collect import Configuration
from archbench.report.recipes import ranking_verdict, rankings_by_recipe, swapped_pairs
from archbench.report.stats import Estimate
from helpers import cli
from test_recipes_train import recipe_sweep


def summary(recipe: str | None, model: str, top1: float) -> ConfigSummary:
    axes = {"recipe": recipe, "model.name": model} if recipe is not None else {"model.name": model}
    config = Configuration(f"{recipe}-{model}", f"{recipe} · {model}", Path("."), axes, model, "t")
    return ConfigSummary(config, [], metrics={"top1": Estimate(3, top1)})


def test_a_swap_between_recipes_is_named() -> None:
    summaries = [
        summary("basic", "resnet18", 0.90),
        summary("basic", "vit", 0.80),
        summary("basic", "cnn", 0.70),
        summary("strong", "vit", 0.93),
        summary("strong", "resnet18", 0.91),
        summary("strong", "cnn", 0.60),
    ]
    rankings = rankings_by_recipe(summaries)
    assert [r.recipe for r in rankings] == ["basic", "strong"]
    assert rankings[1].names == ["vit", "resnet18", "cnn"]
    assert swapped_pairs(rankings) == [("resnet18", "vit", "basic", "strong")]
    verdict = ranking_verdict(rankings)
    assert verdict.startswith("The ranking by mean top-1 changes between recipes (basic, strong): 1 pair(s)")
    assert "resnet18 above vit under basic, below it under strong" in verdict


def test_the_same_ranking_is_said_to_hold_and_ties_are_no_swap() -> None:
    same = [summary(r, m, acc + (0.05 if r == "strong" else 0)) for r in ("basic", "strong")
            for m, acc in (("a", 0.9), ("b", 0.8))]  # fmt: skip
    assert ranking_verdict(rankings_by_recipe(same)) == (
        "The ranking by mean top-1 is the same under every recipe (basic, strong): a > b."
    )
    tied = [summary("basic", "a", 0.9), summary("basic", "b", 0.9), summary("strong", "b", 0.9),
            summary("strong", "a", 0.8)]  # fmt: skip
    assert swapped_pairs(rankings_by_recipe(tied)) == []
    assert ranking_verdict(rankings_by_recipe(tied)).endswith(": a = b.")


def test_one_recipe_or_none_says_nothing() -> None:
    assert rankings_by_recipe([summary("strong", "a", 0.9), summary("strong", "b", 0.8)]) == []
    assert ranking_verdict(rankings_by_recipe([summary(None, "a", 0.9), summary(None, "b", 0.8)])) == ""


def test_a_recipe_sweep_report_groups_by_recipe(tmp_path: Path) -> None:
    grid = "grid: {recipe: [basic, strong], model.name: [tiny_cnn, simple_cnn]}\n"
    sweep = recipe_sweep(tmp_path, "", epochs=1, extra=grid)
    res = cli("run", str(sweep), "--set", "data.limit_per_class=30", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    out = tmp_path / "report"
    res = cli("report", str(tmp_path / "results" / "r"), "--out", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "By recipe" in md and "Configurations by recipe" in md
    assert "The ranking by mean top-1 " in md and "(basic, strong)" in md
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "The ranking by mean top-1 " in html
    with (out / "tables" / "by_recipe.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["recipe"], r["configuration"]) for r in rows) == [
        ("basic", "simple_cnn"), ("basic", "tiny_cnn"), ("strong", "simple_cnn"), ("strong", "tiny_cnn"),
    ]  # fmt: skip
    assert {r["rank"] for r in rows} == {"1", "2"}
