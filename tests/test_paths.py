"""Paths follow the file they are written in, run ids do not move, and a bad `--set` names the argument."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from archbench.store.record import read_record
from archbench.sweep.expand import expand_sweep, load_sweep
from archbench.util.errors import ConfigError
from conftest import REPO
from helpers import cli
from test_data import write_image

# Spec hashes computed at main 4b7ea9c, before paths followed the sweep file (relative paths were then
# taken from the working directory, here the sweep file's own folder): they must not change.
QUICKSTART_AT_MAIN = [
    ("tiny_cnn_sgd_0.05-dded763f50", "dded763f506772187dc2ae7a8f51ba2d099e109f4f24a43fc019655611342cc1"),
    ("tiny_cnn_adam_0.002-85172cf91a", "85172cf91a357ed7dbf9b730953e4d44a67277112b342ef1ecc0e30ebf0f9a0f"),
    ("resnet18_sgd_0.05-245cc21ec9", "245cc21ec94a8c74dbd212705c42492d9ebee9ae31f10986b4ffbdbc9faebe85"),
    ("resnet18_adam_0.002-62e5d5468d", "62e5d5468dcd21b5fd3ec8ed70384ebea2e913d403927fb2c0b6beb0b0f78288"),
]
PATHS_SWEEP = """
name: paths
output_dir: out
data:
  kind: imagefolder
  root: imgs
  cache_dir: cache
model:
  name: tiny_cnn
  pretrained: weights/w.pt
train: {epochs: 1}
grid:
  model.name: [tiny_cnn, simple_cnn]
  data.root: [imgs, more/imgs2]
"""
PATHS_AT_MAIN = [
    ("tiny_cnn_imgs-ffab0b204b", "ffab0b204ba3fc8787c4f2223ace000e7e95e991fdd3e34cdf22afbac1a83a5e"),
    (
        "tiny_cnn_more-imgs2-ae983f-eabce9fab9",
        "eabce9fab9eb557d4ab3ae5ef197907bf8a8b677356b753e16ae4a55b5a971e5",
    ),
    ("simple_cnn_imgs-595fe9d4fd", "595fe9d4fd9b9b49818fb2bd97e3ec79ced9289ad2f70f7f8d0c034971db9084"),
    (
        "simple_cnn_more-imgs2-118cc4-7bb018f14f",
        "7bb018f14f859ec10b5d5d7ad5c57daf2feba77fd54ae645ea9cace046a1da88",
    ),
]
SCENE_SWEEP = """
name: scenepaths
data:
  kind: raster_patches
  root: rasters
  options: {scene: scenes/s.yaml, patch_size: 9}
train: {epochs: 1}
"""
SCENE_AT_MAIN = [("tiny_cnn-bf42c19ef1", "bf42c19ef11ecc0ba97e1f848bab8553585da22780f4a903b3e5561a45b9a515")]
SET_ROOT = ["data.root=sub/imgs", "grid.model.name=[tiny_cnn]"]  # a --set path is hashed as typed
SET_ROOT_AT_MAIN = [
    ("tiny_cnn-f21f1acb26", "f21f1acb2648abfb076840f8dcede3d08591785f4158d319ffd926ac5c04d6f9")
]


def _ids(path: Path, overrides: list[str] | None = None) -> list[tuple[str, str]]:
    return [(r.run_id, r.spec_hash) for r in expand_sweep(load_sweep(path, overrides))]


@pytest.mark.parametrize("run_from", ["its own folder", "another folder"])
def test_spec_hashes_are_those_of_main_wherever_the_sweep_runs_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_from: str
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "paths.yaml").write_text(PATHS_SWEEP)
    (ws / "scene.yaml").write_text(SCENE_SWEEP)
    monkeypatch.chdir(ws if run_from == "its own folder" else tmp_path)
    assert _ids(REPO / "configs" / "quickstart.yaml") == QUICKSTART_AT_MAIN
    assert _ids(ws / "paths.yaml") == PATHS_AT_MAIN
    assert _ids(ws / "scene.yaml") == SCENE_AT_MAIN
    assert _ids(ws / "paths.yaml", SET_ROOT) == SET_ROOT_AT_MAIN
    # ...while the specs hold the paths resolved: the file's against its folder, --set's against the cwd.
    run = expand_sweep(load_sweep(ws / "paths.yaml"))[1]
    assert run.spec.data.root == str(ws / "more" / "imgs2") and run.axes["data.root"] == "more/imgs2"
    assert run.spec.model.pretrained == str(ws / "weights" / "w.pt")
    assert {k: v.written for k, v in run.spec.written_paths.items()} == {
        "data.root": "more/imgs2",
        "data.cache_dir": "cache",
        "model.pretrained": "weights/w.pt",
    }
    (run,) = expand_sweep(load_sweep(ws / "paths.yaml", SET_ROOT))
    assert run.spec.data.root == str(Path.cwd() / "sub" / "imgs")
    (run,) = expand_sweep(load_sweep(ws / "scene.yaml"))
    assert run.spec.data.options["scene"] == str(ws / "scenes" / "s.yaml")


def test_every_input_path_key_resolves_against_the_sweep_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "s.yaml").write_text(
        textwrap.dedent("""
        name: s
        data:
          kind: raster_patches
          root: r
          cache_dir: ~/cache                  # kept as written (expanded where it is used)
          options: {scene: sc.yaml}
        model: {pretrained: w.pt}
        grid:
          model.pretrained: [imagenet, w2.pt, /abs/w.pt, w3.pt]
        exclude:
          - {model.pretrained: w3.pt}
        map: {scene: m.yaml, root: mr}
        tune:
          space: {train.lr: {type: loguniform, low: 0.001, high: 0.1}}
          storage: optuna.db
        tracking: {mlflow: {uri: "sqlite:///ml/mlflow.db"}}
        """)
    )
    monkeypatch.chdir(tmp_path)
    cfg = load_sweep(ws / "s.yaml")
    assert cfg.output_dir == str(ws / "results")  # the default too
    assert (cfg.map and cfg.map.scene, cfg.map and cfg.map.root) == (str(ws / "m.yaml"), str(ws / "mr"))
    assert cfg.tune and cfg.tune.storage == str(ws / "optuna.db")
    assert cfg.tracking and cfg.tracking.mlflow and cfg.tracking.mlflow.uri == f"sqlite:///{ws}/ml/mlflow.db"
    runs = expand_sweep(cfg)
    assert [r.spec.model.pretrained for r in runs] == ["imagenet", str(ws / "w2.pt"), "/abs/w.pt"]
    assert [r.axes["model.pretrained"] for r in runs] == ["imagenet", "w2.pt", "/abs/w.pt"]
    assert runs[0].spec.data.root == str(ws / "r") and runs[0].spec.data.cache_dir == "~/cache"
    assert runs[0].spec.data.options["scene"] == str(ws / "sc.yaml")


def _image_folder(root: Path) -> None:
    """Two classes of tiny PNG and JPEG files, one folder (a stratified test split is carved out)."""
    for ci, name in enumerate(("cat", "dog")):
        for i in range(10):
            fmt = "PNG" if i % 2 else "JPEG"
            write_image(root / name / f"{i:02d}.{fmt.lower()}", seed=ci * 100 + i, fmt=fmt)


SWEEP = """
name: imgs
data: {kind: imagefolder, root: imgs}
model: {name: tiny_cnn}
train: {epochs: 1, batch_size: 4, threads: 1}
"""


def test_a_sweep_with_a_relative_data_root_runs_from_another_folder(tmp_path: Path) -> None:
    ws, elsewhere = tmp_path / "ws", tmp_path / "elsewhere"
    _image_folder(ws / "imgs")
    (ws / "s.yaml").write_text(SWEEP)
    elsewhere.mkdir()
    res = cli("run", "../ws/s.yaml", cwd=elsewhere)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert not (elsewhere / "results").exists()  # output_dir (default results) follows the file too
    (run_dir,) = (ws / "results" / "imgs" / "runs").iterdir()
    rec = read_record(run_dir)
    assert rec is not None and rec.status == "completed"
    assert rec.spec.data.root == str(ws / "imgs")  # the record keeps the path resolved and as written
    assert rec.spec.written_paths["data.root"].written == "imgs"
    # The same run from the file's own folder: same id, nothing to train.
    res = cli("run", "s.yaml", cwd=ws)
    assert res.returncode == 0 and "1 skipped" in res.stdout, res.stdout[-2000:] + res.stderr[-2000:]


def test_set_paths_are_relative_to_the_working_directory_and_dry_run_shows_them(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    _image_folder(ws / "imgs")
    _image_folder(tmp_path / "data" / "imgs")
    (ws / "s.yaml").write_text(SWEEP)
    res = cli("run", "ws/s.yaml", "--dry-run", cwd=tmp_path)
    assert res.returncode == 0 and not res.stderr, res.stderr
    assert f"path data.root: {ws / 'imgs'} (as written: imgs)" in res.stdout.splitlines()
    assert f"path output_dir: {ws / 'results'} (as written: results)" in res.stdout.splitlines()
    res = cli(
        "run",
        "ws/s.yaml",
        "--dry-run",
        "--set",
        "data.root=data/imgs",
        "--set",
        "output_dir=out",
        cwd=tmp_path,
    )
    assert res.returncode == 0 and not res.stderr, res.stderr
    lines = res.stdout.splitlines()
    assert f"imgs: 1 runs → {tmp_path / 'out' / 'imgs'}/runs/" == lines[0]
    assert f"path data.root: {tmp_path / 'data' / 'imgs'} (as written: data/imgs)" in lines
    assert f"path output_dir: {tmp_path / 'out'} (as written: out)" in lines
    assert not (tmp_path / "out").exists()


BAD_SET = """
name: s
data: {kind: digits}
train:
  epochs: 2
grid:
  model.name: [tiny_cnn]
"""


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("train.epochs=two", "error: --set train.epochs=two: expected an integer"),
        (
            "model.name=[tiny_cnn,resnet18]",
            "error: --set model.name=[tiny_cnn,resnet18]: model.name takes one value; to run each of them, "
            "use --set grid.model.name=[tiny_cnn,resnet18]",
        ),
        (
            "grid.train.lr=[0.1,x]",
            "error: --set grid.train.lr=[0.1,x]: grid.train.lr[1]: Input should be a valid number, unable to "
            "parse string as a number; found 'x'",
        ),
    ],
)
def test_a_bad_set_names_the_argument_never_a_line_of_the_file(
    tmp_path: Path, arg: str, expected: str
) -> None:
    sweep = tmp_path / "s.yaml"
    sweep.write_text(BAD_SET)
    res = cli("run", str(sweep), "--set", arg, cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.splitlines() == [expected]
    assert not (tmp_path / "results").exists()


def test_a_file_error_beside_a_good_set_still_names_its_line(tmp_path: Path) -> None:
    sweep = tmp_path / "s.yaml"
    sweep.write_text(BAD_SET.replace("epochs: 2", "epochs: two"))
    with pytest.raises(ConfigError) as info:
        load_sweep(sweep, ["train.lr=0.1"])
    assert f"{sweep}:5: train.epochs" in str(info.value) and "--set" not in str(info.value)
