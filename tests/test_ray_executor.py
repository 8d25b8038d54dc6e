"""The Ray executor with real Ray, inside a private network namespace (RELIABILITY.md case 23).

Each test body runs as `unshare -n sh -c 'ip link set lo up && exec python …'` so Ray's servers bind only
to a loopback no one else sees. Tiny digits sweeps, one torch thread, CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from archbench.store.record import read_record
from conftest import REPO
from helpers import cli

pytest.importorskip("ray")

pytestmark = [pytest.mark.slow]

SWEEP = """
name: tiny
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
  model.name: [tiny_cnn]
  train.optimizer: {optimizers}
executor:
  max_retries: 1
"""


def _netns_ok() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-n", "sh", "-c", "ip link set lo up && true"], capture_output=True, timeout=30
    )
    return probe.returncode == 0


needs_netns = pytest.mark.skipif(
    not _netns_ok(), reason="unshare -n (private network namespace) not permitted"
)


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO / "tests"), env.get("PYTHONPATH", "")])
    env.pop("ARCHBENCH_FAULT", None)
    env.update(extra)
    return env


def in_netns(argv: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run argv in a fresh network namespace with only the loopback up."""
    quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in argv)
    return subprocess.run(
        ["unshare", "-n", "sh", "-c", f"ip link set lo up && exec {quoted}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _sweep(tmp: Path, name: str, out: Path, optimizers: str) -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(SWEEP.format(out=out, optimizers=optimizers)))
    return path


def _records(out: Path) -> dict[str, object]:
    runs = sorted((out / "tiny" / "runs").iterdir())
    return {d.name: read_record(d) for d in runs}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local executor's records for sgd and adam: what Ray must reproduce."""
    tmp = tmp_path_factory.mktemp("ref")
    out = tmp / "results"
    r = cli("run", str(_sweep(tmp, "s.yaml", out, "[sgd, adam]")))
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def _same_numbers(a: object, b: object) -> None:
    assert a is not None and b is not None
    ma, mb = a.metrics, b.metrics  # type: ignore[attr-defined]
    assert ma.top1 == mb.top1
    assert ma.confusion_matrix == mb.confusion_matrix
    assert [h.val_loss for h in a.history] == [h.val_loss for h in b.history]  # type: ignore[attr-defined]
    assert a.checkpoint_sha256 == b.checkpoint_sha256  # type: ignore[attr-defined]


@needs_netns
def test_ray_local_instance_matches_local_executor_and_rerun_skips(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "results"
    sweep = _sweep(tmp_path, "s.yaml", out, "[sgd, adam]")
    argv = [sys.executable, "-m", "archbench", "run", str(sweep), "--executor", "ray"]
    r = in_netns(argv, _env())
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 trained" in r.stdout and "runs per node" in r.stdout
    ref, got = _records(reference), _records(out)
    assert list(got) == list(ref)  # same run ids
    for rid in ref:
        _same_numbers(got[rid], ref[rid])
        assert got[rid].host.get("ray_node")  # type: ignore[attr-defined]
    before = {rid: (out / "tiny" / "runs" / rid / "record.json").read_bytes() for rid in got}
    again = in_netns(argv, _env())
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 skipped" in again.stdout and "trained" not in again.stdout
    assert before == {rid: (out / "tiny" / "runs" / rid / "record.json").read_bytes() for rid in got}


CLUSTER_SCRIPT = """
import json, os, signal, subprocess, sys, time
from pathlib import Path
from ray.cluster_utils import Cluster
from helpers import wait_until  # tests/ is on PYTHONPATH

sweep, out, report = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
cli = [sys.executable, "-m", "archbench", "run", sweep, "--executor", "ray", "--address", cluster.address]
result = {}

# A: sgd dies once (worker SIGKILLed in epoch 2, retried, resumes); adamw dies on every attempt.
env = dict(os.environ, ARCHBENCH_FAULT="killonce@step:30#sgd,kill@step:3#adamw")
a = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=400)
result["a"] = {"rc": a.returncode, "out": a.stdout, "err": a.stderr[-3000:]}

# B: run again; adamw hangs in epoch 2; the driver is SIGKILLed there, then started again.
env = dict(os.environ, ARCHBENCH_FAULT="hang@step:30#adamw")
b = subprocess.Popen(cli, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
runs = out / "tiny" / "runs"
def adamw_in_epoch_2():
    for d in runs.iterdir():
        if "adamw" in d.name and (d / "checkpoints" / "last.pt").exists():
            return json.loads((d / "record.json").read_text())["status"] == "running"
    return False
try:
    wait_until(adamw_in_epoch_2, 300, "adamw in epoch 2", every=0.5)
except AssertionError:
    pass  # reported as b_reached: false; the cluster is still shut down below
result["b_reached"] = adamw_in_epoch_2()
time.sleep(2)
b.kill()
b.wait()
time.sleep(3)  # Ray notices the dead driver and ends its job's workers
c = subprocess.run(cli, env=dict(os.environ), capture_output=True, text=True, timeout=400)
result["c"] = {"rc": c.returncode, "out": c.stdout, "err": c.stderr[-3000:]}
report.write_text(json.dumps(result))
cluster.shutdown()
"""


def _cluster_script(tmp: Path, text: str, sweep: Path, out: Path) -> dict[str, Any]:
    """Run a script that starts a `ray.cluster_utils.Cluster` in a private network namespace; its report."""
    script, report = tmp / "cluster.py", tmp / "report.json"
    script.write_text(text)
    r = in_netns([sys.executable, str(script), str(sweep), str(out), str(report)], _env(), timeout=900)
    assert r.returncode == 0 and report.exists(), r.stdout[-3000:] + r.stderr[-3000:]
    res: dict[str, Any] = json.loads(report.read_text())
    return res


@needs_netns
@pytest.mark.reliability
def test_case23_ray_retry_persistent_failure_and_driver_restart(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "results"
    res = _cluster_script(
        tmp_path, CLUSTER_SCRIPT, _sweep(tmp_path, "s.yaml", out, "[sgd, adam, adamw]"), out
    )
    ref = _records(reference)

    # A: sgd retried from its checkpoint and equal to the local reference; adamw failed; adam fine.
    a = res["a"]
    assert a["rc"] == 1, a
    assert "2 trained" in a["out"] and "1 failed" in a["out"], a
    runs = out / "tiny" / "runs"
    sgd = next(d for d in runs.iterdir() if "sgd" in d.name)
    adam = next(d for d in runs.iterdir() if d.name.startswith("tiny_cnn_adam-"))
    adamw = next(d for d in runs.iterdir() if "adamw" in d.name)
    rec_sgd = read_record(sgd)
    assert rec_sgd is not None and rec_sgd.status == "completed" and rec_sgd.resumes == 1
    assert any(e["event"] == "owner_died" for e in rec_sgd.events)
    _same_numbers(rec_sgd, ref[sgd.name])
    _same_numbers(read_record(adam), ref[adam.name])

    # B/C: after the driver was killed mid-run, the restart trains only adamw (resuming it); the two
    # completed runs are not touched.
    assert res["b_reached"], res
    c = res["c"]
    assert c["rc"] == 0, c
    assert "2 skipped" in c["out"] and "1 trained" in c["out"], c
    rec_adamw = read_record(adamw)
    assert rec_adamw is not None and rec_adamw.status == "completed"
    assert rec_adamw.resumes == 1 and len(rec_adamw.history) == 2
    events = [e["event"] for e in rec_adamw.events]
    assert "worker_died" in events and "owner_died" in events
    assert read_record(sgd) == rec_sgd


NODE_LOSS_SCRIPT = """
import json, os, subprocess, sys, time
from pathlib import Path
import ray
from ray.cluster_utils import Cluster
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from helpers import wait_until  # tests/ is on PYTHONPATH

sweep, out, report = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
worker = cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
ray.init(address=cluster.address, include_dashboard=False, configure_logging=False, log_to_driver=False)

@ray.remote(num_cpus=1)
class HoldHead:  # takes the head's only CPU, so the run can start on the worker node alone
    def ready(self):
        return ray.get_runtime_context().get_node_id()

hold = HoldHead.options(
    scheduling_strategy=NodeAffinitySchedulingStrategy(cluster.head_node.node_id, soft=False)
).remote()
result = {"head": cluster.head_node.node_id, "worker": worker.node_id}
result["held_on"] = ray.get(hold.ready.remote())

# The run stops before step 30 (epoch 2, after epoch 1's checkpoint) on its first attempt only.
env = dict(os.environ, ARCHBENCH_FAULT="hangonce@step:30")
cli = [sys.executable, "-m", "archbench", "run", sweep, "--executor", "ray", "--address", cluster.address]
proc = subprocess.Popen(cli, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
runs = out / "tiny" / "runs"
def running_record():
    for d in runs.iterdir() if runs.exists() else []:
        if (d / "checkpoints" / "last.pt").exists():
            rec = json.loads((d / "record.json").read_text())
            if rec["status"] == "running":
                return rec
    return None
try:
    wait_until(running_record, 300, "the run's first checkpoint", every=0.5)
except AssertionError:
    pass  # reported as no first_attempt; the cluster is still shut down below
first = running_record()
if first is not None:
    result["first_attempt"] = {"node": first["host"].get("ray_node_id"), "history": len(first["history"])}
time.sleep(1)
ray.kill(hold)  # the head's CPU is free for the retry
cluster.remove_node(worker, allow_graceful=False)  # the node running the run is gone mid-epoch
try:
    text, _ = proc.communicate(timeout=400)
except subprocess.TimeoutExpired:
    proc.kill()
    text, _ = proc.communicate()
result["rc"], result["out"] = proc.returncode, text[-3000:]
report.write_text(json.dumps(result))
ray.shutdown()
cluster.shutdown()
"""


@needs_netns
@pytest.mark.reliability
def test_case23_node_removed_mid_run_retries_on_the_other_node_and_resumes(
    tmp_path: Path, reference: Path
) -> None:
    """A two-node cluster (head + worker, ray.cluster_utils.Cluster): the run starts on the worker node,
    the worker node is removed mid-run, Ray retries the task on the head, and the run resumes from its
    last checkpoint and ends equal to the local executor's."""
    out = tmp_path / "results"
    res = _cluster_script(tmp_path, NODE_LOSS_SCRIPT, _sweep(tmp_path, "s.yaml", out, "[sgd]"), out)
    assert res["held_on"] == res["head"], res
    assert res.get("first_attempt") == {"node": res["worker"], "history": 1}, res  # mid-run on the worker
    assert res["rc"] == 0 and "1 trained" in res["out"], res

    (run,) = (out / "tiny" / "runs").iterdir()
    rec = read_record(run)
    assert rec is not None and rec.status == "completed"
    assert rec.host["ray_node_id"] == res["head"]  # finished by the retry on the other node
    assert rec.resumes == 1 and len(rec.history) == 2  # resumed after epoch 1, not restarted
    assert any(e["event"] == "owner_died" for e in rec.events)
    _same_numbers(rec, _records(reference)[run.name])


TUNED_SWEEP = """
name: tuned
output_dir: {out}
data: {{kind: digits, limit_per_class: 40}}
model: {{name: tiny_cnn}}
train: {{epochs: 2, batch_size: 64, threads: 1}}
grid:
  model.name: [tiny_cnn, simple_cnn]
tune:
  space:
    train.lr: {{type: loguniform, low: 0.01, high: 0.2}}
  trials: 3
  pruner: none
  seeds: [0]
  parallel: 2
executor:
  kind: ray
"""

TUNED_SCRIPT = """
import json, os, subprocess, sys, time
from pathlib import Path
from ray.cluster_utils import Cluster
from archbench.store.lock import RunClaim

sweep, out, report = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
cluster.wait_for_nodes()
cli = [sys.executable, "-m", "archbench", "run", sweep, "--address", cluster.address]
runs = out / "tuned" / "runs"

def trial_states():
    got = {}
    for d in runs.iterdir() if runs.exists() else []:
        if d.name.startswith("trial-") and (d / "record.json").exists():
            status = json.loads((d / "record.json").read_text())["status"]
            if status == "running" and (d / "checkpoints" / "last.pt").exists():
                status = "running, epoch 1 saved"  # where hang@trial holds it
            got[d.name] = status
    return got

# A: trial 2 of each cell hangs after its first epoch; once both hang (the 4 others finished), the
# driver is SIGKILLed.
env = dict(os.environ, ARCHBENCH_FAULT="hang@trial:2")
a = subprocess.Popen(cli, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
deadline = time.time() + 400
def both_hang():
    states = list(trial_states().values())
    return states.count("completed") == 4 and states.count("running, epoch 1 saved") == 2
while time.time() < deadline and not both_hang():
    time.sleep(0.5)
result = {"a_reached": both_hang(), "a_states": trial_states()}
a.kill()
result["a_out"] = a.communicate()[0][-3000:]
deadline = time.time() + 120  # Ray ends the dead driver's workers: their claims come free
def claimed():
    out = []
    for d in runs.iterdir():
        c = RunClaim(d)
        if c.try_acquire():
            c.release()
        else:
            out.append(d.name)
    return out
while time.time() < deadline and claimed():
    time.sleep(0.5)
finished = {d.name: (d / "record.json").read_text() for d in runs.iterdir()
            if trial_states().get(d.name) == "completed"}

# B: run again; nothing finished is repeated.
b = subprocess.run(cli, env=dict(os.environ), capture_output=True, text=True, timeout=400)
result["b"] = {"rc": b.returncode, "out": b.stdout[-3000:], "err": b.stderr[-3000:]}
result["unchanged"] = all((runs / n / "record.json").read_text() == t for n, t in finished.items())
result["finished_before"] = sorted(finished)
report.write_text(json.dumps(result))
cluster.shutdown()
"""


@needs_netns
@pytest.mark.reliability
def test_tuned_sweep_runs_trials_at_once_on_ray_with_equal_budgets_and_resumes_after_a_driver_kill(
    tmp_path: Path,
) -> None:
    """`tune.parallel: 2` on a 2-CPU Ray cluster: trials of a cell train at the same time (their record
    intervals overlap), every cell spends the same trials and epochs as one at a time would, and a driver
    SIGKILLed with two trials half done is rerun without repeating a finished trial."""
    out = tmp_path / "results"
    sweep = tmp_path / "tuned.yaml"
    sweep.write_text(textwrap.dedent(TUNED_SWEEP.format(out=out)))
    res = _cluster_script(tmp_path, TUNED_SCRIPT, sweep, out)
    assert res["a_reached"], res
    b = res["b"]
    assert b["rc"] == 0, b
    assert "2 requeued from a dead process" in b["out"], b
    assert res["unchanged"] and len(res["finished_before"]) == 4, res

    runs = out / "tuned" / "runs"
    trials = [
        r for r in (read_record(d) for d in runs.iterdir()) if r and r.tune and r.tune["role"] == "trial"
    ]
    assert len(trials) == 6 and all(r.status == "completed" and len(r.history) == 2 for r in trials)
    resumed = [r for r in trials if r.resumes]
    assert len(resumed) == 2 and all(r.resumes == 1 for r in resumed)
    assert all(sum(e["event"] == "started" for e in r.events) == 1 + r.resumes for r in trials)

    # Overlap, from the records of trials that ran once: some pair trained at the same time.
    once = [(r.started_at, r.ended_at) for r in trials if not r.resumes]
    assert any(max(s1, s2) < min(e1, e2) for i, (s1, e1) in enumerate(once) for (s2, e2) in once[i + 1 :]), (
        once
    )

    summary = json.loads((out / "tuned" / "tune" / "summary.json").read_text())
    assert [(c["spent"]["trials"], c["spent"]["epochs"]) for c in summary["cells"]] == [(3, 6), (3, 6)]
    assert summary["equal_budget"]
    assert [c["spent"]["abandoned_and_requeued"] for c in summary["cells"]] == [1, 1]


SIGTERM_SCRIPT = """
import json, signal, subprocess, sys, time
from pathlib import Path

sweep, out, report = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
cli = [sys.executable, "-m", "archbench", "run", sweep, "--executor", "ray"]
proc = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
runs = out / "tiny" / "runs"
deadline = time.time() + 300
def checkpointed():
    found = runs.iterdir() if runs.exists() else []
    return [d.name for d in found if (d / "checkpoints" / "last.pt").exists()]
while time.time() < deadline and not checkpointed():
    time.sleep(0.3)
proc.send_signal(signal.SIGTERM)
text, _ = proc.communicate(timeout=120)
report.write_text(json.dumps({"rc": proc.returncode, "out": text[-3000:], "checkpointed": checkpointed()}))
"""


@needs_netns
@pytest.mark.reliability
def test_sigterm_stops_a_ray_sweep_and_its_running_runs_end_killed(tmp_path: Path) -> None:
    """RELIABILITY case 6 on Ray: ray.init's own SIGTERM handler (which aborts the driver) is replaced by
    the sweep's, so the running runs are cancelled, checkpoint at their next step and end `killed`."""
    out = tmp_path / "results"
    sweep = _sweep(tmp_path, "s.yaml", out, "[sgd, adam]")
    sweep.write_text(sweep.read_text().replace("epochs: 2", "epochs: 200"))
    res = _cluster_script(tmp_path, SIGTERM_SCRIPT, sweep, out)
    assert res["rc"] == 130, res
    killed = [read_record(out / "tiny" / "runs" / name) for name in res["checkpointed"]]
    assert killed and all(r is not None and r.status == "killed" for r in killed), res
