"""Exporting a loaded run: owns `archbench export` (ONNX or TorchScript of the evaluated checkpoint, a
parity check, `export.json`); never changes the run folder.

The network is exported in float32 on the CPU with a dynamic batch axis (input `input`, N×C×H×W; output
`logits`, N×K). Parity: the exported file, run by onnxruntime (CPU) or torch.jit, is compared with the
PyTorch model on the run's test inputs (rebuilt from the record's dataset when it is still there, checked
against the recorded fingerprint) and on random normal inputs of the input shape, at batch sizes other
than the one traced; the largest absolute difference of the logits must be at most `TOLERANCE`.

`export.json` beside the file says what a consumer needs: input shape and layout, channel order,
the preprocessing (scale, resize, mean and std), class names (and values and colours for raster runs),
resolution, band names, patch size and pixel size for raster runs, and per exported file its format,
opset, sha256 and parity. Files of one run exported into the same folder share one export.json.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from archbench.ship.load import Run
from archbench.util.errors import ArchbenchError, OutputError

if TYPE_CHECKING:
    import torch

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
OPSET = 17  # read by onnxruntime >= 1.12 and by the ONNX runtimes GIS tools ship
TOLERANCE = 1e-4
TEST_ROWS = 64  # test inputs checked at most
RANDOM_BATCH = 3  # not the traced batch size (2): proves the batch axis is dynamic
META_NAME = "export.json"


class MissingExtraError(ArchbenchError):
    """An optional dependency of the requested format is not installed."""


@dataclass
class ExportResult:
    path: Path
    meta_path: Path
    entry: dict[str, Any]  # this file's entry in export.json (format, opset, sha256, parity)

    @property
    def parity_ok(self) -> bool:
        return bool(self.entry["parity"]["ok"])


def require_extra(fmt: str) -> None:
    """ONNX needs onnx and onnxruntime (`pip install 'archbench[export]'`); TorchScript needs only torch."""
    if fmt not in FORMATS:
        raise ArchbenchError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise MissingExtraError(
                f"--format onnx needs {exc.name or 'onnx and onnxruntime'}: pip install 'archbench[export]'"
            ) from None


def consumer_metadata(run: Run) -> dict[str, Any]:
    """What a consumer of the exported file needs to feed it and read its output (no per-file facts)."""
    from archbench import __version__

    rec, pre = run.record, run.transform
    c, h, w = pre.input_shape
    resize = (
        f"bilinear (align_corners=False) from {list(pre.native_size)} to [{h}, {w}]"
        if pre.resolution and (h, w) != pre.native_size
        else "none"
    )
    meta: dict[str, Any] = {
        "run_id": rec.run_id,
        "sweep": rec.sweep,
        "model": rec.spec.model.name,
        "checkpoint": rec.spec.eval.checkpoint,
        "checkpoint_sha256": rec.checkpoint_sha256,
        "archbench_version": __version__,
        "task": "classification",
        "input": {
            "name": "input",
            "shape": ["batch", c, h, w],
            "dtype": "float32",
            "layout": "NCHW",
            "channel_order": list(pre.channel_order),
        },
        "output": {
            "name": "logits",
            "shape": ["batch", len(run.classes)],
            "meaning": "class logits; softmax over axis 1 gives the probabilities archbench reports",
        },  # fmt: skip
        "preprocessing": {
            "source": "uint8 image pixels"
            if pre.kind == "image"
            else f"{pre.dtype} band values"
            if pre.kind == "chips"
            else "float32 band values",
            "native_size": list(pre.native_size),
            "scale": pre.scale,
            "resize": resize,
            "mean": list(pre.mean),
            "std": list(pre.std),
            "formula": "input = (resize(raw * scale) - mean) / std, per channel",
        },
        "resolution": [h, w],
        "classes": [{"index": i, "name": n} for i, n in enumerate(run.classes)],
        "metrics": {"top1": rec.metrics.top1, "f1_macro": rec.metrics.f1_macro} if rec.metrics else None,
    }
    if pre.kind == "image":
        meta["preprocessing"]["decode"] = (
            "grayscale (L) or RGB as PIL converts it, resized (bilinear) to native_size"
        )
    elif pre.kind == "chips":
        meta["chips"] = {"band_names": list(pre.channel_order), "dtype": pre.dtype}
    else:
        meta["raster"] = _raster_metadata(run)
        for entry, cls in zip(meta["classes"], meta["raster"].pop("classes"), strict=True):
            entry.update(value=cls["value"], color=cls["color"])
    return meta


def _raster_metadata(run: Run) -> dict[str, Any]:
    info = (run.record.data or {})["info"]
    grid = info["scene"]["grid"]
    return {
        "band_names": list(run.transform.channel_order),
        "patch_size": int(info["patch_size"]),
        "classifies": "the centre pixel of each patch_size×patch_size patch",
        "fill_values": list(run.transform.fill_values or []),
        "fill_note": "nodata inside a patch is replaced by these per-band values before scaling",
        "pixel_size": [abs(grid["transform"][0]), abs(grid["transform"][4])],
        "crs": grid["crs"],
        "classes": info["scene"]["classes"],
    }


def _cpu_model(run: Run) -> torch.nn.Module:
    return copy.deepcopy(run.model).to("cpu").float().eval()


def _write_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path, meta: dict[str, Any]) -> None:
    import onnx
    import torch

    with warnings.catch_warnings():  # the TorchScript-based exporter is deprecated; it needs no onnxscript
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), str(path), input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=OPSET, dynamo=False,
        )  # fmt: skip
    proto = onnx.load(str(path))
    for key, value in (("archbench", json.dumps(meta)), ("class_names", json.dumps(meta["classes"]))):
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(proto, str(path))


def _write_torchscript(
    model: torch.nn.Module, example: torch.Tensor, path: Path, meta: dict[str, Any]
) -> None:
    import torch

    with warnings.catch_warnings():  # torch.jit is deprecated upstream but still the portable C++ format
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={"archbench.json": json.dumps(meta)})


def _runner(path: Path, fmt: str) -> tuple[Any, str]:
    """A function from an input batch (numpy) to logits (numpy) running the exported file, and its name."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return (lambda x: session.run(["logits"], {"input": x})[0]), f"onnxruntime {ort.__version__} (CPU)"
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = torch.jit.load(str(path), map_location="cpu")

    def run_jit(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(loaded(torch.from_numpy(x)).numpy())

    return run_jit, f"torch.jit {torch.__version__} (CPU)"


def parity_inputs(run: Run, seed: int = 0) -> list[tuple[str, torch.Tensor]]:
    """The run's test inputs when its dataset is still there, and random normal inputs of its shape."""
    import torch

    out: list[tuple[str, torch.Tensor]] = []
    try:
        test = run.test_inputs(TEST_ROWS)
        out.append((f"test split, first {test.shape[0]} rows", test))
    except (ArchbenchError, OSError) as exc:
        out.append((f"test split unavailable ({exc})", torch.empty(0)))
    gen = torch.Generator().manual_seed(seed)
    out.append(
        (f"random normal, batch {RANDOM_BATCH}, seed {seed}",
         torch.randn(RANDOM_BATCH, *run.transform.input_shape, generator=gen))
    )  # fmt: skip
    return out


def check_parity(
    path: Path, fmt: str, model: torch.nn.Module, inputs: list[tuple[str, torch.Tensor]], tolerance: float
) -> dict[str, Any]:
    """Run the exported file and the PyTorch model on every input; the largest absolute logit difference."""
    import torch

    run_exported, runtime = _runner(path, fmt)
    checks: list[dict[str, Any]] = []
    for label, x in inputs:
        if x.numel() == 0:
            checks.append({"inputs": label, "max_abs_diff": None})
            continue
        x = x.detach().to("cpu", torch.float32).contiguous()
        with torch.no_grad():
            ref = model(x).float().numpy()
        got = np.asarray(run_exported(x.numpy()), dtype=np.float32)
        check: dict[str, Any] = {"inputs": label, "rows": int(x.shape[0]), "max_abs_diff": None}
        if got.shape != ref.shape:
            check["problem"] = f"output shape {list(got.shape)}, expected {list(ref.shape)}"
        else:
            check["max_abs_diff"] = float(np.max(np.abs(got - ref)))
        checks.append(check)
    diffs = [c["max_abs_diff"] for c in checks if c["max_abs_diff"] is not None]
    ok = bool(diffs) and not any("problem" in c for c in checks) and max(diffs) <= tolerance
    return {"max_abs_diff": max(diffs, default=None), "tolerance": tolerance, "ok": ok, "runtime": runtime,
            "reference": "the PyTorch model (float32, CPU, eval mode)", "checks": checks}  # fmt: skip


def parity_problem(path: Path, parity: dict[str, Any]) -> str:
    """One line naming what failed the parity check."""
    bad = [c for c in parity["checks"] if "problem" in c]
    if bad:
        return f"{path}: parity check failed on {bad[0]['inputs']}: {bad[0]['problem']}"
    return (
        f"{path}: parity check failed: max abs difference {parity['max_abs_diff']:.3g} between "
        f"{parity['runtime']} and the PyTorch model exceeds {parity['tolerance']:g}"
    )


def default_out(run: Run, fmt: str) -> Path:
    return Path(f"{run.run_id}{SUFFIXES[fmt]}")


def _merged_meta(meta_path: Path, meta: dict[str, Any], name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """export.json with this file's entry added to the entries of the run's other files in that folder."""
    files: dict[str, Any] = {}
    if meta_path.is_file():
        try:
            old = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
        if isinstance(old, dict) and old.get("run_id") not in (None, meta["run_id"]):
            raise OutputError(
                f"{meta_path}: describes the export of run {old.get('run_id')}; export run "
                f"{meta['run_id']} into another folder (--out)"
            )
        if isinstance(old, dict) and isinstance(old.get("files"), dict):
            files = {k: v for k, v in old["files"].items() if (meta_path.parent / k).is_file()}
    return {**meta, "files": {**files, name: entry}}


def export_run(run: Run, fmt: str, out: Path | None = None, tolerance: float = TOLERANCE) -> ExportResult:
    """Write the run's evaluated model as `fmt` to `out` (default `<run_id>.onnx|.torchscript.pt` here),
    check parity and write export.json beside it. Parity worse than `tolerance` is reported in the
    result (`parity_ok`), not raised: the file stays for inspection."""
    import torch

    from archbench.store.record import now_iso
    from archbench.util.paths import atomic_write_text, file_sha256

    require_extra(fmt)
    path = Path(out) if out is not None else default_out(run, fmt)
    meta_path = path.parent / META_NAME
    if path.name == META_NAME:
        raise OutputError(f"--out {path}: that name is taken by the metadata file; choose another name")
    path.parent.mkdir(parents=True, exist_ok=True)
    model, meta = _cpu_model(run), consumer_metadata(run)
    example = torch.randn(2, *run.transform.input_shape, generator=torch.Generator().manual_seed(1))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        (_write_onnx if fmt == "onnx" else _write_torchscript)(model, example, tmp, meta)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    entry: dict[str, Any] = {
        "format": fmt,
        "opset": OPSET if fmt == "onnx" else None,
        "exporter": "torch.onnx.export (TorchScript-based)" if fmt == "onnx" else "torch.jit.trace",
        "torch": torch.__version__,
        "sha256": file_sha256(path),
        "bytes": path.stat().st_size,
        "parity": check_parity(path, fmt, model, parity_inputs(run), tolerance),
        "created_at": now_iso(),
    }
    atomic_write_text(meta_path, json.dumps(_merged_meta(meta_path, meta, path.name, entry), indent=2))
    return ExportResult(path, meta_path, entry)
