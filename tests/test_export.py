"""`archbench export` (issue 25): ONNX and TorchScript with a dynamic batch axis, a parity check against
the PyTorch model, export.json for consumers; a missing extra or a folder that is not a run is one line,
exit 2; a parity failure is named.

Real one-epoch runs; the exported files are run by the real onnxruntime and torch.jit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import archbench
from conftest import REPO
from shipping import image_sweep, invoke, raster_sweep, train

onnx = pytest.importorskip("onnx", reason="the export extra is not installed: pip install -e '.[export]'")
ort = pytest.importorskip("onnxruntime", reason="the export extra is not installed")


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(image_sweep(tmp_path_factory.mktemp("export")))


def test_onnx_matches_the_model_on_random_inputs_with_any_batch(image_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported" / "model.onnx"
    res = invoke("export", str(image_run), "--format", "onnx", "--out", str(out))
    assert res.exit_code == 0, res.stdout + res.stderr
    run = archbench.load_run(image_run)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "input" and inp.shape[1:] == [3, 16, 16] and isinstance(inp.shape[0], str)
    for batch in (1, 5):
        x = torch.randn(batch, *run.transform.input_shape, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            ref = run.model(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert np.abs(got - ref).max() <= 1e-4
    meta = json.loads((out.parent / "export.json").read_text())
    entry = meta["files"]["model.onnx"]
    assert entry["opset"] == 17 and entry["parity"]["ok"] and entry["parity"]["max_abs_diff"] <= 1e-4
    assert [c["inputs"].split(",")[0] for c in entry["parity"]["checks"]] == ["test split", "random normal"]
    assert meta["input"]["shape"] == ["batch", 3, 16, 16] and meta["input"]["channel_order"] == [
        "R",
        "G",
        "B",
    ]
    assert [c["name"] for c in meta["classes"]] == ["cat", "dog", "owl"]
    assert meta["preprocessing"]["mean"] == run.record.data["mean"] and meta["resolution"] == [16, 16]
    assert "12, 12" in meta["preprocessing"]["resize"]  # native 12×12 images, network at 16×16
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["archbench"])["run_id"] == run.run_id


def test_torchscript_beside_onnx_shares_export_json(image_run: Path, tmp_path: Path) -> None:
    for fmt, name in (("onnx", "m.onnx"), ("torchscript", "m.pt")):
        res = invoke("export", str(image_run), "--format", fmt, "--out", str(tmp_path / name))
        assert res.exit_code == 0, res.stdout + res.stderr
    meta = json.loads((tmp_path / "export.json").read_text())
    assert sorted(meta["files"]) == ["m.onnx", "m.pt"] and meta["files"]["m.pt"]["format"] == "torchscript"
    run = archbench.load_run(image_run)
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert (loaded(x) - run.model(x)).abs().max() <= 1e-4


def test_parity_failure_is_detected_and_named(image_run: Path, tmp_path: Path) -> None:
    from onnx import numpy_helper

    from archbench.ship.export import check_parity, export_run, parity_inputs, parity_problem

    run = archbench.load_run(image_run)
    result = export_run(run, "onnx", tmp_path / "model.onnx")
    assert result.parity_ok
    proto = onnx.load(str(result.path))
    first = proto.graph.initializer[0]
    first.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(first) + 0.5, first.name))
    onnx.save(proto, str(result.path))  # the file no longer computes what the model does
    parity = check_parity(result.path, "onnx", run.model, parity_inputs(run), 1e-4)
    assert not parity["ok"] and parity["max_abs_diff"] > 1e-4
    assert parity_problem(result.path, parity).startswith(f"{result.path}: parity check failed: max abs")


def test_raster_export_names_bands_patch_and_class_colours(tmp_path: Path) -> None:
    sweep, _, _ = raster_sweep(tmp_path)
    run_dir = train(sweep)
    res = invoke("export", str(run_dir), "--format", "onnx", "--out", str(tmp_path / "r.onnx"))
    assert res.exit_code == 0, res.stdout + res.stderr
    meta = json.loads((tmp_path / "export.json").read_text())
    raster = meta["raster"]
    assert raster["band_names"] == ["blue", "green", "red"] and raster["patch_size"] == 3
    assert raster["pixel_size"] == [30.0, 30.0] and raster["crs"] == "EPSG:32119"
    assert meta["classes"][1] == {"index": 1, "name": "east", "value": 2, "color": "#0000ff"}
    assert meta["input"]["shape"] == ["batch", 3, 3, 3] and meta["preprocessing"]["scale"] == 1.0


def test_bad_input_is_one_line_and_exit_2(image_run: Path, tmp_path: Path) -> None:
    for args, expected in (
        ((str(tmp_path),), "not a run folder"),
        ((str(image_run), "--format", "tflite"), "--format 'tflite': expected one of onnx, torchscript"),
    ):
        res = invoke("export", *args)
        lines = res.stderr.strip().splitlines()
        assert res.exit_code == 2 and len(lines) == 1 and expected in lines[0], res.stderr


def test_missing_extra_is_one_line_and_exit_2(image_run: Path, tmp_path: Path) -> None:
    """onnxruntime made unimportable in a fresh interpreter (as when the extra is not installed)."""
    probe = (
        "import sys; sys.modules['onnxruntime'] = None; sys.argv = ['archbench'] + sys.argv[1:]; "
        "from archbench.cli.app import main; main()"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "m.onnx"
    res = subprocess.run(
        [sys.executable, "-c", probe, "export", str(image_run), "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 2, res.stdout + res.stderr
    assert (
        res.stderr.strip() == ("error: --format onnx needs onnxruntime: pip install 'archbench[export]'")
        and not out.exists()
    )
