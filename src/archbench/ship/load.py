"""Loading a completed run for use outside its sweep: owns `load_run` → `Run` and the run's evaluation
preprocessing (`Preprocessing`); reads only, never writes or trains.

The model is the evaluated checkpoint (`eval.checkpoint`, `best` by default) whose sha256 must match the
record. The preprocessing is the one evaluation applied, rebuilt from the record: an image is decoded the
way its dataset family decoded files (grayscale or RGB, bilinear resize to the dataset's native size,
imagefolder's guards), then the trainer's `BatchMaker` scales it (1/255 for uint8 images, 1 for float32
raster patches), resizes it to `data.resolution` (bilinear) and standardises it with the training split's
per-channel mean and std; raster patches get the run's recorded nodata fill first, as the map stage does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from archbench.store.layout import RECORD_NAME, RunLayout
from archbench.store.record import RunRecord, read_record
from archbench.util.errors import ArchbenchError

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from torch import nn

# Families whose samples are float32 patches of a scene rather than uint8 images.
RASTER_KINDS = frozenset({"raster_patches"})
# Families of multispectral chips in their recorded dtype (`info.dtype`): raw rows only, no file decoding.
CHIP_KINDS = frozenset({"raster_folder", "torchgeo"})
PathLike = str | os.PathLike[str]


class NotARunError(ArchbenchError):
    """The folder holds no completed run whose model can be loaded (no record, not completed, bad weights)."""


@dataclass(frozen=True)
class Preprocessing:
    """A run's evaluation preprocessing: call it on image files, a PIL image or raw rows to get the float
    batch (N×C×H×W, normalised) the model was evaluated on.

    `kind` is `image` (uint8 pixels), `raster` (float32 band values of square patches centred on the
    pixel to classify) or `chips` (multispectral chips in `dtype`, the dtype the dataset stored).
    `native_size` is what the dataset stored (images are resized to it on decode), `resolution` what the
    network sees (None: the native size), `mean`/`std` the training split's per-channel statistics of the
    scaled pixels, `channel_order` the channels in input order (R, G, B; L; or a raster's or chips' band
    names), `fill_values` the per-band value that replaces nodata inside a patch.
    """

    kind: str
    channels: int
    native_size: tuple[int, int]
    resolution: int | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channel_order: tuple[str, ...]
    fill_values: tuple[float, ...] | None = None
    max_image_pixels: int = 40_000_000
    dtype: str = "uint8"

    @classmethod
    def from_record(cls, rec: RunRecord) -> Preprocessing:
        if rec.data is None:
            raise NotARunError(f"run {rec.run_id}: record has no data summary (it never started training)")
        data, info = rec.data, rec.data.get("info") or {}
        raster = rec.spec.data.kind in RASTER_KINDS
        channels = int(data["in_chans"])
        if rec.spec.data.kind in CHIP_KINDS:
            return cls._chips(rec, data, info)
        if raster:
            order = tuple(str(b) for b in info.get("band_names") or [f"band{i + 1}" for i in range(channels)])
        else:
            order = (
                ("R", "G", "B")
                if channels == 3
                else ("L",)
                if channels == 1
                else tuple(map(str, range(channels)))
            )
        return cls(
            kind="raster" if raster else "image",
            channels=channels,
            native_size=(int(data["native_size"][0]), int(data["native_size"][1])),
            resolution=rec.spec.data.resolution,
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            channel_order=order,
            fill_values=tuple(float(v) for v in info["fill_values"]) if raster else None,
            max_image_pixels=rec.spec.data.max_image_pixels,
        )

    @classmethod
    def _chips(cls, rec: RunRecord, data: dict[str, Any], info: dict[str, Any]) -> Preprocessing:
        fill = info.get("fill_values")
        return cls(
            kind="chips",
            channels=int(data["in_chans"]),
            native_size=(int(data["native_size"][0]), int(data["native_size"][1])),
            resolution=rec.spec.data.resolution,
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            channel_order=tuple(str(b) for b in info.get("band_names") or []),
            fill_values=tuple(float(v) for v in fill) if fill else None,
            dtype=str(info.get("dtype", "float32")),
        )

    @property
    def scale(self) -> float:
        """What raw values are multiplied by before standardising (1/255 for uint8 images and chips)."""
        if self.kind == "chips":
            return 1.0 / 255.0 if self.dtype == "uint8" else 1.0
        return 1.0 if self.kind == "raster" else 1.0 / 255.0

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one input as the network takes it."""
        h, w = (self.resolution, self.resolution) if self.resolution else self.native_size
        return self.channels, h, w

    def read_images(self, paths: list[Path]) -> tuple[np.ndarray, list[Path]]:
        """Image files → raw uint8 rows N×C×H×W at the native size, decoded as the dataset decoded its
        files; an unreadable file is an error naming it."""
        from archbench.data.imagefolder import decode_images
        from archbench.util.errors import DatasetError

        if self.kind == "raster":
            raise ArchbenchError(
                "a raster run classifies patches of a scene, not image files: give a scene file or a GeoTIFF"
            )
        if self.kind == "chips":
            raise ArchbenchError(
                f"a chip run takes raw rows N×{self.channels}×{self.native_size[0]}×{self.native_size[1]} "
                f"of its bands ({', '.join(self.channel_order)}) in {self.dtype}, not image files"
            )
        x, kept, bad = decode_images(paths, self.native_size, self.channels, self.max_image_pixels)
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise DatasetError(f"{bad[0][0]}: {bad[0][1]}{more}; fix or remove the file(s) and try again")
        return x, kept

    def to_batch(self, raw: np.ndarray, device: Any = "cpu", channels_last: bool = False) -> torch.Tensor:
        """Raw rows (N×C×H×W at the native size: uint8 images, or float32 patches with NaN for nodata) →
        the normalised float batch, through the trainer's own `BatchMaker.eval_batch`."""
        import torch

        from archbench.config import AugmentSpec
        from archbench.data.registry import DatasetBundle, Split
        from archbench.engine.augment import BatchMaker, DeviceSplit

        raw = np.asarray(raw)
        if raw.ndim == 3:
            raw = raw[None]
        want = (self.channels, *self.native_size) if self.kind != "raster" else (self.channels,)
        if raw.ndim != 4 or tuple(raw.shape[1 : 1 + len(want)]) != want:
            raise ArchbenchError(f"expected raw rows N×{'×'.join(map(str, want))}…, got shape {raw.shape}")
        if self.kind == "raster":
            fill = np.asarray(self.fill_values, dtype=np.float32)[:, None, None]
            raw = np.where(np.isnan(raw), fill, raw).astype(np.float32)
        elif self.kind == "chips":
            raw = raw.astype(self.dtype, copy=False)  # as stored: BatchMaker scales by this dtype
        else:
            raw = raw.astype(np.uint8, copy=False)
        dev = torch.device(device)
        # BatchMaker reads the scale from the dtype of the training rows and the statistics from a bundle.
        empty = Split(np.zeros((0, self.channels, 1, 1), raw.dtype), np.zeros(0, np.int64))
        stats = DatasetBundle("", [], empty, empty, empty, list(self.mean), list(self.std), fingerprint="")
        maker = BatchMaker(stats, dev, self.resolution, AugmentSpec(), channels_last=channels_last)
        split = DeviceSplit(Split(raw, np.zeros(raw.shape[0], np.int64)), dev)
        xb, _ = maker.eval_batch(split, 0, len(split))
        return xb

    def __call__(self, inputs: Any, device: Any = "cpu") -> torch.Tensor:
        """`inputs`: an image file or a list of them, a PIL image, or raw rows (see `to_batch`)."""
        if isinstance(inputs, str | os.PathLike):
            inputs = [inputs]
        if isinstance(inputs, list | tuple) and all(isinstance(p, str | os.PathLike) for p in inputs):
            raw, _ = self.read_images([Path(p) for p in inputs])
            return self.to_batch(raw, device)
        if hasattr(inputs, "convert") and hasattr(inputs, "mode"):  # a PIL image, converted as on decode
            from archbench.data.imagefolder import conform_image

            pixels = np.asarray(inputs.convert("L" if inputs.mode in ("L", "1") else "RGB"), dtype=np.uint8)
            return self.to_batch(conform_image(pixels, self.native_size, self.channels), device)
        return self.to_batch(np.asarray(inputs), device)


class Run:
    """A completed run, loaded: `record`, `model` (eval mode, weights verified against the record),
    `predictions` (the test split's arrays with their ids), `history` (per-epoch DataFrame), `transform`
    (the evaluation preprocessing) and `classes` (class names in output order)."""

    def __init__(self, run_dir: Path, record: RunRecord, model: nn.Module, transform: Preprocessing) -> None:
        self.run_dir = run_dir
        self.record = record
        self.model = model
        self.transform = transform

    def __repr__(self) -> str:
        return f"Run({self.run_id!r}, model={self.record.spec.model.name!r}, classes={len(self.classes)})"

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def classes(self) -> list[str]:
        return list(self.record.class_names or [])

    @property
    def checkpoint(self) -> Path:
        """The evaluated checkpoint file the model was loaded from."""
        return RunLayout(self.run_dir).checkpoint(self.record.spec.eval.checkpoint)

    @cached_property
    def predictions(self) -> dict[str, np.ndarray]:
        """predictions.npz: y_true, y_pred, probs, logits (N×K), test_ids (names), test_index, test_source,
        data_fingerprint."""
        from archbench.engine.artifacts import load_predictions

        path = RunLayout(self.run_dir).predictions
        if not path.is_file():
            raise NotARunError(
                f"{path}: missing (the run's test predictions); re-run the sweep to redo the run"
            )
        return load_predictions(self.run_dir)

    @cached_property
    def history(self) -> pd.DataFrame:
        """One row per epoch: epoch, step, train/val loss and accuracy, lr, seconds, images_per_s."""
        import pandas as pd

        return pd.DataFrame([h.model_dump() for h in self.record.history])

    def test_inputs(self, limit: int | None = None, device: Any = "cpu") -> torch.Tensor:
        """The first `limit` rows of the test split, preprocessed: the dataset is rebuilt from the record's
        spec and must have the recorded fingerprint (raises ArchbenchError when it is gone or changed)."""
        from archbench.engine.artifacts import load_bundle

        test = load_bundle(self.record).test
        n = len(test) if limit is None else min(limit, len(test))
        return self.transform.to_batch(np.asarray(test.x[:n]), device)


def _verified_checkpoint(run_dir: Path, rec: RunRecord) -> None:
    """The evaluated checkpoint exists and its sha256 is the record's (load_model checks `artifacts`)."""
    from archbench.util.paths import file_sha256

    name = rec.spec.eval.checkpoint
    ckpt = RunLayout(run_dir).checkpoint(name)
    if not ckpt.is_file():
        raise NotARunError(f"{ckpt}: checkpoint missing; re-run the sweep to redo the run")
    vouched = rec.artifacts.get(f"checkpoints/{name}.pt")
    expected = rec.checkpoint_sha256
    if expected and expected != vouched and file_sha256(ckpt) != expected:
        raise NotARunError(
            f"{ckpt}: does not match the record's checkpoint_sha256 (swapped or damaged); run "
            "`archbench verify`, then re-run the sweep to redo the run"
        )


def load_run(run_dir: PathLike, device: Any = "cpu") -> Run:
    """A completed run folder (`<sweep>/runs/<run_id>`) loaded for use; raises NotARunError (or another
    ArchbenchError) naming the folder when it is not a run, not completed, or its weights do not verify."""
    from archbench.engine.artifacts import load_model

    path = Path(run_dir)
    if not path.is_dir():
        raise NotARunError(f"{path}: no such folder; give a run folder (<output_dir>/<sweep>/runs/<run_id>)")
    if not (path / RECORD_NAME).is_file():
        raise NotARunError(
            f"{path}: not a run folder (no {RECORD_NAME}); give a folder under <output_dir>/<sweep>/runs/"
        )
    rec = read_record(path)
    if rec is None:
        raise NotARunError(
            f"{path / RECORD_NAME}: not a valid run record (damaged, edited, or from a newer archbench)"
        )
    if rec.status != "completed":
        why = f" ({rec.failure_reason})" if rec.failure_reason else ""
        raise NotARunError(f"{path}: run {rec.run_id} is {rec.status}{why}, not completed: no model to load")
    transform = Preprocessing.from_record(rec)
    _verified_checkpoint(path, rec)
    return Run(path, rec, load_model(path, rec, device), transform)
