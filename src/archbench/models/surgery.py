"""Small, family-agnostic layer surgery (first conv, head, stages); owns no names and reads no files."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn


def adapt_input_conv(in_chans: int, weight: torch.Tensor) -> torch.Tensor:
    """Fit a first-conv weight (O×I×kh×kw) to `in_chans` inputs, as timm's `adapt_input_conv` does.

    One channel: the sum over the source channels (a grey image then gives the RGB response). More:
    the source channels tiled cyclically and scaled by I/in_chans so the output keeps its magnitude.
    """
    source = weight.shape[1]
    if in_chans == source:
        return weight.clone()
    as_float = weight.float()
    if in_chans == 1:
        adapted = as_float.sum(dim=1, keepdim=True)
    else:
        repeats = math.ceil(in_chans / source)
        adapted = as_float.repeat(1, repeats, 1, 1)[:, :in_chans] * (source / in_chans)
    return adapted.to(weight.dtype)


def first_conv_for(
    conv: nn.Conv2d, in_chans: int, weight: torch.Tensor | None, init: Callable[[nn.Conv2d], None]
) -> nn.Conv2d:
    """A copy of `conv` taking `in_chans` inputs: given `weight` (already fitted to `in_chans`, e.g. by
    `adapt_input_conv`) and `conv`'s bias, otherwise freshly `init`ed."""
    new = nn.Conv2d(
        in_chans,
        conv.out_channels,
        kernel_size=conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    if weight is not None:
        with torch.no_grad():
            new.weight.copy_(weight)
            if conv.bias is not None and new.bias is not None:
                new.bias.copy_(conv.bias)
    else:
        init(new)
    return new


def kaiming_fan_out(conv: nn.Conv2d) -> None:
    """The conv init of torchvision's CNNs (fan-out mode does not depend on the input channels)."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def params_of(*parts: nn.Module | nn.Parameter) -> list[nn.Parameter]:
    """The parameters of modules and loose parameters, in order."""
    out: list[nn.Parameter] = []
    for part in parts:
        if isinstance(part, nn.Parameter):
            out.append(part)
        else:
            out.extend(part.parameters())
    return out


def stages_of(named: Iterable[tuple[str, nn.Module]]) -> list[tuple[str, list[nn.Parameter]]]:
    """Named stages from named modules (modules without parameters still count as a stage)."""
    return [(name, params_of(module)) for name, module in named]


def set_head_dropout(head: nn.Sequential, p: float) -> None:
    """Make the layer before the last Linear of `head` a Dropout(p): set an existing one, else insert."""
    if len(head) >= 2 and isinstance(head[-2], nn.Dropout):
        head[-2].p = p
    elif p > 0:
        head.insert(len(head) - 1, nn.Dropout(p))
