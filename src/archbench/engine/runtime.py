"""Where and how a run computes: owns device resolution, precision (AMP, channels_last), autocast,
device info, determinism and parameter counts; never trains, evaluates or reads records.

Every stage (train, evaluate, profile, explain, map) takes its policy from here, so "which device and which
precision" is decided in one place. torch is imported lazily: importing this module stays cheap.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from archbench.util.errors import RunFailure

if TYPE_CHECKING:
    import torch

    from archbench.config import TrainSpec

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(choice: str) -> torch.device:
    """`auto` → CUDA when torch sees one, else CPU; `cuda` without a CUDA device is a `no_cuda` failure."""
    import torch

    if choice not in DEVICE_CHOICES:
        raise RunFailure("bad_device", f"device {choice!r}: use one of {', '.join(DEVICE_CHOICES)}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RunFailure("no_cuda", "device cuda but torch sees no CUDA device; use device: auto or cpu")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def amp_enabled(train: TrainSpec, device: torch.device) -> bool:
    # bf16 autocast is ~20x slower than fp32 on CPU, so "auto" means CUDA only.
    return train.amp == "on" or (train.amp == "auto" and device.type == "cuda")


def channels_last_enabled(train: TrainSpec, device: torch.device) -> bool:
    return train.channels_last == "on" or (train.channels_last == "auto" and device.type == "cuda")


def autocast(device: torch.device, enabled: bool) -> Any:
    """bf16 autocast on `device` when `enabled`, else a no-op context."""
    if not enabled:
        return nullcontext()
    import torch

    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor onto `device` without making the host wait: pinned and `non_blocking` on CUDA (the
    caching host allocator keeps the pinned buffer alive until the copy is done); as is on CPU."""
    if device.type != "cuda":
        return t
    return t.pin_memory().to(device, non_blocking=True)


def read_scalars(*values: torch.Tensor) -> list[float]:
    """Device scalars as Python floats, through one device-to-host copy: on CUDA the host waits once for
    all of them. The training loop reads the device only through here (at its log interval)."""
    import torch

    host = torch.stack([v.detach().reshape(()).double() for v in values]).cpu()
    return [float(v) for v in host]


def device_info(device: torch.device, train: TrainSpec) -> dict[str, Any]:
    """What a run computed on (the record's `device` block)."""
    import torch

    info: dict[str, Any] = {"type": device.type, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        info["capability"] = list(torch.cuda.get_device_capability(device))
    else:
        import platform

        info["name"] = platform.processor() or platform.machine()
    info["amp"] = "bf16" if amp_enabled(train, device) else "off"
    info["channels_last"] = channels_last_enabled(train, device)
    info["deterministic"] = deterministic_enabled(train, device)  # resolved: what the run computed with
    info["deterministic_setting"] = train.deterministic
    info["cudnn_benchmark"] = device.type == "cuda" and not info["deterministic"]
    info["compile"] = train.compile
    info["host_allocator"] = _host_allocator or "default"
    return info


def deterministic_enabled(train: TrainSpec, device: torch.device) -> bool:
    """`deterministic: auto` resolves to true on CPU (bitwise runs and resumes, at no cost worth having)
    and to false on CUDA (cuDNN picks the fastest kernels: autotuning is worth tens of percent)."""
    if train.deterministic == "auto":
        return device.type != "cuda"
    return bool(train.deterministic)


def set_deterministic_algorithms(mode: bool, warn_only: bool, compiling: bool = False) -> None:
    """`torch.use_deterministic_algorithms` without its side effect: it imports torch._inductor (~2 s of
    start-up) only to copy the flag into inductor's config. Unless this run compiles, the C++ flag is set
    directly; once inductor is loaded (or is about to be), the public call keeps the two in step."""
    import sys

    import torch

    public = compiling or "torch._inductor.config" in sys.modules
    if public or not hasattr(torch._C, "_set_deterministic_algorithms"):
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        torch._C._set_deterministic_algorithms(mode, warn_only=warn_only)


def configure_determinism(train: TrainSpec, device: torch.device, seed: int) -> None:
    """Threads, every global RNG seeded, and the `deterministic` policy: deterministic kernels (what bitwise
    resume on CPU relies on) or cuDNN autotuning (`deterministic_enabled`)."""
    import random

    import numpy as np
    import torch

    if train.threads is not None:
        torch.set_num_threads(train.threads)
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    random.seed(seed)
    mode = deterministic_enabled(train, device)
    # CUDA has no deterministic kernel for some backward ops (adaptive max pool): warn instead of failing.
    set_deterministic_algorithms(mode, warn_only=device.type == "cuda", compiling=train.compile)
    # Deterministic mode also fills every new tensor with NaN, to expose kernels that read memory they never
    # wrote: a debugging aid that costs a pass over every output (8-16 % of tiny_cnn's epoch on this 2-core
    # CPU, interleaved pairs at load ~2). Correct kernels never read it, so bitwise results do not depend on
    # it (the resume tests compare weights bitwise).
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
    torch.backends.cudnn.benchmark = not mode


HOST_MMAP_THRESHOLD = 256 * 2**20  # glibc: blocks below this come from the heap, not a fresh mmap
HOST_TRIM_THRESHOLD = 1024 * 2**20  # glibc: free heap above this is returned to the system
_host_allocator: str | None = None


def keep_host_memory() -> str:
    """Keep freed host memory for reuse instead of returning it to the system (glibc `mallopt`), once per
    process; returns what was set (the record's `device.host_allocator`).

    Why: with glibc's defaults a batch-sized tensor freed at the end of one step (e.g. max-pool's gradient
    buffer, 8 MB for tiny_cnn at batch 128) can go back to the kernel and come back as new pages on the
    next step, so every step pays page faults to zero-fill it. On this 2-core CPU that made tiny_cnn's
    archbench epoch 0.90-0.91x a hand loop's (benchmarks/step_throughput.py, 5-7 pairs, load ~1.8);
    the same run with these two settings gave 0.95 (the hand loop's speed was unchanged). CPU only in
    effect; harmless elsewhere; set ARCHBENCH_HOST_ALLOCATOR=default to leave glibc's defaults.
    """
    global _host_allocator
    if _host_allocator is not None:
        return _host_allocator
    import ctypes
    import ctypes.util
    import os

    _host_allocator = "default"
    if os.environ.get("ARCHBENCH_HOST_ALLOCATOR", "") == "default":
        return _host_allocator
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
        ok = libc.mallopt(m_mmap_threshold, HOST_MMAP_THRESHOLD) == 1
        ok = ok and libc.mallopt(m_trim_threshold, HOST_TRIM_THRESHOLD) == 1
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        ok = False
    if ok:
        _host_allocator = (
            f"glibc mmap_threshold={HOST_MMAP_THRESHOLD >> 20}MiB trim={HOST_TRIM_THRESHOLD >> 20}MiB"
        )
    return _host_allocator


def compiled_graphs() -> int:
    """Graphs torch.compile has captured in this process so far (its counter moves when a step compiles)."""
    import sys

    dynamo_utils = sys.modules.get("torch._dynamo.utils")
    if dynamo_utils is None:
        return 0
    return int(dynamo_utils.counters["stats"]["unique_graphs"])
