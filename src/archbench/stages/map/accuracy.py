"""Map accuracy with uncertainty: owns the bootstrap intervals of the map scores, the paired McNemar tests
between maps (Holm-adjusted) and the sentence that says which maps beat the Random Forest.

Pure numpy on confusion matrices and per-pixel agreement; reads no file. Rows of a confusion matrix are
the reference, columns the map (as in `score`).

Why a bootstrap: the evaluation pixels are a census of the labelled pixels in a subset, not a probability
sample of the scene, so the stratified-sampling variances (Olofsson et al. 2014) do not apply to the
scores; the bootstrap over pixels says how much the scores would move with another draw of pixels like
these. Resampling n pixels with replacement and counting their (reference, map) cells is one
Multinomial(n, cells / n) draw, so each resample is drawn exactly from the confusion matrix, without
materialising n indices per resample.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from archbench.metrics import holm, mcnemar_p_values

ALPHA = 0.05  # 95% intervals; Holm family-wise error rate
BOOTSTRAP_RESAMPLES = 500
BOOTSTRAP_SEED = 0  # fixed: the same maps always give the same intervals
EXACT_BELOW = 25  # McNemar: exact binomial when b + c < 25, else chi-square with continuity correction
CI_METHOD = "bootstrap"
SUMMARY_METRICS = ("overall_accuracy", "kappa", "balanced_accuracy", "f1_macro")
CLASS_METRICS = ("users_accuracy", "producers_accuracy", "f1")


def _scores_batch(cms: np.ndarray) -> dict[str, np.ndarray]:
    """The scores of a stack of confusion matrices (B×K×K): summaries (B,) and per-class (B×K), NaN
    where undefined (a class absent from the reference, or never mapped)."""
    cms = cms.astype(np.float64)
    n = cms.sum((1, 2))
    diag, rows, cols = np.diagonal(cms, axis1=1, axis2=2), cms.sum(2), cms.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        oa = diag.sum(1) / n
        pe = (rows * cols).sum(1) / n**2  # chance agreement from the marginals
        kappa = np.where(pe >= 1.0, 0.0, (oa - pe) / (1.0 - pe))
        producers = np.where(rows > 0, diag / rows, np.nan)
        users = np.where(cols > 0, diag / cols, np.nan)
        f1 = np.where(rows > 0, np.where(rows + cols > 0, 2 * diag / (rows + cols), 0.0), np.nan)
    present = rows > 0
    n_present = np.maximum(present.sum(1), 1)
    balanced = np.where(present, np.nan_to_num(producers), 0.0).sum(1) / n_present
    f1_macro = np.where(present, np.nan_to_num(f1), 0.0).sum(1) / n_present
    return {
        "overall_accuracy": oa,
        "kappa": kappa,
        "balanced_accuracy": balanced,
        "f1_macro": f1_macro,
        "users_accuracy": users,
        "producers_accuracy": producers,
        "f1": f1,
    }


def _interval(point: float, draws: np.ndarray) -> dict[str, float | None]:
    finite = draws[np.isfinite(draws)]
    if not np.isfinite(point) or finite.size == 0:
        return {"estimate": None, "ci_low": None, "ci_high": None}
    lo, hi = np.quantile(finite, [ALPHA / 2, 1 - ALPHA / 2])
    return {"estimate": float(point), "ci_low": float(lo), "ci_high": float(hi)}


def bootstrap_scores(
    cm: Any, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> dict[str, Any]:
    """OA, kappa, balanced accuracy, macro F1 and per-class user's/producer's accuracy and F1 of one
    confusion matrix, each with its 95% percentile-bootstrap interval over pixels; plus the subset's
    reference class distribution (pixels and share per class)."""
    cm = np.asarray(cm, dtype=np.int64)
    k, n = cm.shape[0], int(cm.sum())
    support = cm.sum(1)
    out: dict[str, Any] = {
        "method": CI_METHOD,
        "resamples": resamples,
        "seed": seed,
        "n_pixels": n,
        "class_pixels": [int(v) for v in support],
        "class_share": [float(v / n) if n else None for v in support],
    }
    if n == 0:
        empty = {"estimate": None, "ci_low": None, "ci_high": None}
        out.update({m: dict(empty) for m in SUMMARY_METRICS})
        out.update({m: [dict(empty) for _ in range(k)] for m in CLASS_METRICS})
        return out
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, cm.ravel() / n, size=resamples).reshape(resamples, k, k)
    point, boot = _scores_batch(cm[None]), _scores_batch(draws)
    for m in SUMMARY_METRICS:
        out[m] = _interval(float(point[m][0]), boot[m])
    for m in CLASS_METRICS:
        out[m] = [_interval(float(point[m][0, j]), boot[m][:, j]) for j in range(k)]
    return out


def mcnemar_test(b: int, c: int) -> dict[str, Any]:
    """McNemar's test on the discordant counts b (only A right) and c (only B right): exact two-sided
    binomial when b + c < 25, else the chi-square statistic with continuity correction (1 df)."""
    from scipy.special import chdtrc  # chi-square survival function, without importing scipy.stats

    if b + c < EXACT_BELOW:
        return {
            "method": "exact binomial",
            "statistic": None,
            "p_value": float(mcnemar_p_values([b], [c])[0]),
        }
    stat = (abs(b - c) - 1) ** 2 / (b + c)
    return {
        "method": "chi-square, continuity-corrected",
        "statistic": float(stat),
        "p_value": float(chdtrc(1, stat)),
    }


def pairwise_tests(
    labels: list[str], correct: list[np.ndarray], scored: list[np.ndarray]
) -> list[dict[str, Any]]:
    """McNemar between every pair of maps on the pixels both scored, Holm-adjusted across the pairs.

    `correct[i]` and `scored[i]` are boolean arrays over the same pixels: map i is right there, and the
    pixel is in map i's subset and mapped by it."""
    rows = []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            both = scored[i] & scored[j]
            a, b_ok = correct[i] & both, correct[j] & both
            n = int(both.sum())
            only_a, only_b = int((a & ~b_ok).sum()), int((b_ok & ~a).sum())
            test = mcnemar_test(only_a, only_b)
            rows.append(
                {
                    "map_a": labels[i],
                    "map_b": labels[j],
                    "n_pixels": n,
                    "oa_a": float(a.sum() / n) if n else None,
                    "oa_b": float(b_ok.sum() / n) if n else None,
                    "only_a_right": only_a,
                    "only_b_right": only_b,
                    **test,
                }
            )
    for row, p in zip(rows, holm([r["p_value"] for r in rows]), strict=True):
        row["p_holm"] = p
    return rows


def verdict(row: dict[str, Any], label: str) -> str:
    """ "better", "worse" or "not distinguishable" for map `label` against the other map of a test row."""
    if row["p_holm"] >= ALPHA or row["oa_a"] is None or row["oa_a"] == row["oa_b"]:
        return "not distinguishable"
    mine, theirs = (row["oa_a"], row["oa_b"]) if row["map_a"] == label else (row["oa_b"], row["oa_a"])
    return "better" if mine > theirs else "worse"


def forest_sentence(subset: str, rows: list[dict[str, Any]], forest: str) -> str:
    """In words: which maps are better than the Random Forest `forest`, which are not distinguishable from
    it and which are worse, on `subset` (Holm-adjusted McNemar, α = 0.05)."""
    groups: dict[str, list[str]] = {"better": [], "not distinguishable": [], "worse": []}
    for row in rows:
        if forest not in (row["map_a"], row["map_b"]):
            continue
        other = row["map_b"] if row["map_a"] == forest else row["map_a"]
        groups[verdict(row, other)].append(
            f"{other} (OA {_oa(row, other):.3f} vs {_oa(row, forest):.3f}, Holm p = {row['p_holm']:.3g})"
            if row["n_pixels"]
            else f"{other} (no common pixels)"
        )
    where = subset.replace("_", " ")
    parts = [f"{k}: {', '.join(v) if v else 'none'}" for k, v in groups.items()]
    return (
        f"Against the Random Forest ({forest}) on {where} pixels, by McNemar's test on the pixels both maps "
        f"scored, Holm-adjusted over every pair of maps (α = {ALPHA}): " + "; ".join(parts) + "."
    )


def _oa(row: dict[str, Any], label: str) -> float:
    return float(row["oa_a"] if row["map_a"] == label else row["oa_b"])
