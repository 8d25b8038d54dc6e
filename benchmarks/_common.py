"""Shared by the benchmark scripts: interleaved A/B timing, load average, synthetic data, one JSON line."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def interleaved(a: Callable[[], float], b: Callable[[], float], pairs: int) -> dict[str, Any]:
    """Run A, B, A, B, ... (`pairs` times each, alternating which goes first) and compare them pair by
    pair: the ratio b/a of each pair (a > 1 ratio means A is faster), its median and range. Each callable
    returns the seconds it measured (so set-up outside its timed part is left out)."""
    ta, tb, ratios = [], [], []
    for k in range(pairs):
        if k % 2 == 0:
            x, y = a(), b()
        else:
            y, x = b(), a()
        ta.append(x)
        tb.append(y)
        ratios.append(y / x)
    return {
        "a_seconds_median": round(statistics.median(ta), 4),
        "b_seconds_median": round(statistics.median(tb), 4),
        "ratio_b_over_a_median": round(statistics.median(ratios), 3),
        "ratio_b_over_a_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "pairs": pairs,
    }


def synthetic_bundle(images: int, size: int = 32, channels: int = 3, classes: int = 10, seed: int = 0) -> Any:
    """A DatasetBundle of random uint8 images (the benchmarks time the machinery, not learning)."""
    from archbench.data.registry import DatasetBundle, Split

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (images, channels, size, size), dtype=np.uint8)
    y = rng.integers(0, classes, images).astype(np.int64)
    split = Split(x, y)
    small = Split(x[:64], y[:64])
    return DatasetBundle(
        "bench",
        [str(i) for i in range(classes)],
        split,
        small,
        small,
        [0.5] * channels,
        [0.25] * channels,
        "",
    )


def emit(result: dict[str, Any]) -> None:
    result.setdefault("loadavg_1_5_15", loadavg())
    result.setdefault("cpu_count", os.cpu_count())
    print(json.dumps(result), flush=True)


def now() -> float:
    return time.perf_counter()
