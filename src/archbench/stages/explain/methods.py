"""Heatmaps from a model and a batch of inputs: owns the four methods; reads and writes no files.

Each method explains the class it is given (the run's saved prediction) and returns one N×H×W float32
map at the input's spatial size, min-max normalised to [0, 1] per image:
- gradcam: pytorch-grad-cam's GradCAM on the family's target layer (`models.targets`), used as a context
  manager so its hooks are released;
- ig: captum IntegratedGradients from a black image (Gauss-Legendre, `IG_STEPS`), |attribution| summed
  over channels; the convergence deltas (Σ attributions − (F(x) − F(baseline))) are summarised;
- saliency: captum Saliency, max |gradient| over channels (Simonyan et al. 2014);
- attention: attention rollout (Abnar & Zuidema 2020) for ViTs, the class token's row over the patches.
A method that cannot apply to a model (attention on a CNN, Grad-CAM without a target layer) is
`skipped` with a reason; one that fails is an `error`; neither stops the others.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from archbench.models import model_family

BATCH = 16  # images per Grad-CAM / saliency / IG call
IG_STEPS = 50  # captum's default; completeness deltas are recorded so the choice can be checked
IG_INTERNAL_BATCH = 128  # interpolated images per forward pass inside IG
ROLLOUT_RESIDUAL = 0.5  # A' = 0.5·A + 0.5·I accounts for the residual connections


class SkipMethod(Exception):
    """The method does not apply to this model; the message says why."""


@dataclass
class MethodOutcome:
    status: str  # ok | skipped | error
    heatmaps: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)


def normalise_maps(maps: torch.Tensor | np.ndarray) -> np.ndarray:
    """Per-image min-max to [0, 1] (a constant map becomes all zeros), float32 N×H×W."""
    arr = maps.detach().float().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    arr = arr.astype(np.float32, copy=False)
    flat = arr.reshape(arr.shape[0], -1)
    lo = flat.min(1)[:, None, None]
    span = (flat.max(1) - flat.min(1))[:, None, None]
    out = np.where(span > 1e-12, (arr - lo) / np.where(span > 1e-12, span, 1.0), 0.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _batches(n: int, size: int = BATCH) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


# --- Grad-CAM ------------------------------------------------------------------------------------------


def gradcam(model: nn.Module, name: str, x: torch.Tensor, targets: torch.Tensor) -> MethodOutcome:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from archbench.models.targets import NoTargetLayer, gradcam_target

    try:
        layers, reshape = gradcam_target(model, name, example_input=x[:1])
    except NoTargetLayer as exc:
        raise SkipMethod(str(exc)) from None
    layer_name = next((n for n, m in model.named_modules() if m is layers[0]), type(layers[0]).__name__)
    maps = []
    with GradCAM(model=model, target_layers=layers, reshape_transform=reshape) as cam:
        for s, e in _batches(x.shape[0]):
            cam_targets = [ClassifierOutputTarget(int(t)) for t in targets[s:e]]
            out = cam(input_tensor=x[s:e], targets=cam_targets)
            maps.append(np.asarray(out, dtype=np.float32))
    if sum(m.shape[0] for m in maps) != x.shape[0]:  # GradCAM's __exit__ swallows IndexError
        raise RuntimeError("Grad-CAM returned no map for some images")
    model.zero_grad(set_to_none=True)  # CAM's backward filled .grad; free it
    return MethodOutcome("ok", normalise_maps(np.concatenate(maps)), {"layer": layer_name})


# --- captum: integrated gradients and saliency ---------------------------------------------------------


def integrated_gradients(
    model: nn.Module, x: torch.Tensor, targets: torch.Tensor, baseline: torch.Tensor, n_steps: int = IG_STEPS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw IG attributions (same shape as x) and captum's convergence delta per image, in batches."""
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(model)
    attrs, deltas = [], []
    for s, e in _batches(x.shape[0]):
        a, d = ig.attribute(
            x[s:e],
            baselines=baseline.expand_as(x[s:e]),
            target=targets[s:e],
            n_steps=n_steps,
            internal_batch_size=IG_INTERNAL_BATCH,
            return_convergence_delta=True,
        )
        attrs.append(a.detach())
        deltas.append(d.detach())
    return torch.cat(attrs), torch.cat(deltas)


def ig_heatmaps(
    model: nn.Module, x: torch.Tensor, targets: torch.Tensor, baseline: torch.Tensor
) -> MethodOutcome:
    attrs, delta = integrated_gradients(model, x, targets, baseline)
    total = attrs.flatten(1).sum(1)
    gap = (total - delta).abs()  # |F(x) − F(baseline)| for the explained class
    rel = delta.abs() / gap.clamp_min(1e-8)
    info = {
        "n_steps": IG_STEPS,
        "method": "gausslegendre",
        "baseline": "black image (raw 0, normalised)",
        "attribution": "|IG| summed over channels",
        "convergence_delta": {
            "mean_abs": float(delta.abs().mean()),
            "max_abs": float(delta.abs().max()),
            "max_relative": float(rel.max()),
            "per_image": [float(v) for v in delta],
            # Completeness check: attribution_sum − per_image = F(x) − F(baseline) for the explained class.
            "attribution_sum": [float(v) for v in total],
        },
    }
    return MethodOutcome("ok", normalise_maps(attrs.abs().sum(1)), info)


def saliency(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> MethodOutcome:
    from captum.attr import Saliency

    sal = Saliency(model)
    maps = [sal.attribute(x[s:e], target=targets[s:e], abs=True).detach() for s, e in _batches(x.shape[0])]
    grads = torch.cat(maps)
    return MethodOutcome("ok", normalise_maps(grads.amax(1)), {"attribution": "max |gradient| over channels"})


# --- attention rollout ---------------------------------------------------------------------------------


def _attention_modules(model: nn.Module, name: str) -> tuple[list[nn.Module], str]:
    """The attention modules of a ViT, in depth order, and which kind they are."""
    family = model_family(name)
    m: Any = model
    if family == "vit":
        return [layer.self_attention for layer in m.encoder.layers], "torch_mha"
    blocks = getattr(m, "blocks", None)
    if family == "timm" and isinstance(blocks, nn.Sequential | nn.ModuleList) and len(blocks) > 0:
        attns = [getattr(b, "attn", None) for b in blocks]
        if all(isinstance(getattr(a, "qkv", None), nn.Linear) and hasattr(a, "num_heads") for a in attns):
            return [a for a in attns if a is not None], "timm_qkv"
    raise SkipMethod(
        f"attention rollout needs a Vision Transformer (torchvision vit, or a timm model whose blocks have "
        f"attn.qkv); {name} is {family}"
    )


def _timm_weights(attn: Any, x: torch.Tensor) -> torch.Tensor:
    """softmax(q·kᵀ·scale) recomputed from the block's qkv projection (timm's fused kernel keeps none)."""
    b, n, _ = x.shape
    qkv = attn.qkv(x)
    heads = int(attn.num_heads)
    qkv = qkv.reshape(b, n, 3, heads, qkv.shape[-1] // (3 * heads)).permute(2, 0, 3, 1, 4)
    q, k = qkv[0], qkv[1]
    q = attn.q_norm(q) if hasattr(attn, "q_norm") else q
    k = attn.k_norm(k) if hasattr(attn, "k_norm") else k
    scale = float(getattr(attn, "scale", q.shape[-1] ** -0.5))
    return ((q * scale) @ k.transpose(-2, -1)).softmax(-1).mean(1)


def attention_weights(model: nn.Module, name: str, x: torch.Tensor) -> list[torch.Tensor]:
    """Per layer, the head-averaged attention weights B×T×T of one forward pass over `x`."""
    modules, kind = _attention_modules(model, name)
    weights: list[torch.Tensor] = []
    asking = [False]  # the re-call below passes through this same hook

    def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if asking[0]:
            return
        query = args[0] if args else kwargs.get("query", kwargs.get("x"))
        if kind == "torch_mha":
            # torchvision calls MultiheadAttention with need_weights=False; ask again for the weights.
            asking[0] = True
            try:
                _, w = module(query, query, query, need_weights=True, average_attn_weights=True)
            finally:
                asking[0] = False
            weights.append(w.float())
        else:
            weights.append(_timm_weights(module, torch.as_tensor(query)).float())

    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in modules]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return weights


def rollout(weights: list[torch.Tensor]) -> torch.Tensor:
    """Attention rollout: the product over layers of row-normalised (0.5·A + 0.5·I); rows sum to 1."""
    b, t, _ = weights[0].shape
    eye = torch.eye(t, device=weights[0].device, dtype=weights[0].dtype)
    result = eye.expand(b, t, t).clone()
    for a in weights:
        a = ROLLOUT_RESIDUAL * a + (1.0 - ROLLOUT_RESIDUAL) * eye
        a = a / a.sum(-1, keepdim=True)
        result = a @ result
    return result


def _prefix_and_grid(model: nn.Module, name: str, tokens: int) -> tuple[int, bool, tuple[int, int]]:
    m: Any = model
    if model_family(name) == "vit":
        g = m.image_size // m.patch_size
        return 1, True, (g, g)
    prefix = int(getattr(m, "num_prefix_tokens", 0))
    has_cls = getattr(m, "cls_token", None) is not None
    grid: Any = getattr(getattr(m, "patch_embed", None), "grid_size", None)
    n = tokens - prefix
    rows, cols = (int(grid[0]), int(grid[1])) if grid is not None else (int(n**0.5), int(n**0.5))
    if rows * cols != n:
        rows = cols = int(round(n**0.5))
    return prefix, has_cls, (rows, cols)


def attention_rollout(model: nn.Module, name: str, x: torch.Tensor) -> MethodOutcome:
    maps = []
    for s, e in _batches(x.shape[0]):
        r = rollout(attention_weights(model, name, x[s:e]))
        prefix, has_cls, (rows, cols) = _prefix_and_grid(model, name, r.shape[-1])
        # The class token's row says how much each patch fed the prediction; without one, average rows.
        row = r[:, 0, prefix:] if has_cls else r[:, prefix:, prefix:].mean(1)
        grid = row.reshape(-1, 1, rows, cols)
        maps.append(F.interpolate(grid, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0])
    info = {"residual": ROLLOUT_RESIDUAL, "heads": "mean", "read": "class-token row over patches"}
    return MethodOutcome("ok", normalise_maps(torch.cat(maps)), info)


# --- all methods for one model -------------------------------------------------------------------------


def _run_method(
    method: str,
    model: nn.Module,
    name: str,
    x: torch.Tensor,
    targets: torch.Tensor,
    baseline: torch.Tensor | None,
) -> MethodOutcome:
    from archbench.stages.explain import METHODS

    with warnings.catch_warnings():
        # captum notes that it switched on requires_grad for the inputs: expected, not actionable.
        warnings.filterwarnings("ignore", message=".*did not already require gradients.*")
        if method == "gradcam":
            return gradcam(model, name, x, targets)
        if method == "ig":
            return ig_heatmaps(
                model, x, targets, baseline if baseline is not None else torch.zeros_like(x[:1])
            )
        if method == "saliency":
            return saliency(model, x, targets)
        if method == "attention":
            return attention_rollout(model, name, x)
    raise SkipMethod(f"unknown method {method!r}; known: {', '.join(METHODS)}")


def explain_model(
    model: nn.Module,
    name: str,
    x: torch.Tensor,
    targets: torch.Tensor,
    methods: list[str],
    baseline: torch.Tensor | None = None,
) -> dict[str, MethodOutcome]:
    """Run each method on normalised inputs `x` (N×C×H×W, on the model's device) for class `targets`.

    `baseline` is IG's reference input (default zeros). Never raises for a method: the outcome says ok,
    skipped (with a reason) or error.
    """
    model.eval()
    out: dict[str, MethodOutcome] = {}
    for method in methods:
        t0 = time.perf_counter()
        try:
            res = _run_method(method, model, name, x, targets, baseline)
        except SkipMethod as exc:
            res = MethodOutcome("skipped", info={"reason": str(exc)})
        except Exception as exc:  # one method failing must not lose the others
            res = MethodOutcome("error", info={"error": f"{type(exc).__name__}: {exc}"})
        res.info["seconds"] = round(time.perf_counter() - t0, 3)
        out[method] = res
    return out
