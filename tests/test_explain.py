"""Explanations and error analysis (issue #7) on a small real sweep: digits at 16 px, a small CNN and a
ResNet-18, one epoch each, explained by the `explain:` stage and by `archbench explain`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from archbench.store.record import read_record
from conftest import run_sweep_text
from helpers import cli

SWEEP = """
name: xai
output_dir: {out}
data: {{kind: digits, resolution: 16, limit_per_class: 40}}
train: {{epochs: 1, batch_size: 64, threads: 1}}
seed: 0
grid:
  model.name: [simple_cnn, resnet18]
  model.stem: [imagenet, cifar]
exclude:                      # stem: cifar exists for ResNets only
  - {{model.name: simple_cnn, model.stem: cifar}}
  - {{model.name: resnet18, model.stem: imagenet}}
explain: {{images: 4, methods: [gradcam, ig, saliency, attention], select: mistakes, seed: 3}}
"""


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("explain")
    path = run_sweep_text(tmp, SWEEP.format(out=tmp / "results"))
    # The second pass is the runner's path for completed runs: stages missing from a record run then. (The
    # runner in this tree runs stages only there; once it runs them right after evaluation, this is a no-op.)
    res = cli("run", str(path), cwd=tmp)
    assert res.returncode == 0, res.stdout + res.stderr
    return tmp / "results" / "xai"


def _runs(sweep_dir: Path) -> dict[str, tuple[Path, Any]]:
    out = {}
    for run_dir in sorted((sweep_dir / "runs").iterdir()):
        rec = read_record(run_dir)
        assert rec is not None and rec.status == "completed"
        out[rec.spec.model.name] = (run_dir, rec)
    return out


def _heatmaps(run_dir: Path) -> dict[str, np.ndarray]:
    with np.load(run_dir / "explain" / "heatmaps.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_stage_records_heatmaps_in_unit_range_at_input_size(sweep_dir: Path) -> None:
    runs = _runs(sweep_dir)
    assert set(runs) == {"simple_cnn", "resnet18"}
    maps = {}
    for name, (run_dir, rec) in runs.items():
        block = rec.stages["explain"]
        assert "error" not in block, block
        assert block["methods_run"] == ["gradcam", "ig", "saliency"] and block["errors"] == {}
        # Attention rollout on a CNN cannot be done: recorded as skipped with the reason, nothing crashed.
        assert "Vision Transformer" in block["skipped"]["attention"]
        assert (
            block["methods"]["gradcam"]["layer"] == {"simple_cnn": "features.2", "resnet18": "layer4"}[name]
        )
        assert block["input_size"] == [16, 16] and block["paths"]["heatmaps"] == "explain/heatmaps.npz"
        h = _heatmaps(run_dir)
        for method in ("gradcam", "ig", "saliency"):
            m = h[method]
            assert m.shape == (4, 16, 16) and m.dtype == np.float32
            assert m.min() >= 0.0 and m.max() <= 1.0
            peaks = m.reshape(4, -1).max(1)  # min-max per image: peak 1, or 0 for a constant map
            assert np.all((np.abs(peaks - 1.0) < 1e-6) | (peaks == 0.0)) and peaks.max() == pytest.approx(1.0)
        assert list(h["indices"]) == block["selection"]["indices"]
        maps[name] = h
    for method in ("gradcam", "ig", "saliency"):
        assert not np.allclose(maps["simple_cnn"][method], maps["resnet18"][method], atol=1e-3)


def test_same_images_for_every_model(sweep_dir: Path) -> None:
    doc = json.loads((sweep_dir / "stages" / "explain" / "selection.json").read_text())
    (group,) = doc["groups"].values()  # one test set (one fingerprint) in this sweep
    assert group["select"] == "mistakes" and group["seed"] == 3 and len(group["indices"]) == 4
    runs = _runs(sweep_dir)
    for run_dir, rec in runs.values():
        block = rec.stages["explain"]
        assert block["selection"]["hash"] == group["hash"]
        assert block["selection"]["indices"] == group["indices"]
        assert list(_heatmaps(run_dir)["indices"]) == group["indices"]
    # `mistakes`: the chosen images were got wrong by at least one model (when there were enough).
    wrong = np.zeros(len(group["indices"]), dtype=int)
    for run_dir, _ in runs.values():
        pred = np.load(run_dir / "predictions.npz")
        idx = np.asarray(group["indices"])
        wrong += pred["y_pred"][idx] != pred["y_true"][idx]
    enough = min(group["how"]["matching"], 4)
    assert np.all(wrong[:enough] >= 1)
    labels = np.load(next(iter(runs.values()))[0] / "predictions.npz")["y_true"][group["indices"]]
    assert list(labels) == group["labels"]


def _reference_analysis(y_true: np.ndarray, probs: np.ndarray, k: int) -> dict[str, Any]:
    """Straight loops over predictions.npz, written independently of archbench.stages.explain.analysis."""
    y_pred = probs.argmax(1)
    conf = probs.max(1)
    acc = {}
    for c in range(k):
        rows = [i for i in range(len(y_true)) if y_true[i] == c]
        acc[c] = sum(int(y_pred[i] == c) for i in rows) / len(rows)
    counts: dict[tuple[int, int], int] = {}
    for t, p in zip(y_true, y_pred, strict=True):
        if t != p:
            counts[(int(t), int(p))] = counts.get((int(t), int(p)), 0) + 1
    wrong = [i for i in range(len(y_true)) if y_pred[i] != y_true[i]]
    ece, n = 0.0, len(y_true)
    for b in range(15):
        lo, hi = b / 15, (b + 1) / 15
        in_bin = [i for i in range(n) if (lo < conf[i] <= hi) or (b == 0 and conf[i] == 0)]
        if in_bin:
            a = np.mean([y_pred[i] == y_true[i] for i in in_bin])
            ece += len(in_bin) / n * abs(a - np.mean([conf[i] for i in in_bin]))
    return {"acc": acc, "pairs": counts, "wrong": wrong, "conf": conf, "y_pred": y_pred, "ece": ece}


def test_error_analysis_equals_recomputation_from_predictions(sweep_dir: Path) -> None:
    for run_dir, rec in _runs(sweep_dir).values():
        ea = rec.stages["explain"]["error_analysis"]
        pred = np.load(run_dir / "predictions.npz")
        ref = _reference_analysis(pred["y_true"], pred["probs"], 10)
        assert ea["n_test"] == len(pred["y_true"]) and ea["n_mistakes"] == len(ref["wrong"])
        assert [e["accuracy"] for e in ea["per_class"]] == pytest.approx([ref["acc"][c] for c in range(10)])
        assert ea["best_classes"][0]["accuracy"] == pytest.approx(max(ref["acc"].values()))
        assert ea["worst_classes"][0]["accuracy"] == pytest.approx(min(ref["acc"].values()))
        top = ea["confused_pairs"][0]
        assert top["count"] == max(ref["pairs"].values())
        assert ref["pairs"][(top["true_index"], top["predicted_index"])] == top["count"]
        assert [p["count"] for p in ea["confused_pairs"]] == sorted(ref["pairs"].values(), reverse=True)[:10]
        most = max(ref["wrong"], key=lambda i: ref["conf"][i])
        first = ea["confident_mistakes"][0]
        assert first["confidence"] == pytest.approx(float(ref["conf"][most]))
        i = first["index"]
        assert first["true_index"] == pred["y_true"][i] and first["predicted_index"] == ref["y_pred"][i]
        assert first["predicted_index"] != first["true_index"]
        cal = ea["calibration"]
        assert cal["bins"] == 15 and sum(cal["bin_count"]) == len(pred["y_true"])
        assert cal["ece"] == pytest.approx(ref["ece"], abs=1e-6)  # float32 confidences


def test_integrated_gradients_completeness(sweep_dir: Path) -> None:
    import torch

    from archbench.data.registry import Split
    from archbench.engine.artifacts import load_bundle, load_model
    from archbench.engine.augment import BatchMaker, DeviceSplit

    for run_dir, rec in _runs(sweep_dir).values():
        ig = rec.stages["explain"]["methods"]["ig"]
        h = _heatmaps(run_dir)
        idx, target = h["indices"], torch.from_numpy(h["targets"])
        bundle = load_bundle(rec)
        model = load_model(run_dir, rec, "cpu")
        maker = BatchMaker(bundle, torch.device("cpu"), 16, rec.spec.data.augment)
        x, _ = maker.eval_batch(
            DeviceSplit(Split(bundle.test.x[idx], bundle.test.y[idx]), "cpu"), 0, len(idx)
        )
        black = np.zeros_like(bundle.test.x[:1])
        baseline, _ = maker.eval_batch(DeviceSplit(Split(black, bundle.test.y[:1]), "cpu"), 0, 1)
        with torch.no_grad():
            fx = model(x).gather(1, target[:, None])[:, 0].numpy()
            fb = model(baseline.expand_as(x)).gather(1, target[:, None])[:, 0].numpy()
        total = np.asarray(ig["convergence_delta"]["attribution_sum"])
        delta = np.asarray(ig["convergence_delta"]["per_image"])
        # Completeness: Σ attributions = F(x) − F(baseline), up to captum's reported convergence delta...
        np.testing.assert_allclose(total - delta, fx - fb, rtol=1e-4, atol=1e-4)
        # ...and that delta, the integral's approximation error (50 Gauss-Legendre steps through ReLUs and
        # max-pools), stays small on the logit scale.
        assert np.all(np.abs(delta) <= 0.2 * np.maximum(np.abs(fx - fb), 1.0))
        assert ig["convergence_delta"]["max_abs"] == pytest.approx(np.abs(delta).max())


def test_attention_rollout_on_a_tiny_timm_vit_rows_sum_to_one() -> None:
    import timm
    import torch

    from archbench.stages.explain.methods import attention_weights, explain_model, rollout

    torch.manual_seed(0)
    vit = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, num_classes=10
    )
    vit.eval()
    x = torch.randn(2, 3, 32, 32)
    weights = attention_weights(vit, "timm:vit_tiny_patch16_224", x)
    assert len(weights) == 12 and weights[0].shape == (2, 17, 17)  # 16 patches + the class token
    r = rollout(weights)
    assert torch.allclose(r.sum(-1), torch.ones(2, 17), atol=1e-5)
    assert torch.all(r >= 0)
    out = explain_model(vit, "timm:vit_tiny_patch16_224", x, vit(x).argmax(1), ["attention", "gradcam"])
    for method in ("attention", "gradcam"):
        assert out[method].status == "ok", out[method].info
        h = out[method].heatmaps
        assert h is not None and h.shape == (2, 32, 32) and h.min() >= 0 and h.max() <= 1
    assert out["gradcam"].info["layer"] == "blocks.11.norm1"


def test_family_without_target_layer_is_skipped_not_crashing() -> None:
    import timm
    import torch

    from archbench.stages.explain.methods import explain_model

    torch.manual_seed(0)
    # MLP-Mixer: timm lists its blocks as feature stages, but they output tokens, not an N×C×H×W map.
    mixer = timm.create_model("mixer_s16_224", pretrained=False, img_size=32, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    out = explain_model(
        mixer, "timm:mixer_s16_224", x, mixer(x).argmax(1), ["gradcam", "saliency", "attention"]
    )
    assert out["gradcam"].status == "skipped"
    assert "no known Grad-CAM target layer for family timm" in out["gradcam"].info["reason"]
    assert out["attention"].status == "skipped"
    assert out["saliency"].status == "ok"


def test_explain_command_on_an_existing_sweep(sweep_dir: Path) -> None:
    before = {name: rec.stages["explain"] for name, (_, rec) in _runs(sweep_dir).items()}
    res = cli("explain", str(sweep_dir), "--methods", "gradcam")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("explained ") == 2
    out = sweep_dir / "stages" / "explain"
    index = json.loads((out / "index.json").read_text())
    assert index["title"] == "Explanations"
    paths = [f["path"] for f in index["figures"]]
    for name in ("gradcam_grid.png", "ig_grid.png", "reliability.png", "confused_pairs.png"):
        assert name in paths and (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {t["csv"] for t in index["tables"]} == {"error_analysis.csv", "confident_mistakes.csv"}
    rows = (out / "error_analysis.csv").read_text().splitlines()
    assert rows[0].startswith("run_id,model,label,top1,ece") and len(rows) == 3
    assert any("attention skipped" in n for n in index["notes"])
    for name, (run_dir, rec) in _runs(sweep_dir).items():
        block = rec.stages["explain"]
        # Reused selection; Grad-CAM redone; the other methods on the same images are kept.
        assert (
            block["selection"]["hash"] == before[name]["selection"]["hash"] and block["selection"]["reused"]
        )
        assert block["methods_run"] == ["gradcam", "ig", "saliency"]
        assert set(_heatmaps(run_dir)) >= {"gradcam", "ig", "saliency"}
        np.testing.assert_allclose(_heatmaps(run_dir)["gradcam"].shape, (4, 16, 16))
    bad = cli("explain", str(sweep_dir), "--methods", "gradcam,lime")
    assert bad.returncode == 2 and "lime" in bad.stderr


def test_choose_indices_modes_are_seeded_and_honest() -> None:
    from archbench.stages.explain.selection import choose_indices

    y = np.repeat(np.arange(5), 10)  # 5 classes × 10 images
    a, _ = choose_indices("random", 6, 1, y)
    assert a == choose_indices("random", 6, 1, y)[0] and a != choose_indices("random", 6, 2, y)[0]
    per, _ = choose_indices("per-class", 5, 0, y)
    assert sorted(int(y[i]) for i in per) == [0, 1, 2, 3, 4]
    wrong = np.zeros((2, 50), dtype=bool)
    wrong[0, [3, 7, 9]] = True
    wrong[1, [7]] = True
    mis, how = choose_indices("mistakes", 4, 0, y, wrong)
    assert mis[0] == 7 and set(mis[:3]) == {3, 7, 9} and how["matching"] == 3 and how["topped_up"] == 1
    assert not wrong[:, mis[3]].any()
    right, _ = choose_indices("correct", 5, 0, y, wrong)
    assert not wrong[:, right].any()
    assert len(choose_indices("random", 99, 0, y)[0]) == 50


def test_selection_is_made_once_per_test_set(tmp_path: Path) -> None:
    from archbench.stages.explain.selection import get_selection, read_selections

    (tmp_path / "runs").mkdir()
    x = np.zeros((20, 1, 4, 4), dtype=np.uint8)
    y = np.arange(20) % 4
    kw: dict[str, Any] = {"select": "random", "images": 3, "seed": 0}
    first = get_selection(tmp_path, "fp-a", x, y, **kw)
    again = get_selection(tmp_path, "fp-a", x, y, **{**kw, "seed": 9})  # a later run reuses it
    assert again.indices == first.indices and again.reused and again.hash == first.hash
    other = get_selection(tmp_path, "fp-b", x[:10], y[:10], **kw)  # another test set: its own group
    assert set(read_selections(tmp_path)) == {"fp-a", "fp-b"} and other.hash != first.hash
    remade = get_selection(tmp_path, "fp-a", x, y, **{**kw, "seed": 9}, policy="match")
    assert remade.seed == 9 and remade.how["replaces"] == first.hash
    assert read_selections(tmp_path)["fp-a"].indices == remade.indices
