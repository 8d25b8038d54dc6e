"""Reliability catalogue cases 25-34 (../shared/RELIABILITY.md): limits, clear errors, confined writes,
faults and tamper evidence. All carry the `reliability` marker.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

from archbench.sweep.expand import expand_sweep, load_sweep_text
from archbench.util.errors import ConfigError
from conftest import image_folder_sweep, run_cli, tiny_sweep

pytestmark = pytest.mark.reliability

BASE = "name: s\ndata: {kind: digits}\ntrain: {epochs: 1}\n"


def _one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    return lines[0]


def _files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*"))


# --- 27: YAML built to exhaust --------------------------------------------------------------------------


def _alias_bomb(levels: int = 9) -> str:
    text = "name: bomb\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, levels):
        text += f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n"
    return text


def test_nested_alias_bomb_is_refused_at_its_line(tmp_path: Path) -> None:
    text = _alias_bomb()
    assert len(text) < 1024  # 1 KB that would expand to 10^9 values
    with pytest.raises(ConfigError, match=r"bomb\.yaml:7:\d+: YAML aliases expand to more than"):
        load_sweep_text(text, path="bomb.yaml")
    # A modest, honest use of aliases still works.
    cfg = load_sweep_text("name: s\nseed: &s 3\ndata: {kind: digits, split_seed: *s}\n")
    assert cfg.data.split_seed == 3


def test_alias_bomb_deep_nesting_and_huge_file_exit_2_and_create_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cases = {
        "bomb.yaml": _alias_bomb().replace("name: bomb", f"name: bomb\noutput_dir: {out}"),
        "deep.yaml": f"name: deep\noutput_dir: {out}\nx: " + "[" * 10_000 + "]" * 10_000 + "\n",
        "recursive.yaml": f"name: r\noutput_dir: {out}\nx: &a [*a]\n",
    }
    expected = {
        "bomb.yaml": "aliases expand",
        "deep.yaml": "nested deeper than",
        "recursive.yaml": "recursive alias",
    }
    for name, text in cases.items():
        p = tmp_path / name
        p.write_text(text)
        line = _one_line_error(run_cli("run", str(p), cwd=tmp_path, timeout=120))
        assert f"{p}:" in line and expected[name] in line, line
    big = tmp_path / "big.yaml"
    with big.open("w") as f:
        f.write(f"name: big\noutput_dir: {out}\n")
        f.write("# " + "x" * (11 * 1024 * 1024) + "\n")
    line = _one_line_error(run_cli("run", str(big), cwd=tmp_path, timeout=120))
    assert str(big) in line and "more than" in line
    assert not out.exists()


# --- 28: a grid with a huge product ---------------------------------------------------------------------


def test_huge_grid_is_refused_before_the_product_is_built(tmp_path: Path) -> None:
    axes = {
        "seed": list(range(10)),
        "data.split_seed": list(range(10)),
        "train.epochs": list(range(1, 11)),
        "train.batch_size": list(range(1, 11)),
        "train.lr": [0.01 * i for i in range(1, 11)],
        "model.dropout": [0.05 * i for i in range(10)],
        "train.momentum": [0.05 * i for i in range(10)],
    }
    out = tmp_path / "out"
    p = tmp_path / "grid.yaml"
    p.write_text(
        f"name: g\noutput_dir: {out}\n" + "grid:\n" + "".join(f"  {k}: {v}\n" for k, v in axes.items())
    )
    line = _one_line_error(run_cli("run", str(p), cwd=tmp_path, timeout=120))
    assert "10,000,000 runs" in line and "max_runs 100,000" in line and f"{p}:" in line
    assert not out.exists()
    # The cap is a setting: raised, a 10^3 grid passes; lowered, it is refused.
    small = BASE + "grid: {seed: [0, 1, 2], train.lr: [0.1, 0.2]}\n"
    assert len(expand_sweep(load_sweep_text(small))) == 6
    with pytest.raises(ConfigError, match="6 runs .*max_runs 5"):
        load_sweep_text(small + "max_runs: 5\n")
    assert len(expand_sweep(load_sweep_text(small, overrides=["max_runs=6"]))) == 6


# --- 29: non-finite and overflowing values --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        (BASE, ["train.lr=.inf"], "--set 'train.lr=.inf': train.lr = inf is not a finite number"),
        (BASE, ["train.lr=.nan"], "train.lr = nan is not a finite number"),
        (BASE, ["grid.train.lr=[0.1, .inf]"], "train.lr[1] = inf is not a finite number"),
        (BASE.replace("epochs: 1", "epochs: 1, lr: 1e308"), [], "s.yaml:3: train.lr = 1e+308 overflows"),
        (BASE.replace("epochs: 1", "epochs: 1, lr: -.inf"), [], "s.yaml:3: train.lr = -inf"),
        (BASE + "seed: 18446744073709551616\n", [], "s.yaml:4: seed = 18446744073709551616 does not fit"),
        (BASE + "seed: 9223372036854775808\n", [], "seed = 9223372036854775808 does not fit"),
        (BASE + "grid: {seed: [0, 18446744073709551616]}\n", [], "s.yaml:4: grid.seed[1] ="),
        (BASE + "grid: {train.lr: ['1e308']}\n", [], "grid.train.lr[0] = 1e+308 overflows"),
        (BASE.replace("{kind: digits}", "{kind: digits, options: {x: .nan}}"), [], "data.options.x = nan"),
    ],
)
def test_non_finite_and_overflowing_values_are_config_errors(
    text: str, overrides: list[str], expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_sweep_text(text, overrides=overrides, path="s.yaml")
    assert expected in str(info.value)


def test_inf_lr_and_huge_seed_exit_2_from_the_cli_and_create_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = tmp_path / "s.yaml"
    p.write_text(f"name: s\noutput_dir: {out}\n")
    line = _one_line_error(run_cli("run", str(p), "--set", "train.lr=.inf", cwd=tmp_path))
    assert "train.lr = inf" in line
    p.write_text(f"name: s\noutput_dir: {out}\nseed: 18446744073709551616\n")
    line = _one_line_error(run_cli("run", str(p), cwd=tmp_path))
    assert f"{p}:3: seed = 18446744073709551616" in line
    assert not out.exists()


# --- 31: unusable results folder ------------------------------------------------------------------------


def test_output_dir_that_is_a_file_is_one_line_exit_2_nothing_changed(tmp_path: Path) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    sweep = tiny_sweep(tmp_path, epochs=1, optimizers="[sgd]")
    before = _files_under(tmp_path)
    line = _one_line_error(run_cli("run", str(sweep), cwd=tmp_path))
    assert str(blocker) in line and "not a folder" in line
    assert _files_under(tmp_path) == before and blocker.read_text() == "not a folder"


def _can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    res = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True
    )
    return res.returncode == 0


needs_mount = pytest.mark.skipif(
    not _can_mount(), reason="needs `unshare -m` and mount (root or user namespaces) for a real read-only fs"
)


@needs_mount
def test_read_only_results_folder_is_one_line_exit_2_nothing_changed(tmp_path: Path) -> None:
    import shlex
    import sys

    results = tmp_path / "results"
    results.mkdir()
    (results / "keep.txt").write_text("untouched")
    sweep = tiny_sweep(tmp_path, epochs=1, optimizers="[sgd]")
    q = shlex.quote
    script = (
        f"mount --bind {q(str(results))} {q(str(results))} && "
        f"mount -o remount,ro,bind {q(str(results))} && "
        f"exec {q(sys.executable)} -m archbench run {q(str(sweep))}"
    )
    res = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    line = _one_line_error(res)
    assert "EROFS" in line and str(results) in line
    assert [p.name for p in results.iterdir()] == ["keep.txt"]


# --- 33: terminal injection -----------------------------------------------------------------------------


def test_markup_and_escapes_in_names_are_printed_literally(tmp_path: Path) -> None:
    name = "a[/]b[link=http://x]c\x1b[31mred"
    sweep = image_folder_sweep(tmp_path, ["[bold]cat[/]", "\x1b[2Jdog"], name=name)
    res = run_cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout + res.stderr
    assert "sweep a[/]b[link=http://x]c\\x1b[31mred: 1 runs: 1 trained" in out
    assert "\x1b" not in out and "Traceback" not in out
    # A hostile model name is refused with the name shown as text.
    bad = tmp_path / "bad.yaml"
    bad.write_text(f'name: s\noutput_dir: {tmp_path / "r2"}\nmodel: {{name: "[red]x\\e[1m"}}\n')
    line = _one_line_error(run_cli("run", str(bad), cwd=tmp_path))
    assert "[red]x" in line and "\x1b" not in line


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("name: s\ntrain: {epochs: x}\n")
    line = _one_line_error(run_cli("run", str(p), cwd=tmp_path))
    assert f"{p}:2: train.epochs" in line
    missing = tmp_path / "nope.yaml"
    line = _one_line_error(run_cli("run", str(missing), cwd=tmp_path))
    assert str(missing) in line
    res = run_cli("--debug", "ls", str(tmp_path / "empty"), cwd=tmp_path)
    assert res.returncode == 2


# --- 25: tampered results -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def verified_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-run sweep (digits, tiny_cnn, 1 epoch), never modified: tests work on copies."""
    base = tmp_path_factory.mktemp("verified")
    sweep = tiny_sweep(base, epochs=1)
    res = run_cli("run", str(sweep), cwd=base)
    assert res.returncode == 0, res.stdout + res.stderr
    return base


def _copy(base: Path, tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """(sweep file, sweep folder, sgd run, adam run) of a fresh copy of the finished sweep."""
    shutil.copytree(base / "results", tmp_path / "results")
    sweep = tiny_sweep(tmp_path, epochs=1)
    sd = tmp_path / "results" / "tiny"
    runs = sorted((sd / "runs").iterdir())
    sgd = next(r for r in runs if "_sgd-" in r.name)
    adam = next(r for r in runs if "_adam-" in r.name)
    return sweep, sd, sgd, adam


def _edit_metric(sgd: Path, adam: Path) -> None:
    rec = json.loads((sgd / "record.json").read_text())
    rec["metrics"]["top1"] = min(1.0, rec["metrics"]["top1"] + 0.01)
    (sgd / "record.json").write_text(json.dumps(rec, indent=2))


def _copy_record(sgd: Path, adam: Path) -> None:
    shutil.copy(adam / "record.json", sgd / "record.json")


def _bitflip_checkpoint(sgd: Path, adam: Path) -> None:
    p = sgd / "checkpoints" / "best.pt"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))


def _swap_checkpoint(sgd: Path, adam: Path) -> None:
    shutil.copy(adam / "checkpoints" / "best.pt", sgd / "checkpoints" / "best.pt")


def _truncate_predictions(sgd: Path, adam: Path) -> None:
    p = sgd / "predictions.npz"
    p.write_bytes(p.read_bytes()[:500])


def _delete_history(sgd: Path, adam: Path) -> None:
    (sgd / "history.csv").unlink()


TAMPER = {
    "metric_edited": _edit_metric,
    "record_copied_from_other_run": _copy_record,
    "checkpoint_bitflip": _bitflip_checkpoint,
    "checkpoint_swapped": _swap_checkpoint,
    "predictions_truncated": _truncate_predictions,
    "history_deleted": _delete_history,
}


def test_verify_passes_on_an_untouched_sweep(verified_sweep: Path) -> None:
    res = run_cli("verify", str(verified_sweep / "results" / "tiny"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "all 2 runs verified" in res.stdout and res.stdout.count("│ verified") == 2
    rec = json.loads(
        next((verified_sweep / "results" / "tiny" / "runs").iterdir()).joinpath("record.json").read_text()
    )
    assert set(rec["artifacts"]) == {
        "checkpoints/best.pt",
        "checkpoints/last.pt",
        "predictions.npz",
        "history.csv",
    }


def test_predictions_name_the_test_samples(verified_sweep: Path) -> None:
    """predictions.npz says which source rows were tested (the plan's, not an RNG replay) and their names."""

    from archbench.config import DataSpec
    from archbench.data.registry import plan_dataset

    run = next((verified_sweep / "results" / "tiny" / "runs").iterdir())
    rec = json.loads((run / "record.json").read_text())
    pred = np.load(run / "predictions.npz")
    planned = plan_dataset(DataSpec.model_validate(rec["spec"]["data"])).splits["test"]
    assert str(pred["test_source"]) == planned.prefix
    assert np.array_equal(pred["test_index"], planned.index)
    assert np.array_equal(pred["y_true"], planned.y)
    assert list(pred["test_ids"]) == [f"{planned.prefix}:{i}" for i in planned.index]
    assert str(pred["data_fingerprint"]) == rec["data_fingerprint"]
    assert pred["logits"].shape == pred["probs"].shape


@pytest.mark.parametrize("damage", sorted(TAMPER))
def test_verify_and_ls_name_exactly_the_tampered_run(
    verified_sweep: Path, tmp_path: Path, damage: str
) -> None:
    sweep, sd, sgd, adam = _copy(verified_sweep, tmp_path)
    TAMPER[damage](sgd, adam)
    res = run_cli("verify", str(sd))
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"1 of 2 runs NOT verified: {sgd.name}" in res.stdout
    assert f"{adam.name}: " not in res.stdout.split("NOT verified:", 1)[1]
    res = run_cli("ls", str(sd))
    assert res.returncode == 0, res.stderr
    assert f"NOT verified (see `archbench verify`): {sgd.name}" in res.stdout
    csv_rows = {r.split(",")[0]: r for r in (sd / "results.csv").read_text().splitlines()[1:]}
    assert ",NO," in csv_rows[sgd.name] or csv_rows[sgd.name].endswith(",NO") or ",NO" in csv_rows[sgd.name]
    assert ",yes" in csv_rows[adam.name]


def test_report_leaves_out_and_lists_runs_that_do_not_verify(verified_sweep: Path, tmp_path: Path) -> None:
    from archbench.report import build_report

    _, sd, sgd, adam = _copy(verified_sweep, tmp_path)
    good = build_report(sd, tmp_path / "good", ("md",))
    assert any("Every number in this report verified" in w for w in good.warnings)
    _edit_metric(sgd, adam)
    bad = build_report(sd, tmp_path / "bad", ("md",))
    assert any(sgd.name in w and "did NOT verify" in w for w in bad.warnings), bad.warnings
    assert not any("Every number in this report verified" in w for w in bad.warnings)
    md = (tmp_path / "bad" / "report.md").read_text()
    edited = json.loads((sgd / "record.json").read_text())["metrics"]["top1"]
    assert f"{100 * edited:.2f}" not in md  # the edited number is never used


def test_rerun_rebuilds_damaged_derived_files_from_the_checkpoint(
    verified_sweep: Path, tmp_path: Path
) -> None:
    sweep, sd, sgd, adam = _copy(verified_sweep, tmp_path)
    before = json.loads((sgd / "record.json").read_text())
    _truncate_predictions(sgd, adam)
    _delete_history(adam, sgd)
    res = run_cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert run_cli("verify", str(sd)).returncode == 0
    after = json.loads((sgd / "record.json").read_text())
    assert after["metrics"] == before["metrics"]  # rebuilt from the same weights, not retrained
    assert after["history"] == before["history"]
    assert any(e["event"] == "redone" and "predictions.npz" in e["detail"] for e in after["events"])
    assert (adam / "history.csv").exists()


def test_resume_refuses_a_checkpoint_of_another_run(verified_sweep: Path, tmp_path: Path) -> None:
    sweep, sd, sgd, adam = _copy(verified_sweep, tmp_path)
    # sgd is unfinished (record gone) and holds adam's last.pt and best.pt.
    (sgd / "record.json").unlink()
    for name in ("last.pt", "best.pt", "last.prev.pt", "best.prev.pt"):
        (sgd / "checkpoints" / name).unlink(missing_ok=True)
    shutil.copy(adam / "checkpoints" / "last.pt", sgd / "checkpoints" / "last.pt")
    res = run_cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    rec = json.loads((sgd / "record.json").read_text())
    notes = [e["detail"] for e in rec["events"] if e["event"] == "checkpoint_set_aside"]
    assert notes and "belongs to another run" in notes[0]
    assert rec["resumes"] == 0  # trained from scratch, not from adam's weights
    assert (sgd / "checkpoints" / "last.pt.bad-0").exists()
    assert run_cli("verify", str(sd)).returncode == 0


# --- 26: paths read from disk ---------------------------------------------------------------------------


def test_hostile_run_ids_in_plan_and_planted_symlinks_stay_inside(
    verified_sweep: Path, tmp_path: Path
) -> None:
    sweep, sd, sgd, adam = _copy(verified_sweep, tmp_path)
    outside = tmp_path / "outside"
    (outside / "runs" / "x").mkdir(parents=True)
    shutil.copy(adam / "record.json", outside / "runs" / "x" / "record.json")
    plan = json.loads((sd / "plan.json").read_text())
    plan["runs"] += [
        {"run_id": "../../outside/runs/x", "spec_hash": "0"},
        {"run_id": str(outside / "runs" / "x"), "spec_hash": "0"},
    ]
    (sd / "plan.json").write_text(json.dumps(plan))
    before = _files_under(outside)
    res = run_cli("ls", str(sd))
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("unsafe_path") == 2
    res = run_cli("verify", str(sd))
    assert res.returncode == 1 and "unsafe_path" in res.stdout
    assert _files_under(outside) == before
    # Symlinks planted in run folders (a completed one and an unfinished one) are never written through.
    victim = outside / "victim.txt"
    victim.write_text("keep")
    (sgd / "record.json").unlink()
    shutil.rmtree(sgd / "checkpoints")
    (sgd / "checkpoints").symlink_to(outside)
    (adam / "error.txt").symlink_to(victim)
    adam_record = (adam / "record.json").read_text()
    res = run_cli("run", str(sweep), cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert (
        f"failed {sgd.name}: unsafe_path" in res.stdout and f"failed {adam.name}: unsafe_path" in res.stdout
    )
    assert victim.read_text() == "keep"
    assert sorted(p.name for p in outside.iterdir()) == ["runs", "victim.txt"]
    assert (adam / "record.json").read_text() == adam_record  # nothing lost either


# --- 30: disk full in the middle of a sweep -------------------------------------------------------------


@needs_mount
def test_disk_full_mid_sweep_fails_only_runs_that_cannot_write(tmp_path: Path) -> None:
    import shlex
    import sys

    mnt = tmp_path / "disk"
    mnt.mkdir()
    sweep = tiny_sweep(tmp_path, epochs=1, optimizers="[sgd]", out=mnt / "results")
    full = tmp_path / "full.yaml"
    full.write_text(
        sweep.read_text().replace("train.optimizer: [sgd]", "train.optimizer: [sgd, adam, adamw]")
    )
    py, q = shlex.quote(sys.executable), shlex.quote
    log = tmp_path / "log"
    script = f"""
    set -u
    mount -t tmpfs -o size=8m tmpfs {q(str(mnt))} || exit 99
    {py} -m archbench run {q(str(sweep))} > {log}.1 2>&1; echo "first=$?" >> {log}
    dd if=/dev/zero of={q(str(mnt / "filler"))} bs=64k 2>/dev/null
    truncate -s -48K {q(str(mnt / "filler"))}
    {py} -m archbench run {q(str(full))} > {log}.2 2>&1; echo "full=$?" >> {log}
    {py} -m archbench ls {q(str(mnt / "results" / "tiny"))} > {log}.3 2>&1; echo "ls=$?" >> {log}
    cp -r {q(str(mnt / "results"))} {q(str(tmp_path / "snapshot"))} 2>/dev/null
    rm {q(str(mnt / "filler"))}
    {py} -m archbench run {q(str(full))} > {log}.4 2>&1; echo "freed=$?" >> {log}
    {py} -m archbench verify {q(str(mnt / "results" / "tiny"))} > {log}.5 2>&1; echo "verify=$?" >> {log}
    """
    res = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=900)
    codes = dict(line.split("=") for line in (tmp_path / "log").read_text().split())
    full_out = (tmp_path / "log.2").read_text()
    assert codes["first"] == "0", (tmp_path / "log.1").read_text()
    assert codes["full"] == "1", full_out
    assert "Traceback" not in full_out and "1 skipped, 2 failed" in full_out, full_out
    for name in ("adam", "adamw"):
        line = next(ln for ln in full_out.splitlines() if ln.startswith(f"  failed tiny_cnn_{name}-"))
        assert "disk_full: errno 28 (ENOSPC)" in line and str(mnt) in line, line
    assert codes["ls"] == "0", (tmp_path / "log.3").read_text()
    freed = (tmp_path / "log.4").read_text()
    assert codes["freed"] == "0", freed
    assert "2 trained, 1 skipped" in freed, freed
    assert codes["verify"] == "0", (tmp_path / "log.5").read_text()
    assert res.returncode == 0, res.stderr


# --- 32: host out of memory -----------------------------------------------------------------------------


def test_host_oom_under_rlimit_as_fails_that_run_oom_and_the_sweep_goes_on(tmp_path: Path) -> None:
    import sys

    sweep = tiny_sweep(tmp_path, epochs=1, optimizers="[sgd]")
    sweep.write_text(
        sweep.read_text().replace(
            "model.name: [tiny_cnn]", "data.resolution: [4096, 8]\n  model.name: [tiny_cnn]"
        )
    )
    wrapper = textwrap.dedent(f"""
        import resource, runpy, sys
        import torch, sklearn.metrics, archbench.execution.runner
        import archbench.engine.train, archbench.engine.evaluate
        vm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize:")) * 1024
        limit = vm + 1_500_000_000
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        sys.argv = ["archbench", "run", {str(sweep)!r}]
        runpy.run_module("archbench", run_name="__main__")
    """)
    res = subprocess.run(
        [sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "1 trained, 1 failed" in out and "failed 4096_tiny_cnn_sgd-" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("  failed "))
    assert ": oom: " in line, line


# --- 34: a run busy in another live process -------------------------------------------------------------


def test_run_busy_in_a_stopped_process_exits_3_naming_it(tmp_path: Path) -> None:
    import os
    import signal
    import sys
    import time

    sweep = tiny_sweep(tmp_path, epochs=200, optimizers="[sgd]")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("ARCHBENCH_FAULT", None)
    owner = subprocess.Popen(
        [sys.executable, "-m", "archbench", "run", str(sweep)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        runs = tmp_path / "results" / "tiny" / "runs"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            recs = list(runs.glob("*/record.json")) if runs.is_dir() else []
            if recs and '"running"' in recs[0].read_text():
                break
            time.sleep(0.2)
        else:
            pytest.fail("the owner never started its run")
        os.kill(owner.pid, signal.SIGSTOP)
        record_before = recs[0].read_text()
        res = run_cli("run", str(sweep), cwd=tmp_path)
        assert res.returncode == 3, res.stdout + res.stderr
        run_id = recs[0].parent.name
        assert f"busy {run_id}: claimed by pid {owner.pid}" in res.stdout
        assert recs[0].read_text() == record_before  # nothing trained twice, nothing touched
    finally:
        owner.kill()
        owner.wait(timeout=60)
