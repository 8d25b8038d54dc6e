"""What a training run's checkpoint holds: owns `TrainState` (everything that changes while a run trains),
`EpochSums` (the epoch's running sums) and the RNG states; never decides when to checkpoint (epoch.py does).

`TrainState.to_checkpoint` / `restore` are exact inverses (with the global RNGs), which is what makes a
killed and resumed run bitwise equal to an uninterrupted one on CPU.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from archbench.engine.best import WeightsEma
from archbench.util import faults


@dataclass
class EpochSums:
    """The epoch's running sums. `loss` (float64), `correct` (int64) and `first_bad` (the first global step
    whose loss was non-finite, -1 while none was) stay on the device, so no step waits for them; they are
    read at the log interval only (epoch.py's `read_sums`). `seen` (rows), `seconds` and `compile_seconds`
    are host numbers. In a data-parallel run each rank keeps its own; `RankContext.reduce_sums` adds them."""

    loss: torch.Tensor
    correct: torch.Tensor
    first_bad: torch.Tensor
    seen: int = 0
    seconds: float = 0.0
    compile_seconds: float = 0.0

    @classmethod
    def fresh(cls, device: torch.device) -> EpochSums:
        return cls(
            loss=torch.zeros((), dtype=torch.float64, device=device),
            correct=torch.zeros((), dtype=torch.int64, device=device),
            first_bad=torch.full((), -1, dtype=torch.int64, device=device),
        )

    @classmethod
    def from_saved(cls, saved: dict[str, Any], device: torch.device) -> EpochSums:
        """`to_saved`'s dict back on the device (checkpoints from before the device-side sums held Python
        numbers and no `first_bad` or `compile_seconds`)."""
        out = cls.fresh(device)
        for key in ("loss", "correct", "first_bad"):
            if key in saved:
                kept = getattr(out, key)
                setattr(out, key, torch.as_tensor(saved[key], dtype=kept.dtype).to(device))
        out.seen, out.seconds = int(saved["seen"]), float(saved["seconds"])
        out.compile_seconds = float(saved.get("compile_seconds", 0.0))
        return out

    def to_saved(self) -> dict[str, Any]:
        """The checkpoint's `sums` (a plain dict: checkpoints load with weights_only=True)."""
        return {
            "loss": self.loss,
            "correct": self.correct,
            "first_bad": self.first_bad,
            "seen": self.seen,
            "seconds": self.seconds,
            "compile_seconds": self.compile_seconds,
        }


def _rng_state(device: torch.device, data_gen: torch.Generator) -> dict[str, Any]:
    np_state: tuple[Any, ...] = tuple(np.random.get_state())
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "data": data_gen.get_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device, data_gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    data_gen.set_state(state["data"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainState:
    """Everything that changes while a run trains, and the only thing a checkpoint holds."""

    model: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    data_gen: torch.Generator
    device: torch.device
    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    perm: torch.Tensor | None = None  # this epoch's data order (host); None between epochs
    draws: dict[str, torch.Tensor] | None = None  # this epoch's augmentation draws (host), row k: perm[k]
    sums: EpochSums = field(default_factory=lambda: EpochSums.fresh(torch.device("cpu")))
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    resumes: int = 0
    owner: dict[str, str] = field(default_factory=dict)  # run_id and spec_hash, written into every checkpoint
    # The epoch's order and draws on the device (copied once per epoch or resume; never saved).
    on_device: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None
    # Weights of an improved epoch not yet written to `best` (a device copy; written with the next `last`).
    best_model: dict[str, torch.Tensor] | None = None
    ema: WeightsEma | None = None  # `train.ema`: the averaged weights (saved as `ema`)
    # `train.early_stopping` (saved): the reference best (`value`, `epoch`: the last improvement of more
    # than min_delta), `stale` epochs since, and `stopped` ({epoch, reason}) once it ended the run.
    early: dict[str, Any] = field(default_factory=dict)

    @property
    def stopped(self) -> bool:
        """Early stopping ended the run."""
        return "stopped" in self.early

    def to_checkpoint(self) -> dict[str, Any]:
        return {
            **self.owner,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "rng": _rng_state(self.device, self.data_gen),
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "step": self.step,
            "perm": self.perm,
            "draws": self.draws,
            "sums": self.sums.to_saved(),
            "history": self.history,
            "best": self.best,
            "events": self.events,
            "resumes": self.resumes,
            # Only when on, so a checkpoint without these options holds what it always held.
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
            **({"early_stop": self.early} if self.early else {}),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a `to_checkpoint` dict (counts one more resume)."""
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if not faults.skip_restore("scheduler"):
            self.sched.load_state_dict(state["scheduler"])
        if not faults.skip_restore("rng"):
            _set_rng_state(state["rng"], self.device, self.data_gen)
        self.epoch, self.batch_in_epoch, self.step = state["epoch"], state["batch_in_epoch"], state["step"]
        self.perm = state["perm"]
        self.draws = state.get("draws")  # absent in older checkpoints: drawn when the epoch goes on
        self.on_device = None
        self.sums = EpochSums.from_saved(state["sums"], self.device)
        self.history = list(state["history"])
        self.best = dict(state["best"])
        self.events = list(state.get("events", [])) + self.events
        self.resumes = int(state.get("resumes", 0)) + 1
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])
        self.early = dict(state.get("early_stop", {}))
        self.events.append(
            {
                "event": "resumed",
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "step": self.step,
            }
        )
