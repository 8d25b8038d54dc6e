"""The numbers behind every comparison: owns confidence intervals, McNemar, Holm and the bootstrap.

Pure functions on arrays and plain data; reads no file and draws nothing. Accuracies are fractions here;
tables turn them into percentages.

Two sources of noise, two tools. McNemar's exact test asks whether two models' errors differ on this
test set (paired by example). The t-interval over seeds asks whether the difference survives retraining.
With one seed, the bootstrap over test examples is all there is, and the report says so.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from archbench.metrics import holm, mcnemar_p_values

ALPHA = 0.05  # family-wise error rate for the Holm correction; 95% intervals
BOOTSTRAP_SAMPLES = 10_000
BOOTSTRAP_SEED = 0  # fixed: the same records always give the same report


@dataclass(frozen=True)
class Estimate:
    """A mean over runs with its spread; the interval's method is "t", "bootstrap" or "" (none)."""

    n: int
    mean: float | None
    std: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    ci_method: str = ""

    @property
    def excludes_zero(self) -> bool:
        return self.ci_low is not None and self.ci_high is not None and (self.ci_low > 0 or self.ci_high < 0)


def t_estimate(
    values: Sequence[float | None], bounds: tuple[float, float] = (-math.inf, math.inf)
) -> Estimate:
    """Mean, sample std and the 95% t-interval (n-1 degrees of freedom); None values are left out.

    `bounds` clips the interval to the metric's range (an accuracy CI never exceeds 100%).
    """
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return Estimate(0, None)
    mean = math.fsum(xs) / n
    if n == 1:
        return Estimate(1, mean)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = _t_quantile(n - 1) * std / math.sqrt(n)
    lo, hi = max(bounds[0], mean - half), min(bounds[1], mean + half)
    return Estimate(n, mean, std, lo, hi, "t")


@functools.lru_cache(maxsize=256)
def _t_quantile(df: int) -> float:
    """The two-sided 95% t quantile (cached: a report asks for the same few degrees of freedom thousands
    of times)."""
    from scipy.special import stdtrit  # scipy.special: a third of scipy.stats' import time

    return float(stdtrit(df, 1 - ALPHA / 2))


def bootstrap_accuracy(
    correct: Any, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
) -> Estimate:
    """Percentile bootstrap over test examples of one run's accuracy.

    Resampling n Bernoulli outcomes with replacement and counting successes is a Binomial(n, p̂) draw, so
    the bootstrap is drawn exactly without materialising n×samples indices.
    """
    import numpy as np

    c = np.asarray(correct, dtype=bool)
    n = int(c.size)
    if n == 0:
        return Estimate(0, None)
    p = float(c.mean())
    draws = np.random.default_rng(seed).binomial(n, p, size=samples) / n
    lo, hi = np.quantile(draws, [ALPHA / 2, 1 - ALPHA / 2])
    return Estimate(1, p, None, float(lo), float(hi), "bootstrap")


def bootstrap_paired_difference(
    correct_a: Any, correct_b: Any, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
) -> Estimate:
    """Percentile bootstrap over test examples of acc(A) - acc(B) for two runs scored on the same examples.

    Each example contributes +1 (only A right), -1 (only B right) or 0; resampling examples is a multinomial
    draw over those three counts.
    """
    import numpy as np

    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    n = int(a.size)
    if n == 0:
        return Estimate(0, None)
    plus, minus = int(np.sum(a & ~b)), int(np.sum(~a & b))
    probs = [plus / n, minus / n, (n - plus - minus) / n]
    counts = np.random.default_rng(seed).multinomial(n, probs, size=samples)
    draws = (counts[:, 0] - counts[:, 1]) / n
    lo, hi = np.quantile(draws, [ALPHA / 2, 1 - ALPHA / 2])
    return Estimate(1, (plus - minus) / n, None, float(lo), float(hi), "bootstrap")


@dataclass(frozen=True)
class McNemar:
    """b: examples only A got right; c: only B got right; exact two-sided p from Binomial(b+c, 1/2)."""

    b: int
    c: int
    p_value: float


def mcnemar_from_counts(b: int, c: int) -> McNemar:
    return McNemar(b, c, float(mcnemar_p_values([b], [c])[0]))


def mcnemar_exact(y_true: Any, pred_a: Any, pred_b: Any) -> McNemar:
    """McNemar's exact test on two classifiers' predictions for the same test examples."""
    import numpy as np

    y, a, b = np.asarray(y_true), np.asarray(pred_a), np.asarray(pred_b)
    if not (y.shape == a.shape == b.shape):
        raise ValueError(f"prediction shapes differ: y_true {y.shape}, A {a.shape}, B {b.shape}")
    ra, rb = a == y, b == y
    return mcnemar_from_counts(int(np.sum(ra & ~rb)), int(np.sum(~ra & rb)))


@dataclass
class SeedTest:
    seed: int
    run_a: str
    run_b: str
    test: McNemar
    diff: float  # acc(A) - acc(B) on this seed
    p_holm: float = 1.0
    fold: int | None = None  # the spatial k-fold's fold both runs tested on (None: not a k-fold)


@dataclass
class PairComparison:
    """Configuration A (the better ranked) against B on the same test set, paired by seed."""

    a: int  # indices into the configuration list
    b: int
    seed_tests: list[SeedTest] = field(default_factory=list)
    diff: Estimate = field(default_factory=lambda: Estimate(0, None))
    pooled: McNemar | None = None
    p_holm: float | None = None
    note: str = ""

    @property
    def significant(self) -> bool:
        return self.p_holm is not None and self.p_holm < ALPHA

    @property
    def verdict(self) -> str:
        if self.pooled is None:
            return "not compared"
        if not self.significant:
            return "no significant difference"
        if self.diff.excludes_zero:
            return "A better" if (self.diff.mean or 0) > 0 else "B better"
        return "differs on this test set, not consistently across seeds"


def compare_pair(a: int, b: int, paired: list[tuple[int, str, str, Any, Any, Any]]) -> PairComparison:
    """`paired`: (seed, run_a, run_b, y_true, pred_a, pred_b) for each seed both configurations completed."""
    return compare_pairs([(a, b, paired)])[0]


def compare_pairs(
    items: list[tuple[int, int, list[tuple[int, str, str, Any, Any, Any]]]],
) -> list[PairComparison]:
    """`compare_pair` for many pairs at once: the exact p-values of every seed test and every pooled test
    come from two vectorised calls (a report of 100 configurations has ~5,000 pairs)."""
    import numpy as np

    outs: list[PairComparison] = []
    counts: list[tuple[int, int]] = []  # per-seed (b, c), in the order of the seed tests
    for a, b, paired in items:
        out = PairComparison(a, b)
        outs.append(out)
        if not paired:
            out.note = "no seed completed by both"
            continue
        tests: list[SeedTest] = []
        corrects = []
        for seed, run_a, run_b, y, pa, pb in paired:
            y, pa, pb = np.asarray(y), np.asarray(pa), np.asarray(pb)
            if y.shape != pa.shape or y.shape != pb.shape:
                out.note = f"seed {seed}: prediction files of different lengths"
                tests = []
                break
            ra, rb = pa == y, pb == y
            corrects.append((ra, rb))
            nb, nc = int(np.count_nonzero(ra & ~rb)), int(np.count_nonzero(~ra & rb))
            tests.append(SeedTest(seed, run_a, run_b, McNemar(nb, nc, 1.0), (nb - nc) / y.size))
        if not tests:
            continue
        out.seed_tests = tests
        counts += [(t.test.b, t.test.c) for t in tests]
        # Stratified exact test: under H0 every discordant example is a fair coin in every seed, so the
        # pooled discordant counts are Binomial(sum b + sum c, 1/2).
        out.pooled = McNemar(sum(t.test.b for t in tests), sum(t.test.c for t in tests), 1.0)
        if len(tests) == 1:
            out.diff = bootstrap_paired_difference(*corrects[0])
        else:
            out.diff = t_estimate([t.diff for t in tests], bounds=(-1.0, 1.0))
    seed_p = mcnemar_p_values([c[0] for c in counts], [c[1] for c in counts]) if counts else []
    pooled = [o for o in outs if o.pooled is not None]
    pooled_p = (
        mcnemar_p_values([o.pooled.b for o in pooled if o.pooled], [o.pooled.c for o in pooled if o.pooled])
        if pooled
        else []
    )
    k = 0
    for o in outs:
        if o.pooled is None:
            continue
        for n, t in enumerate(o.seed_tests):
            o.seed_tests[n] = SeedTest(
                t.seed, t.run_a, t.run_b, McNemar(t.test.b, t.test.c, float(seed_p[k])), t.diff
            )
            k += 1
    for o, p in zip(pooled, pooled_p, strict=True):
        assert o.pooled is not None
        o.pooled = McNemar(o.pooled.b, o.pooled.c, float(p))
    return outs


def apply_holm(comparisons: list[PairComparison]) -> None:
    """Holm over the configuration pairs (pooled tests) and, separately, over every per-seed test."""
    tested = [c for c in comparisons if c.pooled is not None]
    for c, p in zip(tested, holm([c.pooled.p_value for c in tested if c.pooled is not None]), strict=True):
        c.p_holm = p
    seed_tests = [t for c in tested for t in c.seed_tests]
    for t, p in zip(seed_tests, holm([t.test.p_value for t in seed_tests]), strict=True):
        t.p_holm = p


def pareto_front(xs: Sequence[float], ys: Sequence[float]) -> list[int]:
    """Indices of points no other point beats: lower-or-equal cost (x) and higher accuracy (y)."""
    order = sorted(range(len(xs)), key=lambda i: (xs[i], -ys[i]))
    front, best = [], -math.inf
    for i in order:
        if ys[i] > best:
            front.append(i)
            best = ys[i]
    return front
