"""MLflow tracking with real MLflow: a sqlite store, and a real `mlflow server` killed mid-sweep (case 24).

The local record is the truth: these tests compare what MLflow holds with the records, run by run.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from archbench.store.record import read_record
from archbench.tracking import outbox
from conftest import REPO, run_cli
from helpers import wait_until

pytest.importorskip("mlflow")

pytestmark = [pytest.mark.slow]

SWEEP = """
name: tracked
output_dir: {out}
data:
  kind: digits
model:
  name: tiny_cnn
train:
  epochs: 2
  batch_size: 64
  lr: 0.05
  threads: 1
seed: 0
grid:
  train.optimizer: {optimizers}
tracking:
  mlflow:
    uri: {uri}
    experiment: tiny-exp
    timeout_s: {timeout}
"""


def _sweep(tmp: Path, out: Path, uri: str, optimizers: str, timeout: float = 10) -> Path:
    path = tmp / "sweep.yaml"
    path.write_text(textwrap.dedent(SWEEP.format(out=out, uri=uri, optimizers=optimizers, timeout=timeout)))
    return path


def mlflow_state(uri: str, experiment: str) -> dict[str, list[dict[str, Any]]]:
    """Everything MLflow holds for the experiment, per archbench run id."""
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=uri)
    exp = c.get_experiment_by_name(experiment)
    assert exp is not None
    out: dict[str, list[dict[str, Any]]] = {}
    for r in c.search_runs([exp.experiment_id]):
        if "archbench.run_id" not in r.data.tags:
            continue  # the sweep folder's parent run
        rid = r.info.run_id
        hist = {k: sorted((m.step, m.value) for m in c.get_metric_history(rid, k)) for k in r.data.metrics}
        arts = sorted((f.path, f.file_size) for f in c.list_artifacts(r.info.run_id))
        out.setdefault(r.data.tags["archbench.run_id"], []).append(
            {
                "name": r.info.run_name,
                "status": r.info.status,
                "end": r.info.end_time,
                "params": dict(r.data.params),
                "tags": {k: v for k, v in r.data.tags.items() if not k.startswith("mlflow.log")},
                "hist": hist,
                "arts": arts,
            }
        )
    return out


def assert_mlflow_equals_records(state: dict[str, list[dict[str, Any]]], runs_dir: Path) -> None:
    records = {d.name: read_record(d) for d in runs_dir.iterdir() if d.is_dir()}
    assert set(state) == set(records)
    status = {"completed": "FINISHED", "failed": "FAILED", "killed": "KILLED", "pruned": "KILLED"}
    for rid, rec in records.items():
        assert rec is not None
        assert len(state[rid]) == 1, f"{rid}: {len(state[rid])} MLflow runs"
        got = state[rid][0]
        assert got["name"] == rid and got["status"] == status[rec.status]
        assert got["tags"]["archbench.spec_hash"] == rec.spec_hash
        assert got["tags"]["archbench.sweep"] == rec.sweep
        assert got["tags"]["archbench.data_fingerprint"] == (rec.data_fingerprint or "")
        assert got["params"]["train.optimizer"] == rec.spec.train.optimizer
        assert got["hist"].get("val_acc", []) == [(h.epoch, h.val_acc) for h in rec.history]
        assert got["hist"].get("train_loss", []) == [(h.epoch, h.train_loss) for h in rec.history]
        arts = dict(got["arts"])
        assert arts.get("record.json") == (runs_dir / rid / "record.json").stat().st_size
        if rec.metrics is not None:
            assert got["hist"]["test_top1"] == [(0, rec.metrics.top1)]
            assert "history.csv" in arts


def test_sqlite_store_one_run_per_record_status_mirrors_and_sync_changes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "results"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep = _sweep(tmp_path, out, uri, "[sgd, adam]", timeout=300)  # all sent live, even on a loaded box
    r = run_cli("run", str(sweep), env={"ARCHBENCH_FAULT": "nan@step:3#adam"})
    assert r.returncode == 1, r.stdout + r.stderr  # adam fails (non-finite loss), sgd completes
    runs_dir = out / "tracked" / "runs"
    before = mlflow_state(uri, "tiny-exp")
    assert_mlflow_equals_records(before, runs_dir)
    assert {s[0]["status"] for s in before.values()} == {"FINISHED", "FAILED"}
    assert not (out / "tracked" / "tracking-outbox.jsonl").exists()
    assert not list(tmp_path.glob("mlruns")) and (tmp_path / "mlartifacts").is_dir()
    s = run_cli("sync", str(out / "tracked"), "--mlflow-uri", uri)
    assert s.returncode == 0, s.stdout + s.stderr
    assert "0 created, 0 updated, 2 unchanged" in s.stdout
    assert mlflow_state(uri, "tiny-exp") == before


def test_every_record_status_has_an_mlflow_status() -> None:
    from typing import get_args

    from mlflow.entities import RunStatus

    from archbench.store.record import Status
    from archbench.tracking.mlflow import STATUS

    assert set(STATUS) == set(get_args(Status))
    for mlflow_status in STATUS.values():
        RunStatus.from_string(mlflow_status)  # raises for a status MLflow does not know


def test_tuned_sweep_with_pruned_trials_then_sync_exits_0(tmp_path: Path) -> None:
    """configs/tune_digits.yaml, made tiny, into a sqlite store: `sync` used to end `KeyError: 'pruned'`."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tiny = ["tune.trials=3", "tune.seeds=[0]", "train.epochs=2", "tune.pruner=successive_halving"]
    sets = [a for kv in [f"output_dir={tmp_path / 'results'}", *tiny] for a in ("--set", kv)]
    r = run_cli("run", str(REPO / "configs" / "tune_digits.yaml"), *sets, "--mlflow-uri", uri)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    sweep = tmp_path / "results" / "tune_digits"
    records = {d.name: read_record(d) for d in (sweep / "runs").iterdir()}
    pruned = [rid for rid, rec in records.items() if rec is not None and rec.status == "pruned"]
    assert pruned  # successive halving keeps only the better half at epoch 1: some trial was pruned
    s = run_cli("sync", str(sweep), "--mlflow-uri", uri)
    assert s.returncode == 0, s.stdout + s.stderr
    state = mlflow_state(uri, "tune_digits")
    assert_mlflow_equals_records(state, sweep / "runs")
    assert all(state[rid][0]["tags"]["archbench.status"] == "pruned" for rid in pruned)
    again = run_cli("sync", str(sweep), "--mlflow-uri", uri)
    assert again.returncode == 0 and f"0 created, 0 updated, {len(records)} unchanged" in again.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(store: Path, artifacts: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{store}",
            "--artifacts-destination",
            str(artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the server's own workers die with it (killpg)
    )

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    try:  # ~25 s on an idle machine; far more when the cores are shared
        wait_until(healthy, 180, "a healthy mlflow server", every=1, alive=proc)
    except AssertionError as exc:
        stop_server(proc)
        raise AssertionError(f"{exc}: {log.read_text()[-2000:]}") from None
    return proc


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


@pytest.mark.reliability
def test_case24_server_down_mid_sweep_then_sync_makes_mlflow_equal_local(tmp_path: Path) -> None:
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    store, artifacts, log = tmp_path / "mlflow.db", tmp_path / "artifacts", tmp_path / "server.log"
    out = tmp_path / "results"
    budget = 3.0
    sweep = _sweep(tmp_path, out, uri, "[sgd, adam, adamw]", timeout=budget)
    server = start_server(store, artifacts, port, log)
    runs_dir = out / "tracked" / "runs"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    env.pop("ARCHBENCH_FAULT", None)
    try:
        sweep_proc = subprocess.Popen(
            [sys.executable, "-m", "archbench", "run", str(sweep)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

        def completed() -> int:
            if not runs_dir.is_dir():
                return 0
            return sum(1 for d in runs_dir.iterdir() if (r := read_record(d)) and r.status == "completed")

        wait_until(lambda: completed() >= 1 or sweep_proc.poll() is not None, 400, "a completed run")
        stop_server(server)  # the server dies mid-sweep
        output, _ = sweep_proc.communicate(timeout=600)
    finally:
        stop_server(server)
    assert sweep_proc.returncode == 0, output
    recs = [read_record(d) for d in runs_dir.iterdir()]
    assert len(recs) == 3 and all(r is not None and r.status == "completed" for r in recs)
    pending = outbox.entries(out / "tracked")
    assert pending and "archbench sync" in output
    # No run waits on the dead server more than once: one note per run, each saying why it gave up (its wait
    # is bounded by construction, the final send joined with timeout_s; no wall-clock assert here).
    assert len({p["run_id"] for p in pending}) == len(pending), pending
    assert all(p["reason"] for p in pending), pending

    server = start_server(store, artifacts, port, log)
    try:
        s = run_cli("sync", str(out / "tracked"), "--mlflow-uri", uri)
        assert s.returncode == 0, s.stdout + s.stderr
        state = mlflow_state(uri, "tiny-exp")
        assert_mlflow_equals_records(state, runs_dir)
        assert not (out / "tracked" / "tracking-outbox.jsonl").exists()
        again = run_cli("sync", str(out / "tracked"), "--mlflow-uri", uri)
        assert again.returncode == 0 and "0 created, 0 updated, 3 unchanged" in again.stdout, again.stdout
        assert mlflow_state(uri, "tiny-exp") == state
    finally:
        stop_server(server)
