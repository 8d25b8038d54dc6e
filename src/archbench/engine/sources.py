"""Batch sources: owns where a split's pixels live while a run uses them, and which of three paths it takes.

* `device-resident`: the whole split copied onto the training device (RAM on CPU) — today's fast path,
  taken when the data fits `data.memory_budget`.
* `host-mapped` (CUDA only): fits the host budget but not the device's: batches are gathered from the
  memory-mapped store in host memory and copied to the device.
* `streamed`: beyond the budget: batches are read from the store with `pread` (never mapped, so the page
  cache is not charged to this process) by a background thread that reads ahead the epoch's order a few
  batches at a time, each batch's rows sorted by file offset; pinned and copied `non_blocking` on CUDA.

Every path feeds the same `BatchMaker` augmentation with the same raw rows in the same order — the
order is the run's seeded permutation, handed over with `plan()` — so a streamed run trains exactly like
an in-memory one and resumes exactly. Only stores from the prepared-data cache (np.memmap) can be mapped
or streamed; in-memory arrays are always device-resident.
"""

from __future__ import annotations

import os
import queue
import threading
import weakref
from typing import Any

import numpy as np
import torch

from archbench.data.registry import Split
from archbench.engine.augment import BatchSource, DeviceSplit, as_tensor
from archbench.util.units import parse_bytes

PATHS = ("device-resident", "host-mapped", "streamed")
READ_AHEAD = 4  # batches read ahead of the one being trained on


def host_available_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def default_budget() -> int:
    """Half the host memory available now (the rest is for the model, activations and other processes)."""
    return host_available_bytes() // 2


def device_budget(device: torch.device, budget: int) -> int:
    if device.type != "cuda":
        return budget
    free, _ = torch.cuda.mem_get_info(device)
    return min(budget, free // 2)


def choose_path(nbytes: int, device: torch.device, budget: int, mappable: bool) -> str:
    """Pure choice of the data path for `nbytes` of data (see the module docstring)."""
    if not mappable:
        return "device-resident"
    if nbytes <= device_budget(device, budget):
        return "device-resident"
    if device.type == "cuda" and nbytes <= budget:
        return "host-mapped"
    return "streamed"


class _Reader:
    """Reads rows of one .npy store: fancy indexing of the map (host-mapped) or coalesced preads."""

    def __init__(self, x: np.memmap, mapped: bool) -> None:
        self.shape = tuple(x.shape)
        self.dtype = x.dtype
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.offset = int(x.offset)
        self.mapped = x if mapped else None
        self.fd = os.open(str(x.filename), os.O_RDONLY) if not mapped else -1

    def _pread(self, out: np.ndarray, first_row: int) -> None:
        view = out.data.cast("B")
        pos, want = 0, view.nbytes
        while pos < want:
            got = os.preadv(self.fd, [view[pos:]], self.offset + first_row * self.row_bytes + pos)
            if got <= 0:
                raise OSError(f"short read from the prepared-data store at row {first_row}")
            pos += got

    def read(self, idx: np.ndarray) -> np.ndarray:
        if self.mapped is not None:
            return np.ascontiguousarray(self.mapped[idx])
        order = np.argsort(idx, kind="stable")
        sidx = idx[order]
        buf = np.empty((idx.shape[0], *self.shape[1:]), dtype=self.dtype)
        # runs of consecutive rows become one read each
        breaks = np.flatnonzero(np.diff(sidx) != 1) + 1
        for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, sidx.shape[0]], strict=True):
            if hi > lo:
                self._pread(buf[lo:hi], int(sidx[lo]))
        out = np.empty_like(buf)
        out[order] = buf
        return out

    def read_range(self, start: int, stop: int) -> np.ndarray:
        stop = min(stop, self.shape[0])
        if self.mapped is not None:
            return np.array(self.mapped[start:stop])
        buf = np.empty((max(0, stop - start), *self.shape[1:]), dtype=self.dtype)
        if buf.size:
            self._pread(buf, start)
        return buf

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _read_ahead(
    reader: _Reader,
    order: np.ndarray,
    batch_size: int,
    start_batch: int,
    pin: bool,
    out: queue.Queue[tuple[int, Any]],
    stop: threading.Event,
) -> None:
    """Background thread: read the planned batches in order into (pinned) host tensors."""
    n_batches = -(-order.shape[0] // batch_size)
    try:
        for b in range(start_batch, n_batches):
            t = as_tensor(reader.read(order[b * batch_size : (b + 1) * batch_size]))
            if pin:
                t = t.pin_memory()
            while not stop.is_set():
                try:
                    out.put((b, t), timeout=0.2)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
    except BaseException as exc:  # handed to the training thread, which raises it
        out.put((-1, exc))


class HostSplit:
    """A split read from the memory-mapped store batch by batch (host-mapped or streamed path)."""

    def __init__(self, split: Split, device: torch.device, streamed: bool) -> None:
        assert isinstance(split.x, np.memmap)
        self.device = device
        self.reader = _Reader(split.x, mapped=not streamed)
        self.y_host = np.asarray(split.y, dtype=np.int64)  # labels by host index: no pageable index copy
        self.y = torch.from_numpy(self.y_host).to(device)
        self.pin = device.type == "cuda"
        self._order: np.ndarray | None = None
        self._batch_size = 0
        self._next = 0
        self._stop = threading.Event()
        self._queue: queue.Queue[tuple[int, Any]] | None = None
        self._thread: threading.Thread | None = None
        # A run that ends by an exception never calls close(): stop its reader when it is collected.
        self._live: dict[str, threading.Event] = {"stop": self._stop}
        weakref.finalize(self, _shutdown, self._live)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def plan(self, order: torch.Tensor, batch_size: int, start_batch: int) -> None:
        self._cancel()
        self._order = order.detach().cpu().numpy().astype(np.int64)
        self._batch_size, self._next = batch_size, start_batch
        self._stop = self._live["stop"] = threading.Event()
        self._queue = queue.Queue(maxsize=READ_AHEAD)
        self._thread = threading.Thread(
            target=_read_ahead,
            args=(self.reader, self._order, batch_size, start_batch, self.pin, self._queue, self._stop),
            name="archbench-read-ahead",
            daemon=True,
        )
        self._thread.start()

    def _to_device(self, host: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cpu":
            return host
        return host.to(self.device, non_blocking=True)

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx_np = idx.detach().cpu().numpy()
        host: torch.Tensor | None = None
        if self._queue is not None and self._order is not None:
            b = self._next
            planned = self._order[b * self._batch_size : (b + 1) * self._batch_size]
            if np.array_equal(planned, idx_np):
                got, item = self._queue.get()
                if got == -1:
                    raise item
                host = item
                self._next += 1
            else:  # off-plan (a caller with its own order): stop reading ahead, read directly
                self._cancel()
        if host is None:
            host = as_tensor(self.reader.read(idx_np))
            if self.pin:
                host = host.pin_memory()
        labels = torch.from_numpy(self.y_host[idx_np])
        if self.pin:
            labels = labels.pin_memory()
        return self._to_device(host), self._to_device(labels)

    def rows(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        host = as_tensor(self.reader.read_range(start, stop))
        if self.pin:
            host = host.pin_memory()
        return self._to_device(host), self.y[start:stop]

    def _cancel(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread, self._queue, self._order = None, None, None

    def close(self) -> None:
        self._cancel()
        self.reader.close()


def _shutdown(live: dict[str, threading.Event]) -> None:
    live["stop"].set()


def _in_memory(split: Split) -> Split:
    """A mapped split read into process memory with plain reads: the copy is the only one charged to the
    process (copying from the map would also keep the mapped pages resident)."""
    if not isinstance(split.x, np.memmap):
        return split
    reader = _Reader(split.x, mapped=False)
    try:
        return Split(reader.read_range(0, split.x.shape[0]), np.asarray(split.y))
    finally:
        reader.close()


def open_sources(
    splits: list[Split],
    device: torch.device,
    memory_budget: int | str | None,
    dataset_bytes: int | None = None,
) -> tuple[list[BatchSource], dict[str, Any]]:
    """Sources for `splits` on the path the budget allows. `dataset_bytes` (the whole prepared dataset,
    all splits) decides, so a run takes one path for training and for test evaluation; without it the
    splits' own size does."""
    nbytes = int(dataset_bytes if dataset_bytes is not None else sum(s.x.nbytes + s.y.nbytes for s in splits))
    budget = parse_bytes(memory_budget) if memory_budget is not None else default_budget()
    mappable = all(isinstance(s.x, np.memmap) for s in splits)
    path = choose_path(nbytes, device, budget, mappable)
    sources: list[BatchSource] = [
        DeviceSplit(_in_memory(s), device)
        if path == "device-resident"
        else HostSplit(s, device, path == "streamed")
        for s in splits
    ]
    info = {
        "path": path,
        "data_bytes": nbytes,
        "memory_budget_bytes": budget,
        "memory_budget_from": "data.memory_budget"
        if memory_budget is not None
        else "half the available host memory",
    }
    return sources, info
