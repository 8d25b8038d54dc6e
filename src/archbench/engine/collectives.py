"""A data-parallel run's collectives: owns `RankContext`, this process's place in its run's process group and
the few collective operations training uses (rows of a batch, loss weight, agreement, epoch sums).

Tensors and process-group calls only: it never starts a process or reads a file (ddp.py starts the ranks).
Every collective here is called by every rank in the same order, at the same step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import torch
    from torch import nn

    from archbench.engine.state import EpochSums

T = TypeVar("T")


@dataclass(frozen=True)
class RankContext:
    """Who this process is in its run's process group, and the few collective operations training uses."""

    rank: int
    world_size: int
    backend: str  # "nccl" | "gloo"

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that validates and writes."""
        return self.rank == 0

    def rows(self, batch: slice) -> slice:
        """This rank's rows of the global batch `batch` (positions in the epoch's order and draws)."""
        return slice(batch.start + self.rank, batch.stop, self.world_size)

    def loss_weight(self, rows: int, global_rows: int) -> float:
        """Factor on this rank's mean loss so DDP's average over ranks is the global batch's mean loss."""
        return rows * self.world_size / max(1, global_rows)

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """`model` in DistributedDataParallel (it syncs rank 0's weights to every rank at construction)."""
        from torch.nn.parallel import DistributedDataParallel

        if device.type == "cuda":
            import torch

            index = device.index if device.index is not None else torch.cuda.current_device()
            return DistributedDataParallel(model, device_ids=[index], output_device=index)
        return DistributedDataParallel(model)

    def _tensor(self, values: list[float], device: torch.device) -> torch.Tensor:
        import torch

        where = device if self.backend == "nccl" else torch.device("cpu")
        return torch.tensor(values, dtype=torch.float64, device=where)

    def agree(self, flags: tuple[bool, ...], device: torch.device) -> tuple[bool, ...]:
        """Rank 0's `flags` on every rank (stop and checkpoint decisions are rank 0's alone)."""
        import torch.distributed as dist

        t = self._tensor([1.0 if f else 0.0 for f in flags], device)
        dist.broadcast(t, src=0)
        return tuple(bool(v > 0) for v in t.tolist())

    def main_first(self, fn: Callable[[], T], device: torch.device) -> T:
        """`fn()` on rank 0, then on the other ranks (e.g. reading `last`, which rank 0 may set aside)."""
        if self.is_main:
            out = fn()
            self.agree((True,), device)
            return out
        self.agree((True,), device)
        return fn()

    def share_first_bad(self, sums: EpochSums) -> None:
        """`sums.first_bad` (the first step whose loss was non-finite, -1: none) made the earliest over all
        ranks, in place, so every rank fails the run naming the same step (gradients are shared: one rank's
        non-finite loss spoils every rank's next step). Called where the sums are read anyway."""
        import torch
        import torch.distributed as dist

        bad = sums.first_bad
        none = torch.iinfo(torch.int64).max
        earliest = torch.where(bad < 0, torch.full_like(bad, none), bad)
        dist.all_reduce(earliest, op=dist.ReduceOp.MIN)
        bad.copy_(torch.where(earliest == none, torch.full_like(bad, -1), earliest))

    def reduce_sums(self, sums: EpochSums) -> EpochSums:
        """The epoch's sums over every rank, as a new `EpochSums`: `loss`, `correct` and `seen` added,
        `first_bad` the earliest; `seconds` and `compile_seconds` stay this rank's. Called at the epoch's
        end and before a stop's checkpoint, where the sums are read anyway."""
        import torch
        import torch.distributed as dist

        loss, correct = sums.loss.clone(), sums.correct.clone()
        dist.all_reduce(loss)
        dist.all_reduce(correct)
        out = dataclasses.replace(sums, loss=loss, correct=correct, first_bad=sums.first_bad.clone())
        self.share_first_bad(out)
        seen = torch.tensor(int(sums.seen), dtype=torch.int64, device=sums.loss.device)
        dist.all_reduce(seen)
        out.seen = int(seen.item())
        return out
