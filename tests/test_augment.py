"""The batched crop+flip (one gather) equals cropping and flipping each image by hand with the same draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from archbench.config import AugmentSpec
from archbench.data.registry import DatasetBundle, Split
from archbench.engine.augment import BatchMaker, DeviceSplit


@pytest.mark.parametrize("pad,hflip", [(4, True), (4, False), (0, True), (2, True), (0, False)])
def test_gather_crop_flip_equals_per_image_reference(pad: int, hflip: bool) -> None:
    rng = np.random.default_rng(pad * 2 + hflip)
    x = rng.integers(0, 256, (40, 3, 12, 10), dtype=np.uint8)
    y = rng.integers(0, 5, 40).astype(np.int64)
    split = Split(x, y)
    bundle = DatasetBundle("t", [str(i) for i in range(5)], split, split, split, [0.0] * 3, [1.0] * 3, "")
    maker = BatchMaker(bundle, torch.device("cpu"), None, AugmentSpec(crop_padding=pad, hflip=hflip))
    idx = torch.tensor([3, 0, 39, 7, 7, 21])
    got, labels = maker.train_batch(
        DeviceSplit(split, torch.device("cpu")), idx, torch.Generator().manual_seed(5)
    )

    gen = torch.Generator().manual_seed(5)  # the same draws, in the documented order: offsets, then flips
    b = len(idx)
    off = torch.randint(0, 2 * pad + 1, (2, b), generator=gen) if pad else torch.zeros(2, b, dtype=torch.long)
    flip = torch.rand(b, generator=gen) < 0.5 if hflip else torch.zeros(b, dtype=torch.bool)
    for k, i in enumerate(idx.tolist()):
        img = F.pad(torch.from_numpy(x[i]), (pad, pad, pad, pad))
        r, c = int(off[0, k]), int(off[1, k])
        want = img[:, r : r + 12, c : c + 10]
        if flip[k]:
            want = want.flip(2)
        assert torch.equal(got[k], want.float() * (1.0 / 255.0)), (k, i)  # the maker scales by 1/255
    assert torch.equal(labels, torch.from_numpy(y)[idx])
    if hflip:
        assert 0 < int(flip.sum()) < b  # the draw flips some and not others: the test can tell


def test_float_source_is_never_modified_by_batching() -> None:
    """Float32 sources (raster patches): normalising a batch must not write into the stored pixels."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4, 5, 5)).astype(np.float32)
    y = rng.integers(0, 3, 16).astype(np.int64)
    split = Split(x.copy(), y)
    bundle = DatasetBundle("t", ["a", "b", "c"], split, split, split, [0.5] * 4, [2.0] * 4, "")
    maker = BatchMaker(bundle, torch.device("cpu"), None, AugmentSpec())
    source = DeviceSplit(split, torch.device("cpu"))
    first, _ = maker.eval_batch(source, 0, 16)
    second, _ = maker.eval_batch(source, 0, 16)
    maker.train_batch(source, torch.arange(16), torch.Generator().manual_seed(0))
    assert np.array_equal(split.x, x)
    assert torch.equal(first, second)
    assert torch.allclose(first, (torch.from_numpy(x) - 0.5) / 2.0)
