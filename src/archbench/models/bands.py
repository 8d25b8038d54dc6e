"""Band-aware first convs: owns which input band gets which pretrained RGB filter; reads no files.

RGB-pretrained weights (torchvision's, or a local 3-channel file) hold one filter per input channel, in the
order red, green, blue. When the dataset names its bands (a scene file's band list, a raster folder's
band names), each filter goes to the band of that name (case-insensitive: "red", "green", "blue"), or to the
band `model.band_map` names for it (`{red: nir}`: the red filter goes to the band named nir; the channels it
does not name go nowhere). Every other band gets the mean of the three filters. The whole weight is then
scaled by 3/in_chans, as timm's `adapt_input_conv` scales its tiling: a band-constant input gives the same
activation as before. With 3 bands named red, green, blue the weight is unchanged.

A dataset that names no band red, green or blue (and no `band_map`) keeps the cyclic tiling of
`adapt_input_conv`; the record's model_build says which of the two was done.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from archbench.util.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where weights are touched: planning checks a band_map without it
    import torch
    from torch import nn

RGB = ("red", "green", "blue")  # the input channels of RGB-pretrained weights, in order
BandMap = Mapping[Literal["red", "green", "blue"], str]  # model.band_map: pretrained channel -> band name
MEAN_RGB = "mean RGB"


def rgb_assignment(
    band_names: list[str] | tuple[str, ...] | None, band_map: BandMap | None
) -> tuple[dict[int, int], str] | None:
    """{input band index: pretrained channel index (0 red, 1 green, 2 blue)} and where it came from
    ("band names" or "model.band_map"); None when the names give none. Raises ConfigError (one line) for a
    `band_map` naming a band the dataset lacks, a channel other than red/green/blue, or one band twice."""
    lower = [name.lower() for name in band_names or ()]
    if not band_map:
        found = {lower.index(channel): i for i, channel in enumerate(RGB) if channel in lower}
        return (found, "band names") if found else None
    if not lower:
        raise ConfigError(
            "model.band_map: the dataset names no bands (use a scene file or raster folder that names them)"
        )
    out: dict[int, int] = {}
    for channel, band in band_map.items():
        if str(channel).lower() not in RGB:
            raise ConfigError(
                f"model.band_map: {channel!r} is not a pretrained channel; use red, green or blue"
            )
        if str(band).lower() not in lower:
            raise ConfigError(
                f"model.band_map: {channel}: band {band!r} is not one of the dataset's bands "
                f"({', '.join(band_names or ())})"
            )
        index = lower.index(str(band).lower())
        if index in out:
            raise ConfigError(f"model.band_map: band {band!r} is given two pretrained channels; give it one")
        out[index] = RGB.index(str(channel).lower())
    return out, "model.band_map"


def band_aware_weight(weight: torch.Tensor, in_chans: int, assignment: dict[int, int]) -> torch.Tensor:
    """An RGB first-conv weight (O×3×kh×kw) for `in_chans` bands: band i gets filter `assignment[i]`, the
    others the mean of the three; all scaled by 3/in_chans."""
    import torch

    as_float = weight.float()
    mean = as_float.mean(dim=1)
    columns = [as_float[:, assignment[i]] if i in assignment else mean for i in range(in_chans)]
    return (torch.stack(columns, dim=1) * (weight.shape[1] / in_chans)).to(weight.dtype)


def adapt_pretrained_input(
    weight: torch.Tensor,
    in_chans: int,
    band_names: list[str] | tuple[str, ...] | None,
    band_map: BandMap | None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """A pretrained first-conv weight fitted to the dataset's bands, and what the record's model_build says
    about it (empty when nothing was adapted: as many bands as channels, none named red/green/blue)."""
    from archbench.models.surgery import adapt_input_conv

    source = weight.shape[1]
    named = band_names is not None and len(band_names) == in_chans
    plan = rgb_assignment(band_names if named else None, band_map) if source == len(RGB) else None
    if plan is None:
        if band_map:
            raise ConfigError(f"model.band_map needs RGB (3-channel) pretrained weights; these have {source}")
        if in_chans == source:
            return weight.clone(), {}
        why = "names none of red, green, blue" if named else "names no bands"
        return adapt_input_conv(in_chans, weight), {
            "input_bands_from": f"cyclic tiling of the pretrained channels (the dataset {why})"
        }
    assignment, origin = plan
    names = list(band_names or ())
    return band_aware_weight(weight, in_chans, assignment), {
        "input_bands": {
            names[i]: RGB[assignment[i]] if i in assignment else MEAN_RGB for i in range(in_chans)
        },
        "input_bands_from": origin,
        "input_conv_scale": source / in_chans,
    }


def fit_first_conv(
    conv: nn.Conv2d,
    in_chans: int,
    pretrained: bool,
    init: Callable[[nn.Conv2d], None],
    band_names: tuple[str, ...] | None,
    band_map: BandMap | None,
) -> tuple[nn.Conv2d, dict[str, Any]]:
    """`conv` fitted to `in_chans` inputs, and the record's words for it. Pretrained weights go through
    `adapt_pretrained_input`; with as many inputs as before, `conv` itself is kept (its weight rewritten
    in place when the band names move the filters), so no extra random draw shifts the rest of the init."""
    import torch

    from archbench.models.surgery import first_conv_for

    if not pretrained:
        return (conv if in_chans == conv.in_channels else first_conv_for(conv, in_chans, None, init)), {}
    weight, info = adapt_pretrained_input(conv.weight.detach(), in_chans, band_names, band_map)
    if in_chans != conv.in_channels:
        return first_conv_for(conv, in_chans, weight, init), info
    if info:
        with torch.no_grad():
            conv.weight.copy_(weight)
    return conv, info
