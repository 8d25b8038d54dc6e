"""Where and how a run computes: owns device resolution, precision (AMP, channels_last), autocast,
device info, determinism and parameter counts; never trains, evaluates or reads records.

Every stage (train, evaluate, profile, explain, map) takes its policy from here, so "which device and which
precision" is decided in one place. torch is imported lazily: importing this module stays cheap.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from .errors import RunFailure

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .config import TrainSpec

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
    torch.backends.cudnn.benchmark = not mode


def compiled_graphs() -> int:
    """Graphs torch.compile has captured in this process so far (its counter moves when a step compiles)."""
    import sys

    dynamo_utils = sys.modules.get("torch._dynamo.utils")
    if dynamo_utils is None:
        return 0
    return int(dynamo_utils.counters["stats"]["unique_graphs"])


def count_params(model: nn.Module) -> dict[str, int]:
    """Total and trainable (requires_grad) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": int(total), "trainable": int(trainable)}
