"""Map accuracy with uncertainty and error-adjusted area: the pure estimators (stages/map/accuracy.py,
stages/map/area.py), each against an independent computation or a published example."""

from __future__ import annotations

import numpy as np
import pytest

from archbench.stages.map.accuracy import (
    bootstrap_scores,
    forest_sentence,
    mcnemar_test,
    pairwise_tests,
)
from archbench.stages.map.area import error_adjusted_areas, pixel_area_ha


def _labels(seed: int = 1, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(4, n, p=[0.6, 0.25, 0.1, 0.05])
    p = np.where(rng.random(n) < 0.8, y, rng.integers(0, 4, n))
    return y, p


def test_bootstrap_point_estimates_match_scikit_learn_and_intervals_cover_them() -> None:
    from sklearn.metrics import (
        balanced_accuracy_score,
        cohen_kappa_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    y, p = _labels()
    b = bootstrap_scores(confusion_matrix(y, p, labels=range(4)), resamples=300, seed=3)
    assert b["method"] == "bootstrap" and b["n_pixels"] == 600
    assert b["overall_accuracy"]["estimate"] == pytest.approx((y == p).mean())
    assert b["kappa"]["estimate"] == pytest.approx(cohen_kappa_score(y, p))
    assert b["balanced_accuracy"]["estimate"] == pytest.approx(balanced_accuracy_score(y, p))
    assert b["f1_macro"]["estimate"] == pytest.approx(f1_score(y, p, average="macro"))
    prec, rec, f1, support = precision_recall_fscore_support(y, p, labels=range(4), zero_division=0)
    assert [v["estimate"] for v in b["users_accuracy"]] == pytest.approx(list(prec))
    assert [v["estimate"] for v in b["producers_accuracy"]] == pytest.approx(list(rec))
    assert [v["estimate"] for v in b["f1"]] == pytest.approx(list(f1))
    assert b["class_pixels"] == list(support) and sum(b["class_share"]) == pytest.approx(1.0)
    for m in ("overall_accuracy", "kappa", "balanced_accuracy", "f1_macro"):
        v = b[m]
        assert v["ci_low"] < v["estimate"] < v["ci_high"], m
    # The interval is that of a binomial proportion for OA: width ≈ 2·1.96·sqrt(p(1-p)/n), within 25%.
    oa = b["overall_accuracy"]
    expected = 2 * 1.96 * np.sqrt(oa["estimate"] * (1 - oa["estimate"]) / 600)
    assert oa["ci_high"] - oa["ci_low"] == pytest.approx(expected, rel=0.25)
    assert bootstrap_scores(confusion_matrix(y, p), resamples=300, seed=3) == b  # seeded: reproducible


def test_bootstrap_of_an_absent_class_and_an_empty_subset_is_none() -> None:
    cm = np.array([[5, 1, 0], [2, 8, 0], [0, 0, 0]])
    b = bootstrap_scores(cm, resamples=50)
    assert b["producers_accuracy"][2]["estimate"] is None and b["users_accuracy"][2]["estimate"] is None
    empty = bootstrap_scores(np.zeros((3, 3), int), resamples=50)
    assert empty["overall_accuracy"] == {"estimate": None, "ci_low": None, "ci_high": None}


@pytest.mark.parametrize(("b", "c"), [(3, 9), (0, 4), (30, 52), (120, 80)])
def test_mcnemar_matches_scipy_exact_binomial_and_corrected_chi_square(b: int, c: int) -> None:
    from scipy.stats import binomtest, chi2

    t = mcnemar_test(b, c)
    if b + c < 25:
        assert t["method"] == "exact binomial"
        assert t["p_value"] == pytest.approx(binomtest(b, b + c, 0.5).pvalue)
    else:
        assert t["method"].startswith("chi-square")
        assert t["p_value"] == pytest.approx(chi2.sf((abs(b - c) - 1) ** 2 / (b + c), 1))


def test_pairwise_counts_holm_and_the_sentence_name_better_and_indistinguishable_maps() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    forest = rng.random(n) < 0.80
    good = forest | (rng.random(n) < 0.5)  # right wherever the forest is, and on half the rest
    same = rng.random(n) < 0.80
    scored = [np.ones(n, bool)] * 3
    rows = pairwise_tests(["good", "same", "random_forest"], [good, same, forest], scored)
    by_pair = {(r["map_a"], r["map_b"]): r for r in rows}
    r = by_pair[("good", "random_forest")]
    assert r["only_a_right"] == int((good & ~forest).sum()) and r["only_b_right"] == 0
    assert r["p_holm"] < 0.05 and r["p_holm"] >= r["p_value"]
    assert by_pair[("same", "random_forest")]["p_holm"] >= 0.05
    text = forest_sentence("never_in_training", rows, "random_forest")
    assert "better: good (OA" in text and "not distinguishable: same (OA" in text and "worse: none" in text


def test_olofsson_2014_worked_example_areas_and_intervals() -> None:
    # Olofsson et al. (2014), Remote Sensing of Environment 148:42-57, section 5, Table 8 (sample counts,
    # rows = map, columns = reference; map areas in 30 m pixels) and the error-adjusted areas with 95% CIs
    # on p. 54, as transcribed in boothmanrylan/accuracyAssessmentTools tests/test_olofsson.py (21,158 ±
    # 6,158 ha deforestation; 11,686 ± 3,756 forest gain; 285,770 ± 15,510 stable forest; 581,386 ±
    # 16,282 stable non-forest; deforestation 235,086 ± 68,418 pixels). The paper rounds; so does this.
    sample = [[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]]
    mapped = [200_000, 150_000, 3_200_000, 6_450_000]
    ha = error_adjusted_areas(sample, mapped, pixel_area=0.09)
    published = [(21_158, 6_158), (11_686, 3_756), (285_770, 15_510), (581_386, 16_282)]
    for j, (area, half) in enumerate(published):
        assert ha["adjusted_area"][j] == pytest.approx(area, abs=1.0)
        assert ha["ci_high"][j] - ha["adjusted_area"][j] == pytest.approx(half, abs=1.0)
    assert ha["mapped_area"][0] == pytest.approx(18_000)
    px = error_adjusted_areas(sample, mapped)
    assert px["adjusted_area"][0] == pytest.approx(235_086, abs=5)
    assert 1.96 * px["standard_error"][0] == pytest.approx(68_418, abs=5)
    assert sum(ha["adjusted_area"]) == pytest.approx(ha["total_area"]) == pytest.approx(900_000)


def test_areas_of_a_small_hand_computed_example() -> None:
    # Two map classes of 60 and 40 pixels; the sample: map 0 → ref (8, 2), map 1 → ref (1, 9).
    a = error_adjusted_areas([[8, 2], [1, 9]], [60, 40])
    p0 = 0.6 * 0.8 + 0.4 * 0.1
    assert a["adjusted_area"] == pytest.approx([100 * p0, 100 * (1 - p0)])
    var0 = 0.6**2 * 0.8 * 0.2 / 9 + 0.4**2 * 0.1 * 0.9 / 9
    assert a["standard_error"] == pytest.approx([100 * var0**0.5] * 2)  # two classes: the same error
    assert a["unsampled_strata"] == []
    assert error_adjusted_areas([[3, 1], [0, 0]], [60, 40])["unsampled_strata"] == [1]


def test_pixel_area_in_hectares_from_the_transform() -> None:
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    t = from_origin(630534.0, 228114.0, 28.5, 28.5)
    assert pixel_area_ha(t, CRS.from_epsg(32119)) == pytest.approx(28.5**2 / 10_000)
    assert pixel_area_ha(t, CRS.from_epsg(4326)) is None and pixel_area_ha(t, None) is None
