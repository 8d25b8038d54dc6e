"""MLflow follows the research loop (issue 22) and carries each sweep folder as a parent run with its models
(issue 25): real sqlite MLflow stores (no server), the real CLI in subprocesses, RELIABILITY case 44.

What MLflow holds is compared with the records, folder by folder: a run is keyed by its sweep folder and
run id, so the same sweep in two output folders keeps two sets of runs and deletes nothing.
"""

from __future__ import annotations

import shlex
import socket
from pathlib import Path
from typing import Any

import pytest

from archbench.store.record import read_record
from conftest import TINY_SWEEP, run_cli
from helpers import cli

pytest.importorskip("mlflow")

TRACKING = """tracking:
  mlflow:
    uri: {uri}
    experiment: loop-exp
    timeout_s: 300
    log_models: {log_models}
"""


def _sweep(
    path: Path, out: Path, uri: str, optimizers: str = "[sgd, adam]", log_models: bool = False
) -> Path:
    """conftest's tiny digits sweep (name `tiny`, one epoch) with an MLflow store."""
    text = TINY_SWEEP.format(out=out, epochs=1, optimizers=optimizers)
    path.write_text(text + TRACKING.format(uri=uri, log_models=str(log_models).lower()))
    return path


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def all_runs(uri: str, experiment: str = "loop-exp") -> list[Any]:
    """Every MLflow run of the experiment, deleted ones included."""
    from mlflow.entities import ViewType

    c = _client(uri)
    exp = c.get_experiment_by_name(experiment)
    assert exp is not None
    return list(c.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, max_results=1000))


def folder_state(uri: str, sweep_root: Path) -> dict[str, Any]:
    """What MLflow holds for one sweep folder: its parent run and its children per archbench run id."""
    c = _client(uri)
    root = str(sweep_root.resolve())
    mine = [r for r in all_runs(uri) if r.data.tags.get("archbench.sweep_dir") == root]
    parents = [r for r in mine if r.data.tags.get("archbench.role") == "sweep"]
    assert len(parents) == 1, f"{root}: {len(parents)} parent runs"
    children: dict[str, list[dict[str, Any]]] = {}
    for r in mine:
        if "archbench.run_id" not in r.data.tags:
            continue
        rid = r.info.run_id
        children.setdefault(r.data.tags["archbench.run_id"], []).append(
            {
                "mlflow_id": rid,
                "status": r.info.status,
                "stage": r.info.lifecycle_stage,
                "tags": {k: v for k, v in r.data.tags.items() if not k.startswith("mlflow.log")},
                "params": dict(r.data.params),
                "hist": {
                    k: sorted((m.step, m.value) for m in c.get_metric_history(rid, k)) for k in r.data.metrics
                },
                "arts": sorted(f.path for f in c.list_artifacts(rid)),
            }
        )
    return {"parent": parents[0].info.run_id, "children": children}


def assert_folder_mirrored(uri: str, sweep_root: Path) -> dict[str, Any]:
    """MLflow holds exactly this folder's records: one complete child per record, under its parent."""
    state = folder_state(uri, sweep_root)
    runs_dir = sweep_root / "runs"
    records = {d.name: read_record(d) for d in runs_dir.iterdir() if d.is_dir()}
    assert set(state["children"]) == set(records)
    status = {"completed": "FINISHED", "failed": "FAILED", "killed": "KILLED"}
    for rid, rec in records.items():
        assert rec is not None
        assert len(state["children"][rid]) == 1, f"{rid}: {len(state['children'][rid])} MLflow runs"
        got = state["children"][rid][0]
        assert got["stage"] == "active" and got["status"] == status[rec.status]
        tags = got["tags"]
        assert tags["mlflow.parentRunId"] == state["parent"]
        assert tags["archbench.spec_hash"] == rec.spec_hash
        assert tags["archbench.version"] == rec.code_version["archbench"]
        assert tags.get("archbench.git_commit") == rec.code_version.get("git_commit")
        assert tags["archbench.record_sha256"]
        assert all(v != "" for v in tags.values()), tags  # no empty tag (failure_reason on completed runs)
        assert "archbench.failure_reason" not in tags
        assert got["hist"]["val_acc"] == [(h.epoch, h.val_acc) for h in rec.history]
        assert rec.metrics is not None and got["hist"]["test_top1"] == [(0, rec.metrics.top1)]
        assert "record.json" in got["arts"] and "history.csv" in got["arts"]
    return state


@pytest.mark.reliability
def test_case44_two_folders_one_store_then_a_kill_between_record_and_tracking(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep = _sweep(tmp_path / "sweep.yaml", tmp_path / "first", uri)
    a = cli("run", str(sweep))
    assert a.returncode == 0, a.stdout + a.stderr
    first = assert_folder_mirrored(uri, tmp_path / "first" / "tiny")

    # The same sweep into a second folder, SIGKILLed after its first run's final record was written and
    # before MLflow heard of it.
    sweep = _sweep(tmp_path / "sweep.yaml", tmp_path / "second", uri)
    killed = run_cli("run", str(sweep), env={"ARCHBENCH_FAULT": "kill@tracking_final"})
    assert killed.returncode == -9, killed.stdout + killed.stderr
    done = [
        d.name
        for d in (tmp_path / "second" / "tiny" / "runs").iterdir()
        if (r := read_record(d)) and r.status == "completed"
    ]
    assert len(done) == 1
    stale = folder_state(uri, tmp_path / "second" / "tiny")["children"][done[0]]
    assert [s["status"] for s in stale] == ["RUNNING"]  # MLflow saw it start, never end

    again = run_cli("run", str(sweep))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"tracking: sent 1 run(s) MLflow had not seen to {uri} ({done[0]})" in again.stdout, again.stdout
    second = assert_folder_mirrored(uri, tmp_path / "second" / "tiny")
    assert second["children"][done[0]][0]["mlflow_id"] == stale[0]["mlflow_id"]  # completed, not replaced
    assert folder_state(uri, tmp_path / "first" / "tiny") == first  # the other folder untouched
    assert all(r.info.lifecycle_stage == "active" for r in all_runs(uri))  # nothing deleted, anywhere
    assert len(all_runs(uri)) == 2 * (1 + 2)  # two parents, two children each

    quiet = cli("run", str(sweep))  # MLflow holds everything: nothing sent, nothing said
    assert quiet.returncode == 0 and "tracking:" not in quiet.stdout, quiet.stdout


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_mlflow_prints_the_exact_sync_command_that_then_catches_up(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}"
    sweep = _sweep(tmp_path / "sweep.yaml", tmp_path / "out", dead, optimizers="[sgd]")
    r = cli("run", str(sweep), "--set", "tracking.mlflow.timeout_s=5")
    assert r.returncode == 0, r.stdout + r.stderr
    root = (tmp_path / "out" / "tiny").resolve()
    command = f"archbench sync {shlex.quote(str(root))} --mlflow-uri {dead} --experiment loop-exp"
    assert f"tracking: MLflow at {dead} cannot be reached (" in r.stdout, r.stdout
    assert f"send what it has not seen later with: {command}" in r.stdout, r.stdout
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    s = cli(*shlex.split(command)[1:-4], "--mlflow-uri", uri, "--experiment", "loop-exp")
    assert s.returncode == 0 and "1 created" in s.stdout, s.stdout + s.stderr
    assert_folder_mirrored(uri, root)


def test_log_models_parent_tags_and_experiment_kind(tmp_path: Path) -> None:
    import mlflow.pytorch
    import torch

    from archbench.engine.artifacts import load_model

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep = _sweep(tmp_path / "sweep.yaml", tmp_path / "out", uri, optimizers="[sgd]", log_models=True)
    r = cli("run", str(sweep))
    assert r.returncode == 0, r.stdout + r.stderr
    root = tmp_path / "out" / "tiny"
    state = assert_folder_mirrored(uri, root)
    ((rid, [child]),) = state["children"].items()
    assert "model" in child["arts"]
    rec = read_record(root / "runs" / rid)
    assert rec is not None and child["tags"]["archbench.model_sha256"] == rec.artifacts["checkpoints/best.pt"]
    c = _client(uri)
    exp = c.get_experiment_by_name("loop-exp")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # not MLflow 3's GenAI overview
    parent = c.get_run(state["parent"])
    assert parent.info.run_name == "out/tiny" and parent.data.tags["archbench.sweep"] == "tiny"

    # The PyTorch flavour loads offline and gives the run's own network's outputs.
    mlflow.set_tracking_uri(uri)
    logged = mlflow.pytorch.load_model(f"runs:/{child['mlflow_id']}/model")
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(logged.eval()(x), load_model(root / "runs" / rid, rec)(x))

    # A run logged before runs had folder keys (no sweep_key, an empty failure_reason tag) is adopted when
    # it holds this very record, not duplicated; the empty tag goes; the model is not logged again.
    c.delete_tag(child["mlflow_id"], "archbench.sweep_key")
    c.set_tag(child["mlflow_id"], "archbench.failure_reason", "")
    s = cli("sync", str(root), "--mlflow-uri", uri)
    assert s.returncode == 0 and "0 created, 1 updated, 0 unchanged" in s.stdout, s.stdout + s.stderr
    after = assert_folder_mirrored(uri, root)
    assert after["children"][rid][0]["mlflow_id"] == child["mlflow_id"]
    assert after["children"][rid][0]["arts"] == child["arts"]


def test_log_models_is_a_tracking_setting_outside_the_spec_hash(tmp_path: Path) -> None:
    from archbench.sweep.expand import expand_sweep, load_sweep

    sweep = _sweep(tmp_path / "sweep.yaml", tmp_path / "out", "sqlite:///x.db")
    cfg = load_sweep(sweep, ["tracking.mlflow.log_models=true"])
    assert cfg.tracking is not None and cfg.tracking.mlflow is not None and cfg.tracking.mlflow.log_models
    off, on = expand_sweep(load_sweep(sweep)), expand_sweep(cfg)
    assert [(r.run_id, r.spec_hash) for r in on] == [(r.run_id, r.spec_hash) for r in off]
