"""The report on a real sweep: digits, two models × two seeds, one run made to fail with a NaN loss.

Fixture data is made here: the sweep is trained in a subprocess by the real CLI; variants (a deleted
record, hostile names, one seed, stage outputs) are copies of it edited the way a user or a later stage
would. No mocks. The HTML is rendered once in headless Chromium.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from archbench.engine.artifacts import load_predictions
from archbench.report import build_report
from archbench.report.stats import holm, mcnemar_exact
from archbench.store.record import RunRecord, read_record, write_record
from conftest import REPO
from helpers import cli

SWEEP_YAML = """
name: reportsweep
output_dir: {out}
data: {{kind: digits}}
model: {{name: tiny_cnn}}
train: {{epochs: 1, batch_size: 64, threads: 1}}
grid:
  model.name: [tiny_cnn, simple_cnn]
  seed: [0, 1]
"""
FAILING = "simple_cnn_1"
HOSTILE = "<script>alert(1)</script>"
FORMULA = '=HYPERLINK("http://evil.example","x")'
FIGURE_KINDS = (
    "accuracy",
    "training_curves",
    "accuracy_vs_params",
    "accuracy_vs_train_time",
    "per_class_accuracy",
    "confusion_best_worst",
    "confused_pairs",
    "significance_matrix",
)


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report_sweep")
    yaml_path = tmp / "sweep.yaml"
    yaml_path.write_text(textwrap.dedent(SWEEP_YAML.format(out=tmp / "results")))
    res = cli("run", str(yaml_path), cwd=tmp, env={"ARCHBENCH_FAULT": f"nan@step:2#{FAILING}"})
    assert res.returncode == 1, res.stdout + res.stderr  # one run fails by design
    return tmp / "results" / "reportsweep"


@pytest.fixture(scope="module")
def report_dir(sweep_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report_out") / "report"
    res = cli("report", str(sweep_dir), "--out", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "report.html" in res.stdout
    return out


def _records(sweep: Path) -> dict[str, RunRecord | None]:
    return {d.name: read_record(d) for d in sorted((sweep / "runs").iterdir())}


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _copy(sweep: Path, dest: Path) -> Path:
    target = dest / sweep.name
    # checkpoints too: a record vouches for their sha256, and a run missing them does not verify
    shutil.copytree(sweep, target, ignore=shutil.ignore_patterns("report"))
    return target


def _edit_record(run_dir: Path, **changes: Any) -> None:
    rec = read_record(run_dir)
    assert rec is not None
    write_record(run_dir, rec.model_copy(update=changes))
    assert read_record(run_dir) is not None  # still trusted: none of these fields is in the spec hash


def _mcnemar_by_hand(b: int, c: int) -> float:
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n)


# ------------------------------------------------------------------------------------------ the real sweep


@pytest.mark.slow
def test_tables_hold_exactly_the_completed_runs(sweep_dir: Path, report_dir: Path) -> None:
    recs = _records(sweep_dir)
    completed = {rid for rid, r in recs.items() if r is not None and r.status == "completed"}
    failed = [rid for rid, r in recs.items() if r is not None and r.status == "failed"]
    assert len(completed) == 3 and len(failed) == 1 and FAILING in failed[0]

    configs = _csv(report_dir / "tables" / "configurations.csv")
    in_aggregates = [rid for row in configs for rid in row["runs"].split()]
    assert sorted(in_aggregates) == sorted(completed)
    assert {row["configuration"] for row in configs} == {"tiny_cnn", "simple_cnn"}
    assert [int(r["rank"]) for r in configs] == [1, 2]

    runs = {row["run id"]: row for row in _csv(report_dir / "tables" / "runs.csv")}
    assert set(runs) == set(recs)
    assert runs[failed[0]]["status"] == "failed" and runs[failed[0]]["top-1 (%)"] == ""

    bad = _csv(report_dir / "tables" / "failed_or_missing.csv")
    assert [(r["run id"], r["status"], r["reason"]) for r in bad] == [
        (failed[0], "failed", "non_finite_loss@2")
    ]
    html = (report_dir / "report.html").read_text()
    assert "Incomplete sweep" in html and "non_finite_loss@2" in html


@pytest.mark.slow
def test_aggregates_equal_the_records(sweep_dir: Path, report_dir: Path) -> None:
    from scipy import stats

    for row in _csv(report_dir / "tables" / "configurations.csv"):
        recs = [read_record(sweep_dir / "runs" / rid) for rid in row["runs"].split()]
        assert all(r is not None and r.metrics is not None for r in recs)
        assert int(row["n"]) == len(recs)
        for col, attr in (("top-1", "top1"), ("F1 macro", "f1_macro"), ("F1 weighted", "f1_weighted")):
            values = [100 * getattr(r.metrics, attr) for r in recs if r is not None]
            assert float(row[f"{col} mean (%)"]) == pytest.approx(np.mean(values), abs=1e-9)
            if len(values) > 1:
                std = np.std(values, ddof=1)
                half = stats.t.ppf(0.975, len(values) - 1) * std / math.sqrt(len(values))
                assert float(row[f"{col} std (%)"]) == pytest.approx(std, abs=1e-9)
                assert float(row[f"{col} CI low (%)"]) == pytest.approx(max(0.0, np.mean(values) - half))
                assert row[f"{col} CI method"] == "t"
        kappas = [r.metrics.kappa for r in recs if r is not None and r.metrics is not None]
        assert float(row["kappa mean"]) == pytest.approx(np.mean(kappas), abs=1e-12)
        if len(recs) == 1:  # simple_cnn lost seed 1: its top-1 interval is a bootstrap over test examples
            assert row["top-1 CI method"] == "bootstrap" and row["top-1 std (%)"] == ""
            assert (
                float(row["top-1 CI low (%)"])
                <= float(row["top-1 mean (%)"])
                <= float(row["top-1 CI high (%)"])
            )
        train = [r.train_seconds for r in recs if r is not None]
        assert float(row["train time mean (s)"]) == pytest.approx(np.mean(train))
        assert int(row["params"]) == recs[0].params["total"]  # type: ignore[union-attr,index]


@pytest.mark.slow
def test_significance_tests_recompute_from_predictions(sweep_dir: Path, report_dir: Path) -> None:
    rows = _csv(report_dir / "tables" / "mcnemar_per_seed.csv")
    assert [int(r["seed"]) for r in rows] == [0]  # the only seed both configurations completed
    for row in rows:
        a = load_predictions(sweep_dir / "runs" / row["run A"])
        b = load_predictions(sweep_dir / "runs" / row["run B"])
        ra, rb = a["y_pred"] == a["y_true"], b["y_pred"] == b["y_true"]
        n_b, n_c = int(np.sum(ra & ~rb)), int(np.sum(~ra & rb))
        assert (int(row["b (only A right)"]), int(row["c (only B right)"])) == (n_b, n_c)
        assert float(row["McNemar p"]) == pytest.approx(_mcnemar_by_hand(n_b, n_c), rel=1e-9, abs=1e-300)
    comp = _csv(report_dir / "tables" / "comparisons.csv")
    assert len(comp) == 1 and comp[0]["delta CI method"] == "bootstrap"


@pytest.mark.slow
def test_report_is_complete_and_self_contained(sweep_dir: Path, report_dir: Path) -> None:
    for kind in FIGURE_KINDS:
        assert (report_dir / "figures" / f"{kind}.png").stat().st_size > 1000, kind
        assert (report_dir / "figures" / f"{kind}.svg").read_text().lstrip().startswith("<?xml"), kind
    html = (report_dir / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') >= len(FIGURE_KINDS)
    assert "http://" not in html and "https://" not in html and "<link" not in html
    assert 'class="sortable"' in html and "Content-Security-Policy" in html
    tex = (report_dir / "report.tex").read_text()
    assert "\\toprule" in tex and "\\usepackage{booktabs}" in tex
    assert (report_dir / "tables" / "configurations.tex").read_text().count("\\midrule") == 1
    md = (report_dir / "report.md").read_text()
    assert "| rank | configuration | n | top-1 (%)" in md and "figures/accuracy.png" in md
    for rec_dir in (sweep_dir / "runs").iterdir():
        rec = read_record(rec_dir)
        assert rec is not None and rec.spec_hash[:12] in html and rec_dir.name in html

    manifest = json.loads((report_dir / "report_manifest.json").read_text())
    listed = {m["run_id"]: m for m in manifest["records"]}
    assert set(listed) == {d.name for d in (sweep_dir / "runs").iterdir()}
    for rid, m in listed.items():
        assert (
            m["sha256"] == hashlib.sha256((sweep_dir / "runs" / rid / "record.json").read_bytes()).hexdigest()
        )
        assert m["used_in_aggregates"] == (FAILING not in rid)
    outputs = {o["path"]: o["sha256"] for o in manifest["outputs"]}
    assert outputs["report.html"] == hashlib.sha256((report_dir / "report.html").read_bytes()).hexdigest()


@pytest.mark.slow
def test_deleted_record_is_listed_as_missing(sweep_dir: Path, tmp_path: Path) -> None:
    sweep = _copy(sweep_dir, tmp_path)
    victim = next(d for d in sorted((sweep / "runs").iterdir()) if d.name.startswith("tiny_cnn_1"))
    (victim / "record.json").unlink()
    result = build_report(sweep, tmp_path / "out", "csv,html")
    bad = {r["run id"]: r for r in _csv(tmp_path / "out" / "tables" / "failed_or_missing.csv")}
    assert bad[victim.name]["status"] == "missing"
    configs = {r["configuration"]: r for r in _csv(tmp_path / "out" / "tables" / "configurations.csv")}
    assert configs["tiny_cnn"]["n"] == "1" and victim.name not in configs["tiny_cnn"]["runs"]
    assert result.not_completed == {"failed": 1, "missing": 1} and result.completed == 2
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Incomplete sweep: 2 of 4 planned runs completed (1 failed, 1 missing)" in html


@pytest.mark.slow
def test_hostile_names_are_escaped_and_csv_cells_neutralised(sweep_dir: Path, tmp_path: Path) -> None:
    sweep = _copy(sweep_dir, tmp_path)
    for run_dir in (sweep / "runs").iterdir():
        rec = read_record(run_dir)
        assert rec is not None
        name = HOSTILE if rec.spec.model.name == "tiny_cnn" else FORMULA
        changes: dict[str, Any] = {"sweep": HOSTILE, "axes": {"model.name": name, "seed": rec.seed}}
        if rec.status == "failed":
            changes["failure_detail"] = "@SUM(1+1) <img src=x onerror=alert(2)>"
            changes["failure_reason"] = "+cmd|' /C calc'!A0"
        _edit_record(run_dir, **changes)
    build_report(sweep, tmp_path / "out", "html,md,csv,tex")
    out = tmp_path / "out"

    html = (out / "report.html").read_text()
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script>") == 1  # ours: the table sorter, allowed by hash in the CSP
    md = (out / "report.md").read_text()
    assert "<script>" not in md and "<img" not in md
    tex = (out / "report.tex").read_text()
    assert "<script>" not in tex and "\\textless{}script\\textgreater{}" in tex

    cells = [cell for p in (out / "tables").glob("*.csv") for row in csv.reader(p.open()) for cell in row]
    assert "'" + FORMULA in cells and "'+cmd|' /C calc'!A0" in cells
    for cell in cells:
        if cell[:1] in ("=", "+", "-", "@"):
            float(cell)  # only numbers (negative differences) may start so; anything else was quoted


@pytest.mark.slow
def test_one_seed_sweep_warns_on_the_first_screen(sweep_dir: Path, tmp_path: Path) -> None:
    sweep = _copy(sweep_dir, tmp_path)
    plan = json.loads((sweep / "plan.json").read_text())
    keep = [r for r in plan["runs"] if r["axes"]["seed"] == 0]
    for r in plan["runs"]:
        if r not in keep:
            shutil.rmtree(sweep / "runs" / r["run_id"])
    (sweep / "plan.json").write_text(json.dumps({**plan, "runs": keep}))
    result = build_report(sweep, tmp_path / "out", "html,csv")
    html = (tmp_path / "out" / "report.html").read_text()
    warning = html.find("Single seed: every configuration has exactly one completed seed")
    assert 0 < warning < html.find("<nav>") and "Incomplete sweep" not in html
    assert result.completed == 2 and not result.not_completed
    assert {r["top-1 CI method"] for r in _csv(tmp_path / "out" / "tables" / "configurations.csv")} == {
        "bootstrap"
    }


@pytest.mark.slow
def test_stage_sections_and_profile_blocks_are_embedded(sweep_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    sweep = _copy(sweep_dir, tmp_path)
    for run_dir in (sweep / "runs").iterdir():
        rec = read_record(run_dir)
        if rec is None or rec.status != "completed" or rec.params is None:
            continue
        p = rec.params["total"]
        per_res = [
            {"resolution": r, "gmacs": p * r * r * 1e-9, "latency_ms_p50": 0.01 * r,
             "throughput_img_s": 1e5 / r, "peak_memory_mb": 0.1 * r}
            for r in (8, 16, 32)
        ]  # fmt: skip
        profile = {"params_total": p, "gmacs": p * 64e-9, "resolution": 8, "latency_ms_p50": 0.08,
                   "latency_ms_p90": 0.1, "throughput_img_s": 12500.0, "peak_memory_mb": 0.8,
                   "per_resolution": per_res}  # fmt: skip
        _edit_record(run_dir, stages={"profile": profile})
    for name, title in (
        ("map", "Maps"),
        ("explain", "Explanations"),
        ("zeta", "Zeta"),
        ("profile", "Profile"),
    ):
        folder = sweep / "stages" / name
        folder.mkdir(parents=True)
        Image.new("L", (40, 30), 128).save(folder / "fig.png")
        (folder / "table.csv").write_text("model,value\ntiny_cnn,=1+1\n")
        index = {
            "title": title,
            "figures": [
                {"path": "fig.png", "caption": f"{title} figure {HOSTILE}"},
                {"path": "../../plan.json"},
            ],
            "tables": [{"title": f"{title} table", "csv": "table.csv"}],
            "notes": [f"{title} note"],
        }
        (folder / "index.json").write_text(json.dumps(index))
    build_report(sweep, tmp_path / "out", "html,csv")
    out = tmp_path / "out"
    html = (out / "report.html").read_text()
    positions = [html.find(f"{t} note") for t in ("Profile", "Explanations", "Maps", "Zeta")]
    assert all(p > 0 for p in positions) and positions == sorted(positions)
    assert "Profile figure &lt;script&gt;" in html and "is not a file inside" in html
    assert (out / "figures" / "accuracy_vs_gmacs.png").exists()
    assert (out / "figures" / "profile_vs_resolution.png").exists()
    prof = _csv(out / "tables" / "profile.csv")
    assert {r["configuration"] for r in prof} == {"tiny_cnn", "simple_cnn"}
    assert all(float(r["latency p50 (ms)"]) == pytest.approx(0.08) for r in prof)
    stage_cells = [
        c for p in (out / "tables").glob("stage_*.csv") for row in csv.reader(p.open()) for c in row
    ]
    assert "'=1+1" in stage_cells and "=1+1" not in stage_cells


@pytest.mark.slow
def test_html_renders_in_headless_chromium(report_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:  # `make browser` (run by `make test`) installs it where it can
        pytest.skip("chromium is not installed (`make browser` could not install it on this machine)")
    shot = tmp_path / "report.png"
    cmd = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2000", f"--screenshot={shot}",
        f"file://{report_dir / 'report.html'}",
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert shot.exists(), res.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1280, 2000)
        pixels = np.asarray(im.convert("L"), dtype=float)
    assert pixels.std() > 20  # text, tables and figures, not a blank page


# ------------------------------------------------------------------------------------------ pure pieces


def test_mcnemar_on_hand_built_prediction_files(tmp_path: Path) -> None:
    y = np.array([0, 1, 2, 3] * 10)
    pred_a, pred_b = y.copy(), y.copy()
    pred_b[:9] = (y[:9] + 1) % 4  # b = 9 examples only A gets right
    pred_a[30:32] = (y[30:32] + 1) % 4  # c = 2 examples only B gets right
    pred_a[35] = pred_b[35] = (y[35] + 2) % 4  # both wrong: not discordant
    for name, pred in (("a", pred_a), ("b", pred_b)):
        (tmp_path / name).mkdir()
        np.savez_compressed(tmp_path / name / "predictions.npz", y_true=y, y_pred=pred, probs=np.eye(4)[pred])
    a, b = load_predictions(tmp_path / "a"), load_predictions(tmp_path / "b")
    result = mcnemar_exact(a["y_true"], a["y_pred"], b["y_pred"])
    assert (result.b, result.c) == (9, 2)
    # 2 * P(X <= 2) for X ~ Binomial(11, 1/2) = 2 * (1 + 11 + 55) / 2048
    assert result.p_value == pytest.approx(
        2 * (math.comb(11, 0) + math.comb(11, 1) + math.comb(11, 2)) / 2**11
    )
    assert result.p_value == pytest.approx(67 / 1024)
    assert mcnemar_exact(y, y, y).p_value == 1.0


def test_holm_adjustment_matches_the_textbook() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    assert holm([]) == []


def test_cli_refuses_a_folder_without_a_sweep(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from archbench.cli.app import app

    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "no sweep found" in res.output
    (tmp_path / "runs").mkdir()
    res = CliRunner().invoke(app, ["report", str(tmp_path), "--formats", "html,pdf"])
    assert res.exit_code == 2 and "pdf" in res.output
    assert not os.path.exists(tmp_path / "report")


def test_many_configurations_summarise_figures_but_keep_every_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past SIGNIFICANCE_TOP configurations the matrix shows the best ones and a sentence sums up every
    pair; past MAX_FIGURE_ROWS the per-configuration figures show the best and worst halves; past
    MAX_DOCUMENT_ROWS (lowered here) the per-seed tests are named by their CSV instead of shown; the
    pairwise table still lists all k(k-1)/2 pairs (records written by the benchmark's generator)."""
    import importlib.util

    from archbench.report import document
    from archbench.report.figures import MAX_FIGURE_ROWS, SIGNIFICANCE_TOP

    spec = importlib.util.spec_from_file_location("report_scale", REPO / "benchmarks" / "report_scale.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    k = max(SIGNIFICANCE_TOP, MAX_FIGURE_ROWS) + 3
    sweep = gen.write_sweep(tmp_path, configs=k, seeds=2, n_test=200)
    monkeypatch.setattr(document, "MAX_DOCUMENT_ROWS", k)
    result = build_report(sweep, out=tmp_path / "report", formats="html,csv")
    assert result.configurations == k and result.completed == 2 * k
    pairs = _csv(tmp_path / "report" / "tables" / "comparisons.csv")
    assert len(pairs) == k * (k - 1) // 2
    assert len(_csv(tmp_path / "report" / "tables" / "mcnemar_per_seed.csv")) == 2 * len(pairs)
    html = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert f"Shown: the {SIGNIFICANCE_TOP} best of {k} configurations" in html
    assert f"Over all {len(pairs)} compared pairs" in html
    assert f"for the 6 best of {k} configurations" in html  # training curves: one summary row
    half = MAX_FIGURE_ROWS // 2
    assert html.count(f"the figure shows the {half} best and the {half} worst") == 2  # bars, per class
    assert 'id="t-comparisons"' in html and html.count("<tr>") >= len(pairs)  # every pair, in the page too
    assert 'id="t-mcnemar_per_seed"' not in html
    assert (
        f"{2 * len(pairs):,} rows, too many to read here; every row is in tables/mcnemar_per_seed.csv" in html
    )


@pytest.mark.slow
def test_rebuild_starts_from_scratch_and_never_replaces_a_foreign_folder(
    sweep_dir: Path, tmp_path: Path
) -> None:
    from archbench.util.errors import ArchbenchError

    sweep = _copy(sweep_dir, tmp_path)
    out = tmp_path / "out"
    build_report(sweep, out, "csv,html")
    (out / "stale.txt").write_text("from an earlier build")
    (out / "figures" / "old_figure.png").write_bytes(b"x")
    result = build_report(sweep, out, "md")
    assert not (out / "stale.txt").exists() and not (out / "figures" / "old_figure.png").exists()
    assert not (out / "report.html").exists() and (out / "report.md").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no build leftovers
    assert sorted(result.files) == sorted(p for p in out.rglob("*") if p.is_file())
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(ArchbenchError, match="not an archbench report"):
        build_report(sweep, foreign, "csv")
    assert (foreign / "keep.txt").read_text() == "mine" and len(list(foreign.iterdir())) == 1
