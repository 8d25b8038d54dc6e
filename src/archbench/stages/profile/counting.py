"""Counting a network's size and work: owns parameter counts and MACs/FLOPs per image; never times anything.

FLOPs come from `torch.utils.flop_counter.FlopCounterMode`, which counts matrix multiplies
(mm, addmm, bmm, baddbmm), convolutions and fused attention kernels; MACs = FLOPs / 2. Everything else
(BatchNorm, activations, pooling, softmax, residual adds) is not counted, as in torchvision's published
`_ops` (which are GMACs: resnet50 4.089). Two blind spots of the counter are closed here:
- nn.MultiheadAttention's eval-mode fast path runs one fused op the counter has no formula for, so the
  fast path is switched off while counting (same maths, visible matmuls);
- on CPU, scaled_dot_product_attention dispatches to `_scaled_dot_product_flash_attention_for_cpu`,
  which has no formula either; we add one (the same two matmuls torch counts for the CUDA kernels).
Without both, ViT-B/16 counts 11.27 or 16.85 GMACs instead of its published 17.56.

`count_target` builds the network on the meta device (shapes only, no memory, no arithmetic), so counting
a 512 px ViT costs milliseconds on any machine; counts are functions of shapes, so they equal a real run's.
Where a model cannot run on meta (data-dependent code) it is counted on a real CPU build instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from archbench.models.base import count_params
from archbench.stages.profile.target import Target

if TYPE_CHECKING:
    from torch import nn

FLOP_NOTE = (
    "FLOPs from torch.utils.flop_counter (2 per multiply-add) over matrix multiplies, convolutions and "
    "attention (QK^T and AV); MACs = FLOPs / 2. Not counted: normalisation, activations, pooling, softmax, "
    "elementwise adds. Counted per image (batch 1), eval mode, fp32, MHA fast path off."
)


def _attention_dims(q: Any, k: Any, v: Any) -> tuple[int, int, int, int, int]:
    """(batch x heads, Lq, Lk, E, Ev) of q (..., Lq, E), k (..., Lk, E), v (..., Lk, Ev)."""
    batch_heads = 1
    for n in q[:-2]:
        batch_heads *= int(n)
    return batch_heads, int(q[-2]), int(k[-2]), int(q[-1]), int(v[-1])


def _sdpa_cpu_forward(q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    # QK^T (Lq x E x Lk) then AV (Lq x Lk x Ev); 2 FLOPs per multiply-add.
    bh, lq, lk, e, ev = _attention_dims(q, k, v)
    return 2 * bh * lq * lk * (e + ev)


def _sdpa_cpu_backward(
    grad_out: Any, q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kwargs: Any
) -> int:
    # Recompute QK^T, then dP = dO V^T, dV = P^T dO, dQ = dS K, dK = dS^T Q: the formula torch uses for
    # its CUDA attention kernels.
    bh, lq, lk, e, ev = _attention_dims(q, k, v)
    return 2 * bh * lq * lk * (3 * e + 2 * ev)


def _custom_mapping() -> dict[Any, Any]:
    import torch

    aten = torch.ops.aten
    mapping: dict[Any, Any] = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_cpu_forward
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _sdpa_cpu_backward
    return mapping


def counted_ops() -> list[str]:
    """Names of the ops whose FLOPs are counted (torch's formulas plus ours)."""
    from torch.utils.flop_counter import flop_registry

    return sorted({str(op) for op in flop_registry} | {str(op) for op in _custom_mapping()})


def count_flops(model: nn.Module, example: Any) -> tuple[int, dict[str, int]]:
    """(FLOPs of one forward pass on `example`, FLOPs by op). Eval mode, no grad, MHA fast path off.

    Restores the model's train/eval mode and the MHA fast-path setting afterwards.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    fastpath = torch.backends.mha.get_fastpath_enabled()
    model.eval()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        counter = FlopCounterMode(display=False, custom_mapping=_custom_mapping())
        with torch.no_grad(), counter:
            model(example)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        model.train(was_training)
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), by_op


def count_target(target: Target) -> dict[str, Any]:
    """Params and FLOPs per image of a target: {params_total, params_trainable, flops, flops_by_op,
    counted_on ("meta" or "cpu")}."""
    import torch

    from archbench.stages.profile.target import build_model, example_batch

    try:
        meta = torch.device("meta")
        with meta:  # parameters created inside land on meta too: no allocation, no init arithmetic
            model = build_model(target, meta)
        example = torch.empty(1, target.in_chans, *target.size, device=meta)
        flops, by_op = count_flops(model, example)
        counted_on = "meta"
    except Exception:  # e.g. data-dependent control flow; the real thing gives the same counts, slower
        cpu = torch.device("cpu")
        model = build_model(target, cpu)
        flops, by_op = count_flops(model, example_batch(target, 1, cpu)[0])
        counted_on = "cpu"
    params = count_params(model)
    return {
        "params_total": params["total"],
        "params_trainable": params["trainable"],
        "flops": flops,
        "flops_by_op": by_op,
        "counted_on": counted_on,
    }
