"""Rankings by training recipe: owns whether a sweep's ranking holds under each recipe (`recipe` grid axis).

Pure: from the analysis' configuration summaries (records only) to one ranking per recipe and the sentence
that says whether the rankings agree, naming the pairs that swap. Knows nothing of tables or formats.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

from archbench.report.analysis import Analysis, ConfigSummary


@dataclass(frozen=True)
class RecipeRanking:
    """One recipe's configurations, best mean top-1 first; `names` are their labels without the recipe."""

    recipe: str
    summaries: list[ConfigSummary]
    names: list[str]
    ranks: list[int]  # equal means share a rank (1, 2, 2, 4)


def recipe_of(s: ConfigSummary) -> str | None:
    """The recipe a configuration trained with: its grid axis, else its spec's `recipe` (None: none)."""
    value = s.config.axes.get("recipe", (s.config.spec or {}).get("recipe"))
    return None if value is None else str(value)


def name_without_recipe(s: ConfigSummary) -> str:
    """The configuration's label from its other grid values (the model alone when there are none)."""
    parts = [str(v) for k, v in s.config.axes.items() if k not in ("recipe", "seed")]
    return " · ".join(parts) if parts else s.config.model


def rankings_by_recipe(summaries: list[ConfigSummary]) -> list[RecipeRanking]:
    """One ranking per recipe, recipes in the order first seen in `summaries`; empty unless the
    configurations span two recipes or more (a configuration without a recipe counts as recipe `none`)."""
    groups: dict[str, list[ConfigSummary]] = {}
    for s in summaries:
        groups.setdefault(recipe_of(s) or "none", []).append(s)
    if len(groups) < 2:
        return []
    out = []
    for recipe, members in groups.items():
        ordered = sorted(members, key=lambda s: -(s.top1.mean if s.top1.mean is not None else -1.0))
        ranks: list[int] = []
        for i, s in enumerate(ordered):
            tied = i > 0 and ordered[i - 1].top1.mean == s.top1.mean
            ranks.append(ranks[-1] if tied else i + 1)
        out.append(RecipeRanking(recipe, ordered, [name_without_recipe(s) for s in ordered], ranks))
    return out


def swapped_pairs(rankings: list[RecipeRanking]) -> list[tuple[str, str, str, str]]:
    """(x, y, recipe where x ranks above y, recipe where y ranks above x) for every pair of names ranked
    in opposite strict order under two recipes; ties never count as a swap. Names in both rankings only."""
    out = []
    seen: set[tuple[str, str]] = set()
    for r1, r2 in combinations(rankings, 2):
        rank1, rank2 = dict(zip(r1.names, r1.ranks, strict=True)), dict(zip(r2.names, r2.ranks, strict=True))
        shared = [n for n in r1.names if n in rank2]
        for x, y in combinations(shared, 2):
            pair = (x, y) if rank1[x] < rank1[y] else (y, x)
            if (rank1[x] - rank1[y]) * (rank2[x] - rank2[y]) < 0 and pair not in seen:
                seen.add(pair)
                out.append((pair[0], pair[1], r1.recipe, r2.recipe))
    return out


def ranking_verdict(rankings: list[RecipeRanking]) -> str:
    """In words: whether the ranking (by mean top-1 over seeds) is the same under every recipe, or which
    pairs swap between which recipes. Empty when there is only one recipe."""
    if not rankings:
        return ""
    recipes = ", ".join(r.recipe for r in rankings)
    swaps = swapped_pairs(rankings)
    if not swaps:
        first = rankings[0]
        order = first.names[0] + "".join(
            f" {'=' if rank == before else '>'} {name}"
            for name, rank, before in zip(first.names[1:], first.ranks[1:], first.ranks[:-1], strict=True)
        )
        return f"The ranking by mean top-1 is the same under every recipe ({recipes}): {order}."
    listed = "; ".join(f"{x} above {y} under {a}, below it under {b}" for x, y, a, b in swaps)
    return (
        f"The ranking by mean top-1 changes between recipes ({recipes}): {len(swaps)} pair(s) swap "
        f"({listed})."
    )


def recipe_rankings(a: Analysis) -> list[RecipeRanking]:
    """The analysis' rankings by recipe, recipes in the order the sweep planned them (its grid's)."""
    planned = {c.key: i for i, c in enumerate(a.data.configs)}
    return rankings_by_recipe(sorted(a.summaries, key=lambda s: planned.get(s.config.key, len(planned))))


def recipe_verdict(a: Analysis) -> str:
    """`ranking_verdict` of the analysis' rankings by recipe ("" unless they span two recipes)."""
    return ranking_verdict(recipe_rankings(a))
