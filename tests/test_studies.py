"""The reference studies (configs/studies/): full-size plans, smoke runs end to end, weights, errors.

Each study file carries its CPU smoke override as `# smoke: --set ...` header lines (the documented command
is `archbench run FILE $(sed -n 's/^# smoke: //p' FILE)`); the slow tests run exactly those arguments,
plus data fixtures in the real file formats where the real data is not on this machine (CIFAR-100 pickles,
an image folder standing in for Imagenette), then the study's stages and `archbench report`.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from archbench.store.record import read_record
from conftest import REPO, SHARED_DATA
from helpers import cli
from test_data import cifar_batch, dump_pickle, make_class_tree

STUDIES_DIR = REPO / "configs" / "studies"
STUDIES = {p.stem: p for p in sorted(STUDIES_DIR.glob("*.yaml"))}
CIFAR_JPG = SHARED_DATA / "cifar10_jpg"
LANDSAT = SHARED_DATA / "landsat7_north_carolina_landcover"


def smoke_args(path: Path) -> list[str]:
    """The study's documented smoke override: the arguments of its `# smoke: ` header lines, in order."""
    args: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# smoke: "):
            args += shlex.split(line[len("# smoke: ") :])
    return args


def write_cifar100(parent: Path, train_per_class: int = 5, test_per_class: int = 2) -> Path:
    """CIFAR-100's python layout (`cifar-100-python/{train,test,meta}`) with random pixels, 100 classes."""
    folder = parent / "cifar-100-python"
    for name, per_class, seed in (("train", train_per_class, 1), ("test", test_per_class, 2)):
        batch = cifar_batch(100 * per_class, 100, seed, label_key=b"fine_labels")
        batch[b"coarse_labels"] = [v // 5 for v in batch[b"fine_labels"]]
        dump_pickle(folder / name, batch)
    dump_pickle(
        folder / "meta",
        {
            b"fine_label_names": [f"class_{i:02d}".encode() for i in range(100)],
            b"coarse_label_names": [f"super_{i:02d}".encode() for i in range(20)],
        },
    )
    return parent


def write_image_folder(root: Path, classes: int, train: int, test: int, size: int) -> Path:
    names = [f"class_{i}" for i in range(classes)]
    make_class_tree(root / "train", names, train, size=(size, size))
    make_class_tree(root / "test", names, test, size=(size, size))
    return root


def cifar10_root(tmp_path: Path) -> Path:
    """The shared CIFAR-10 JPEGs when present, else a 10-class image folder of 32 px PNGs."""
    if CIFAR_JPG.is_dir():
        return CIFAR_JPG
    return write_image_folder(tmp_path / "cifar10_like", classes=10, train=6, test=3, size=32)


# --- the five files at full size ----------------------------------------------------------------------


def test_every_study_has_a_documented_header() -> None:
    assert len(STUDIES) == 6, sorted(STUDIES)
    for name, path in STUDIES.items():
        text = path.read_text(encoding="utf-8")
        header = text.split("\nname:", 1)[0]
        assert f"archbench run configs/studies/{name}.yaml" in header, name
        assert "Expected GPU time: an ESTIMATE, not measured" in header, name
        assert "Data:" in header, name
        assert smoke_args(path), f"{name}: no `# smoke:` lines"


FULL_SIZE_RUNS = {
    "landcover_resnet_depth": 15,  # 5 depths x 3 seeds
    "cifar10_resnet_recipes": 48,  # 12 original (1 seed) + 12 sound x 3 seeds
    "three_families": 9,  # 3 families x 3 seeds
    "cifar100_resnet18": 3,  # 3 seeds
    "resolution_sweep": 45,  # 3 models x 5 resolutions x 3 seeds
    "vit_vs_resnet_recipes": 12,  # 2 models x 2 recipes x 3 seeds
}


@pytest.mark.parametrize("name", sorted(FULL_SIZE_RUNS))
def test_study_dry_run_lists_the_full_size_plan(name: str) -> None:
    path = STUDIES[name]
    if "../shared" in path.read_text() and not SHARED_DATA.is_dir():
        pytest.skip("its plan reads the shared data's headers; CI has ../shared")
    res = cli("run", str(path), "--dry-run", cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"{FULL_SIZE_RUNS[name]} runs" in res.stdout


def test_recipe_axes_give_one_seed_to_the_original_and_three_to_the_sound_recipe() -> None:
    from archbench.sweep.expand import expand_sweep, load_sweep

    runs = expand_sweep(load_sweep(STUDIES["cifar10_resnet_recipes"]))
    original = [r for r in runs if r.spec.train.batch_size == 4]
    sound = [r for r in runs if r.spec.train.batch_size == 128]
    assert len(original) == 12 and {r.spec.seed for r in original} == {0}
    assert all(r.spec.train.schedule == "none" and r.spec.train.lr == 0.001 for r in original)
    assert all(not r.spec.data.augment.hflip and r.spec.data.augment.crop_padding == 0 for r in original)
    assert len(sound) == 36 and {r.spec.seed for r in sound} == {0, 1, 2}
    assert all(r.spec.train.schedule == "cosine" and r.spec.data.augment.hflip for r in sound)
    assert {(r.spec.train.optimizer, r.spec.train.lr) for r in sound} == {("sgd", 0.05), ("adam", 0.0003)}
    configs = {(r.spec.model.name, r.spec.model.pool, r.spec.train.optimizer) for r in original}
    assert len(configs) == 12  # ResNet-18/34/50 x avg/max x SGD/Adam


def test_set_reaches_the_sweep_sections_that_smoke_overrides_shrink() -> None:
    from archbench.sweep.expand import load_sweep
    from archbench.util.errors import ConfigError

    path = STUDIES["three_families"]
    cfg = load_sweep(path, ["profile.batch_sizes=[1,4]", "explain.methods=[gradcam]", "explain.images=2"])
    assert cfg.profile is not None and cfg.profile.batch_sizes == [1, 4] and cfg.profile.iters == 20
    assert cfg.explain is not None and cfg.explain.methods == ["gradcam"] and cfg.explain.images == 2
    for bad in ("profile.batch_size=[1]", "explain=1", "profile.iters.x=1", "exclude.x=1"):
        with pytest.raises(ConfigError, match="unknown key"):
            load_sweep(path, [bad])
    with pytest.raises(ConfigError, match="explain.images"):
        load_sweep(path, ["explain.images=0"])


# --- a study without its weights or data --------------------------------------------------------------


def failure_details(out: Path) -> str:
    """The failure details of any run records under `out` (a run that failed at load time keeps it there)."""
    return " ".join(str(json.loads(p.read_text()).get("failure_detail")) for p in out.rglob("record.json"))


def test_cifar100_study_without_its_data_says_what_to_get(tmp_path: Path) -> None:
    res = cli(
        "run", str(STUDIES["cifar100_resnet18"]), *smoke_args(STUDIES["cifar100_resnet18"]),
        "--set", f"output_dir={tmp_path / 'out'}", "--set", f"data.root={tmp_path / 'nowhere'}",
    )  # fmt: skip
    out = " ".join((res.stdout + res.stderr + failure_details(tmp_path / "out")).split())
    assert res.returncode != 0
    assert "cifar-100-python" in out and str(tmp_path / "nowhere") in out


# --- smoke runs: train, stages, report ------------------------------------------------------------------


def _run_smoke(name: str, tmp_path: Path, *extra: str) -> Path:
    out = tmp_path / "results"
    path = STUDIES[name]
    res = cli("run", str(path), *smoke_args(path), "--set", f"output_dir={out}", *extra)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    sweep = out / name
    assert (sweep / "plan.json").is_file()
    return sweep


def _records(sweep: Path) -> list:
    records = [read_record(d) for d in sorted((sweep / "runs").iterdir())]
    assert records and all(r is not None and r.status == "completed" for r in records)
    return records


def _report(sweep: Path) -> dict:
    res = cli("report", str(sweep), "--formats", "html,md,csv")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    manifest = json.loads((sweep / "report" / "report_manifest.json").read_text())
    assert (sweep / "report" / "report.html").is_file()
    return manifest


@pytest.mark.slow
def test_smoke_landcover_resnet_depth(tmp_path: Path) -> None:
    if not LANDSAT.is_dir():
        pytest.skip(f"{LANDSAT} is absent; CI provides ../shared")
    sweep = _run_smoke("landcover_resnet_depth", tmp_path)
    records = _records(sweep)
    assert len(records) == 2 and {r.seed for r in records} == {0, 1}
    res = cli("map", str(sweep), "--rf", "--threads", "1")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    for rec in _records(sweep):
        scores = rec.stages["map"]["scores"]
        assert 0.0 <= scores["all_labelled"]["overall_accuracy"] <= 1.0
    manifest = _report(sweep)
    assert len(manifest["records"]) == 2


@pytest.mark.slow
def test_smoke_cifar10_resnet_recipes(tmp_path: Path) -> None:
    sweep = _run_smoke("cifar10_resnet_recipes", tmp_path, "--set", f"data.root={cifar10_root(tmp_path)}")
    records = _records(sweep)
    # resnet18 x avg x SGD/Adam: the original recipe once (seed 0), the sound one for seeds 0 and 1
    assert len(records) == 6
    assert (
        sorted((r.spec.train.batch_size, r.seed) for r in records)
        == [(4, 0)] * 2 + [(128, 0)] * 2 + [(128, 1)] * 2
    )
    _report(sweep)


@pytest.mark.slow
def test_smoke_three_families(tmp_path: Path) -> None:
    sweep = _run_smoke("three_families", tmp_path, "--set", f"data.root={cifar10_root(tmp_path)}")
    records = {r.spec.model.name: r for r in _records(sweep)}
    assert sorted(records) == ["efficientnet_b3", "resnet50", "vit_b_16"]
    for rec in records.values():
        assert rec.spec.model.freeze == 2 and rec.spec.model.dropout == 0.2
        assert rec.stages["profile"].get("gmacs")
        assert "gradcam" in rec.stages["explain"]["methods_run"]
    assert "attention" in records["vit_b_16"].stages["explain"]["methods_run"]
    assert "attention" in records["resnet50"].stages["explain"]["skipped"]
    _report(sweep)


@pytest.mark.slow
def test_smoke_cifar100_resnet18(tmp_path: Path) -> None:
    root = write_cifar100(tmp_path / "data")
    sweep = _run_smoke("cifar100_resnet18", tmp_path, "--set", f"data.root={root}")
    (rec,) = _records(sweep)
    assert rec.spec.train.schedule == "step" and rec.spec.eval.checkpoint == "best"
    assert rec.metrics.n_test == 100 and len(rec.class_names) == 100
    analysis = rec.stages["explain"]["error_analysis"]
    assert analysis and "gradcam" in rec.stages["explain"]["methods_run"]
    _report(sweep)


@pytest.mark.slow
def test_smoke_resolution_sweep(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imagenette_like", classes=10, train=5, test=2, size=64)
    sweep = _run_smoke("resolution_sweep", tmp_path, "--set", f"data.root={root}")
    records = _records(sweep)
    assert sorted((r.spec.model.name, r.spec.data.resolution) for r in records) == [
        ("resnet18", 32),
        ("resnet18", 48),
        ("timm:vit_tiny_patch16_224", 32),
        ("timm:vit_tiny_patch16_224", 48),
    ]
    for rec in records:
        assert rec.spec.train.grad_accum == 2 and rec.spec.train.grad_clip == 1.0
        assert rec.stages["profile"]["resolution"] == rec.spec.data.resolution
        assert {"gradcam", "ig", "saliency"} <= set(rec.stages["explain"]["methods_run"])
        if rec.spec.model.name.startswith("timm:vit"):
            size = rec.spec.data.resolution
            assert rec.model_build == {
                "input_size": size,
                "native_input_size": 224,
                "pos_embed_interpolated": False,  # the smoke override turns pretrained weights off
                "patch_grid": [size // 16, size // 16],
            }
        else:
            assert rec.model_build == {}
    _report(sweep)


@pytest.mark.slow
def test_smoke_vit_vs_resnet_recipes(tmp_path: Path) -> None:
    sweep = _run_smoke("vit_vs_resnet_recipes", tmp_path, "--set", f"data.root={cifar10_root(tmp_path)}")
    records = _records(sweep)
    assert sorted((r.spec.model.name, r.spec.recipe) for r in records) == [
        ("resnet18", "basic"),
        ("resnet18", "strong"),
        ("timm:vit_small_patch8_224", "basic"),
        ("timm:vit_small_patch8_224", "strong"),
    ]
    for rec in records:
        if rec.spec.model.name.startswith("timm:vit"):
            assert rec.model_build["patch_grid"] == [4, 4]  # 8-px patches of a 32-px image
        strong = rec.spec.recipe == "strong"
        assert (rec.spec.train.ema is not None) == strong and bool(rec.spec.data.augment.mixup) == strong
    _report(sweep)
    md = (sweep / "report" / "report.md").read_text()
    assert "By recipe" in md
