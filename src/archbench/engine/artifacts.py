"""Loading what a recorded run left behind: owns rebuilding a run's model and data from its record.

Later stages (profile, explain, maps, report) use these instead of live objects from training. The data is
rebuilt from the record's spec and checked against the record's fingerprint, so a stage never explains or
scores a run on data other than what it was trained and tested on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from archbench.store.layout import RunLayout
from archbench.store.record import RunRecord, read_record
from archbench.util.errors import ArchbenchError


def require_record(run_dir: Path) -> RunRecord:
    rec = read_record(run_dir)
    if rec is None:
        raise ArchbenchError(f"{run_dir}: no valid record.json (run missing, running or damaged)")
    return rec


def load_bundle(rec: RunRecord) -> Any:
    """The run's dataset, rebuilt from its spec; refuses data whose fingerprint differs from the record."""
    from archbench.data import create_dataset

    bundle = create_dataset(rec.spec.data)
    if rec.data_fingerprint and bundle.fingerprint != rec.data_fingerprint:
        raise ArchbenchError(
            f"run {rec.run_id}: the data under {rec.spec.data.root or rec.spec.data.kind} changed since "
            f"training (fingerprint {bundle.fingerprint[:12]} != recorded {rec.data_fingerprint[:12]})"
        )
    return bundle


def load_model(run_dir: Path, rec: RunRecord, device: Any = "cpu", which: str | None = None) -> Any:
    """The run's network with its evaluated (best or last) weights, in eval mode on `device`."""
    from archbench.models import create_model
    from archbench.store.checkpoint import load_checkpoint

    if rec.data is None or rec.class_names is None:
        raise ArchbenchError(f"run {rec.run_id}: record has no data summary (it never started training)")
    image_size = rec.spec.data.resolution or int(rec.data["native_size"][0])
    model = create_model(
        # pretrained=None: the trained weights come from the checkpoint, the original file may be gone.
        rec.spec.model.model_copy(update={"pretrained": None}),
        in_chans=int(rec.data["in_chans"]),
        num_classes=len(rec.class_names),
        image_size=image_size,
    )
    layout = RunLayout(run_dir)
    path = layout.checkpoint(which or rec.spec.eval.checkpoint)
    vouched = rec.artifacts.get(layout.relative(path))
    if vouched is not None:
        from archbench.util.paths import file_sha256

        if file_sha256(path) != vouched:
            raise ArchbenchError(
                f"{path}: does not match the sha256 in its record (swapped or damaged); "
                "run `archbench verify`, then re-run the sweep to redo the run"
            )
    state = load_checkpoint(path)
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def load_predictions(run_dir: Path) -> dict[str, Any]:
    import numpy as np

    with np.load(RunLayout(run_dir).predictions, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
