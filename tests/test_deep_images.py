"""Images deeper than 8 bits are never silently clipped (RELIABILITY 42): 16-bit PNG/TIFF are scaled by
their bit depth with the choice recorded; 32-bit integer and float images are refused, naming the mode.
(Unknown `data.options` keys, the other half of case 42, are in test_planning_checks.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from archbench.config import DataSpec
from archbench.data import create_dataset
from archbench.data.imagefolder import SCALED_16BIT
from archbench.util.errors import DatasetError

pytestmark = pytest.mark.reliability


def _folder(root: Path, dtype: type, suffix: str, scale: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 10), ("test", 3)):
        for c, cls in enumerate(("dark", "bright")):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, scale // 4, (8, 8)) + (scale // 2) * c
                Image.fromarray(arr.astype(dtype)).save(d / f"{i}{suffix}")


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_images_are_scaled_by_their_bit_depth_and_the_choice_is_recorded(
    tmp_path: Path, suffix: str
) -> None:
    _folder(tmp_path, np.uint16, suffix, 65536)
    bundle = create_dataset(DataSpec(kind="imagefolder", root=str(tmp_path)))
    assert bundle.in_chans == 1 and bundle.info["deep_images"] == {"files": 26, "scaling": SCALED_16BIT}
    # Values span 0..49151 (16 bits): the mean in [0, 1] is ~0.375, not the ~1.0 of values clipped at 255.
    assert 0.3 < bundle.mean[0] < 0.45
    x = np.concatenate([bundle.train.x, bundle.val.x, bundle.test.x])
    dark = np.concatenate([bundle.train.y, bundle.val.y, bundle.test.y]) == bundle.class_names.index("dark")
    assert x[dark].max() < 64 and x[~dark].min() >= 128  # high bytes of 0..16383 and 32768..49151


@pytest.mark.parametrize(("dtype", "mode"), [(np.int32, "I"), (np.float32, "F")])
def test_32_bit_and_float_images_are_refused_naming_the_mode(tmp_path: Path, dtype: type, mode: str) -> None:
    _folder(tmp_path, dtype, ".tif", 65536)
    with pytest.raises(DatasetError, match=rf"mode {mode} \(.*\) pixels have no 8-bit range"):
        create_dataset(DataSpec(kind="imagefolder", root=str(tmp_path)))
