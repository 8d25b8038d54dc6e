"""`archbench predict` (issue 25): an image folder → CSV, a scene → map GeoTIFF, with the run's own
evaluation preprocessing; bad input is one line and exit 2.

The run's own test folder must give exactly the record's top-1 (and every image its recorded class); a
scene's map must give the recorded class at every test pixel. Real one-epoch runs, the real CLI.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from helpers import cli
from shipping import CLASSES, image_sweep, invoke, raster_sweep, train
from test_maps import write_tif


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(image_sweep(tmp_path_factory.mktemp("predict")))


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_predicting_the_test_folder_reproduces_the_recorded_top1(image_run: Path, tmp_path: Path) -> None:
    rec = json.loads((image_run / "record.json").read_text())
    test = Path(rec["spec"]["data"]["root"]) / "test"
    out = tmp_path / "p.csv"
    res = cli("predict", str(image_run), str(test), "--out", str(out), "--top-k", "2", "--device", "cpu")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"12 images predicted by {rec['run_id']}" in res.stdout
    rows = _rows(out)
    assert list(rows[0]) == ["path", "predicted", "probability", "top2", "probability2"] + [
        f"p_{c}" for c in CLASSES
    ]
    truth = [r["path"].split("/")[0] for r in rows]
    top1 = sum(r["predicted"] == t for r, t in zip(rows, truth, strict=True)) / len(rows)
    assert top1 == rec["metrics"]["top1"]
    assert any(r["path"].count("/") == 2 for r in rows)  # the nested file was found
    with np.load(image_run / "predictions.npz") as z:
        ids, y_pred = z["test_ids"], z["y_pred"]
    recorded = {str(i).removeprefix("test/"): CLASSES[int(p)] for i, p in zip(ids, y_pred, strict=True)}
    assert {r["path"]: r["predicted"] for r in rows} == recorded
    for r in rows:
        probs = [float(r[f"p_{c}"]) for c in CLASSES]
        assert abs(sum(probs) - 1) < 1e-4 and float(r["probability"]) == max(probs)
        assert r["top2"] != r["predicted"] and float(r["probability2"]) <= float(r["probability"])


def test_bad_input_is_one_line_and_exit_2(image_run: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("no images here")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"not a png")
    cases = {
        (str(image_run), str(empty)): "no image files found",
        (str(tmp_path), str(empty)): "not a run folder",
        (str(image_run), str(tmp_path / "absent")): "no such folder or file",
        (str(image_run), str(bad)): "broken.png",
    }
    for args, expected in cases.items():
        res = invoke("predict", *args, "--out", str(tmp_path / "x.csv"), "--device", "cpu")
        lines = res.stderr.strip().splitlines()
        assert res.exit_code == 2 and len(lines) == 1 and expected in lines[0], (args, res.stderr)
    assert not (tmp_path / "x.csv").exists()


def test_a_scene_gives_a_map_with_the_recorded_class_at_every_test_pixel(tmp_path: Path) -> None:
    sweep, scene, bands = raster_sweep(tmp_path)
    run_dir = train(sweep)
    rec = json.loads((run_dir / "record.json").read_text())
    out = tmp_path / "map.tif"
    res = cli("predict", str(run_dir), str(scene), "--out", str(out), "--device", "cpu")
    assert res.returncode == 0, res.stdout + res.stderr
    with rasterio.open(out) as m:
        values = m.read(1)
        assert m.tags()["run_id"] == rec["run_id"] and m.crs.to_string() == "EPSG:32119"
        assert m.colormap(1)[2][:3] == (0, 0, 255)
    from archbench.data.raster import unpack_mask

    info = rec["data"]["info"]
    rows, cols = np.nonzero(unpack_mask(info["test_pixels"]))
    with np.load(run_dir / "predictions.npz") as z:
        np.testing.assert_array_equal(values[rows, cols], np.asarray(info["class_values"])[z["y_pred"]])
    assert values[4, 5] == 0 and (values != 0).sum() == values.size - 1  # nodata pixel left unmapped
    # One GeoTIFF holding the bands (no scene file, no labels) gives the same map.
    tif = write_tif(tmp_path / "new_area.tif", bands, -9999)
    res = invoke("predict", str(run_dir), str(tif), "--out", str(tmp_path / "m2.tif"), "--device", "cpu")
    assert res.exit_code == 0, res.stdout + res.stderr
    with rasterio.open(tmp_path / "m2.tif") as m:
        np.testing.assert_array_equal(m.read(1), values)
    two = write_tif(tmp_path / "two_bands.tif", bands[:2], -9999)
    res = invoke("predict", str(run_dir), str(two), "--out", str(tmp_path / "m3.tif"), "--device", "cpu")
    assert res.exit_code == 2 and "2 band(s) but run" in res.stderr and len(res.stderr.splitlines()) == 1
