"""A full disk, a read-only or unusable results folder, and out-of-memory (RELIABILITY.md cases 8, 10, 30-32):
only the runs that cannot write or allocate fail, with the reason (disk_full, oom) and the path; the previous
checkpoint stays intact and the sweep goes on; refused folders change nothing. Real limits where the
machine allows them (tmpfs and read-only mounts in a mount namespace, RLIMIT_FSIZE, RLIMIT_AS), in a
subprocess so the limit never touches the test process.
"""

from __future__ import annotations

import os
import resource
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from archbench.store.checkpoint import load_checkpoint, state_digest
from archbench.store.record import read_record
from conftest import run_cli, tiny_sweep
from helpers import cli, files_under, one_line_error

pytestmark = pytest.mark.reliability


def test_output_dir_that_is_a_file_is_one_line_exit_2_nothing_changed(tmp_path: Path) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    sweep = tiny_sweep(tmp_path, epochs=1, optimizers="[sgd]")
    before = files_under(tmp_path)
    line = one_line_error(cli("run", str(sweep), cwd=tmp_path))
    assert str(blocker) in line and "not a folder" in line
    assert files_under(tmp_path) == before and blocker.read_text() == "not a folder"


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
    line = one_line_error(res)
    assert "EROFS" in line and str(results) in line
    assert [p.name for p in results.iterdir()] == ["keep.txt"]


def test_disk_full_fails_one_run_keeps_previous_checkpoint_and_resumes_later(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=2, optimizers="[sgd]")
    text = sweep.read_text().replace("model.name: [tiny_cnn]", "model.name: [simple_cnn, tiny_cnn]")
    sweep.write_text(text)
    # 1) simple_cnn is killed during epoch 2, so its epoch-1 checkpoint exists.
    res = run_cli("run", str(sweep), cwd=tmp_path, env={"ARCHBENCH_FAULT": "kill@step:25#simple_cnn"})
    assert res.returncode == -9
    simple = next(d for d in (tmp_path / "results" / "tiny" / "runs").iterdir() if "simple" in d.name)
    before = load_checkpoint(simple / "checkpoints" / "last.pt")
    assert before["epoch"] == 1
    # 2) Files larger than 1 MB cannot be written: simple_cnn's next checkpoint (~2.3 MB) fails, tiny_cnn's
    #    (~50 kB) fits, so that run completes.
    limit = 1_000_000
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("ARCHBENCH_FAULT", None)
    proc = subprocess.run(
        [sys.executable, "-m", "archbench", "run", str(sweep)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)),
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rec = read_record(simple)
    assert rec is not None and rec.status == "failed" and rec.failure_reason == "disk_full"
    detail = rec.failure_detail or ""
    assert "errno 27" in detail and str(simple / "checkpoints") in detail  # errno and the path written
    after = load_checkpoint(simple / "checkpoints" / "last.pt")
    assert state_digest(after) == state_digest(before)  # previous checkpoint intact
    tiny = next(d for d in (tmp_path / "results" / "tiny" / "runs").iterdir() if "tiny" in d.name)
    rec_t = read_record(tiny)
    assert rec_t is not None and rec_t.status == "completed"
    # 3) Space is back: the failed run resumes and completes.
    assert cli("run", str(sweep), cwd=tmp_path).returncode == 0
    rec = read_record(simple)
    assert rec is not None and rec.status == "completed" and rec.resumes >= 1


@needs_mount
def test_disk_full_mid_sweep_fails_only_runs_that_cannot_write(tmp_path: Path) -> None:
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


def test_host_oom_under_rlimit_as_fails_that_run_oom_and_the_sweep_goes_on(tmp_path: Path) -> None:
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


def test_oom_in_one_run_fails_it_and_others_complete(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, epochs=1)
    res = cli("run", str(sweep), cwd=tmp_path, env={"ARCHBENCH_FAULT": "oom@step:2#sgd"})
    assert res.returncode == 1
    assert "1 trained, 1 failed" in res.stdout and "oom" in res.stdout
    recs = [read_record(d) for d in (tmp_path / "results" / "tiny" / "runs").iterdir()]
    assert sorted((r.status, r.failure_reason) for r in recs if r) == [("completed", None), ("failed", "oom")]
