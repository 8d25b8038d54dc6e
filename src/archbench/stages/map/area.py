"""Error-adjusted area: owns the stratified estimator of class areas with 95% confidence intervals
(Olofsson et al. 2014, "Good practices for estimating area and assessing accuracy of land change", Remote
Sensing of Environment 148:42–57, eqs. 9–11), strata = map classes. Pure numpy; reads no file.

With q classes, W_i = A_m,i / A_tot the share of the mapped area in map class i, n_ij the sample pixels
mapped i with reference j and n_i. = Σ_j n_ij:

    p̂_ij = W_i · n_ij / n_i.                                   (estimated area proportion of cell ij)
    p̂_.j = Σ_i p̂_ij                                            (eq. 9: proportion of reference class j)
    Â_j  = A_tot · p̂_.j                                        (eq. 10: error-adjusted area)
    S(p̂_.j) = sqrt( Σ_i W_i² · (n_ij/n_i.)(1 − n_ij/n_i.) / (n_i. − 1) )   (eq. 10's standard error)
    95% CI:  Â_j ± 1.96 · A_tot · S(p̂_.j)                     (eq. 11)

A stratum with fewer than 2 sample pixels adds no variance term (it is undefined); one with none adds no
area either, and the result says so (`unsampled_strata`). The areas always sum to A_tot when every
stratum is sampled. In archbench the "sample" is the labelled pixels of the scored subset, which are not
a probability sample of the scene: the intervals hold only insofar as those pixels are representative of
their map class.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Z95 = 1.96  # Olofsson et al. (2014) use 1.96 for their 95% intervals
M2_PER_HA = 10_000.0


def pixel_area_ha(transform: Any, crs: Any) -> float | None:
    """Hectares per pixel from the raster transform (|det| of its linear part), or None when the CRS is
    not in metres (geographic or unknown units: the area of a pixel varies or is unknown)."""
    if crs is None or not getattr(crs, "is_projected", False):
        return None
    units = (getattr(crs, "linear_units", "") or "").lower()
    if units not in ("metre", "meter", "m", "metres", "meters"):
        return None
    a, b, _, d, e, _ = list(transform)[:6]
    return abs(a * e - b * d) / M2_PER_HA


def error_adjusted_areas(sample: Any, mapped_pixels: Any, pixel_area: float = 1.0) -> dict[str, Any]:
    """Per class: mapped area, error-adjusted area, its standard error and 95% CI, in the unit of
    `pixel_area` (hectares per pixel; 1.0: pixels).

    `sample`: q×q counts, rows = map class (strata), columns = reference class (Olofsson's layout).
    `mapped_pixels`: pixels of each map class in the whole map."""
    n = np.asarray(sample, dtype=np.float64)
    mapped = np.asarray(mapped_pixels, dtype=np.float64)
    total = float(mapped.sum())
    n_i = n.sum(1)
    if total <= 0:
        raise ValueError("error_adjusted_areas: the map has no mapped pixel")
    w = mapped / total
    share = np.divide(n, n_i[:, None], out=np.zeros_like(n), where=n_i[:, None] > 0)
    p = w[:, None] * share
    var_terms = np.divide(
        w[:, None] ** 2 * share * (1 - share),
        (n_i - 1)[:, None],
        out=np.zeros_like(n),
        where=(n_i > 1)[:, None],
    )
    p_j = p.sum(0)
    se_j = np.sqrt(var_terms.sum(0))
    a_tot = total * pixel_area
    area, se = a_tot * p_j, a_tot * se_j
    return {
        "mapped_area": [float(v) for v in mapped * pixel_area],
        "adjusted_area": [float(v) for v in area],
        "standard_error": [float(v) for v in se],
        "ci_low": [float(v) for v in area - Z95 * se],
        "ci_high": [float(v) for v in area + Z95 * se],
        "proportion": [float(v) for v in p_j],
        "total_area": a_tot,
        "sample_pixels": [int(v) for v in n_i],
        "unsampled_strata": [int(i) for i in np.flatnonzero((n_i == 0) & (mapped > 0))],
    }
