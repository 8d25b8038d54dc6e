"""Pretrained weights from files on this machine: owns safe reading and partial loading; never downloads.

Every `.pt`/`.pth`/`.bin` file is read with `torch.load(..., weights_only=True)` (never plain pickle), so a
checkpoint carrying code is refused before anything in it runs; `.safetensors` files are read with
safetensors. ImageNet weights are looked up where torch hub / the Hugging Face cache would have put them:

    torchvision:  $TORCH_HOME/hub/checkpoints/<file of Weights.url>   (TORCH_HOME default ~/.cache/torch)
    timm:         $HF_HOME/hub/models--<org>--<name>/snapshots/<rev>/model.safetensors  (HF_HOME default
                  ~/.cache/huggingface), or the torch hub file of the model's `url` for older entries

When absent, the error says which file to put where; `archbench weights` lists them all.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archbench.models.bands import BandMap, adapt_pretrained_input
from archbench.util.errors import CheckpointError, ConfigError, MissingWeightsError

_log = logging.getLogger(__name__)
_WRAPPER_KEYS = ("state_dict", "model")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: a raw state_dict or a dict holding one under 'model'/'state_dict'."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise MissingWeightsError(
            f"model.pretrained: weights file {file} does not exist or is not a file; "
            "give an existing local file, 'imagenet', or null for random init"
        )
    obj: Any
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(file), device="cpu")
        else:
            obj = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message suggests weights_only=False; archbench never does that, so only the cause is kept.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        blocked = [line for line in lines if "GLOBAL" in line or "global" in line]
        if blocked:
            raise CheckpointError(
                file,
                f"refused: it holds Python objects other than tensors ({blocked[0]}); it was read with "
                "weights_only=True and nothing in it ran. Save only a state_dict of tensors.",
            ) from exc
        detail = next((line for line in lines if line.startswith("Unsupported")), lines[-1] if lines else "")
        raise CheckpointError(
            file,
            f"refused: not a weights file that loads with weights_only=True ({detail}); nothing in it ran. "
            "Save a state_dict of tensors with torch.save or safetensors.",
        ) from exc
    except Exception as exc:  # a truncated zip, garbage bytes, a safetensors header error...
        raise CheckpointError(file, f"unreadable as a weights file ({type(exc).__name__}: {exc})") from exc

    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(file, f"holds a {type(obj).__name__}, expected a state_dict (name -> tensor)")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if isinstance(key, str) and isinstance(value, torch.Tensor):
            for prefix in _WRAPPER_PREFIXES:
                key = key.removeprefix(prefix)
            state[key] = value
    if not state:
        raise CheckpointError(file, "holds no tensors; expected a state_dict (name -> tensor)")
    return state


def load_local_weights(
    model: nn.Module,
    path: str | Path,
    band_names: tuple[str, ...] | None = None,
    band_map: BandMap | None = None,
) -> dict[str, Any]:
    """Load a local weights file into `model` as far as it fits; returns what was loaded and skipped, and
    under "input_conv" what the record's model_build says about the first conv.

    Tensors whose shape does not match (typically the head, for another number of classes) are dropped;
    the first conv's weight, when it differs at most in its input channels, is fitted to the dataset's
    bands (`adapt_pretrained_input`: by band name when RGB weights meet named bands, else cyclic tiling).
    Raises `ConfigError` when not a single tensor fits: the file is for another architecture.
    """
    source = read_state_dict(path)
    target = model.state_dict()
    first_conv = next((key for key, value in target.items() if value.ndim == 4), None)
    fitting: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    input_conv: dict[str, Any] = {}
    for key, value in source.items():
        want = target.get(key)
        if want is None:
            continue
        if key == first_conv and value.ndim == 4 and _same_but_in_chans(value.shape, want.shape):
            fitting[key], input_conv = adapt_pretrained_input(value, want.shape[1], band_names, band_map)
        elif value.shape == want.shape:
            fitting[key] = value
        else:
            dropped.append(f"{key} {tuple(value.shape)} -> {tuple(want.shape)}")
    if not fitting:
        raise ConfigError(
            f"model.pretrained: no tensor of {path} fits this model (names or shapes all differ); "
            "is the file for another architecture?"
        )
    result = model.load_state_dict(fitting, strict=False)
    report: dict[str, Any] = {
        "input_conv": input_conv,
        "loaded": sorted(fitting),
        "dropped_shape_mismatch": dropped,
        "missing": list(result.missing_keys),
        "unexpected": sorted(set(source) - set(target)),
    }
    _log.info("loaded %d tensors from %s", len(fitting), path)
    if dropped or report["unexpected"]:
        _log.warning(
            "%s: dropped (shape mismatch): %s; not in model: %s",
            path,
            dropped,
            report["unexpected"][:10],
        )
    return report


def _same_but_in_chans(a: torch.Size, b: torch.Size) -> bool:
    return a[:1] + a[2:] == b[:1] + b[2:]


def _hub_checkpoint_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1].split("?", 1)[0]


def _missing_file_message(what: str, path: Path, url: str) -> str:
    return (
        f"model.pretrained: imagenet: the weights of {what} are not on this machine and archbench never "
        f"downloads. Put the file {path.name} in the folder {path.parent} (download it on a machine with "
        f"network from {url}, e.g. `curl -L -o {path.name} {url}`), or set TORCH_HOME so that "
        "$TORCH_HOME/hub/checkpoints holds it."
    )


def torchvision_imagenet_state_dict(tv_name: str) -> tuple[Path, dict[str, torch.Tensor]]:
    """The file and tensors of a torchvision model's DEFAULT ImageNet weights, from the hub cache only."""
    where = torchvision_weights_location(tv_name)
    if where.found is None:
        what = f"{tv_name} ({where.source})"
        raise MissingWeightsError(_missing_file_message(what, where.expected, where.url))
    return where.found, read_state_dict(where.found)


@dataclass(frozen=True)
class WeightsLocation:
    """Where a model's default ImageNet weights belong on this machine, whether they are there, and the URL.

    `expected` is the file (torch hub cache) or the Hugging Face cache folder (`models--ORG--NAME`) the
    loader looks in; `found` the file it would load, or None; `url` where to fetch it on a machine with
    network; `fetch` the command to do that.
    """

    model: str
    source: str
    file: str
    expected: Path
    found: Path | None
    url: str
    fetch: str


def torchvision_weights_location(tv_name: str) -> WeightsLocation:
    """The torch hub cache file of a torchvision model's DEFAULT weights (`$TORCH_HOME/hub/checkpoints`)."""
    import torchvision

    weights = torchvision.models.get_model_weights(tv_name).DEFAULT
    path = _hub_checkpoint_path(weights.url)
    return WeightsLocation(
        model=tv_name,
        source=f"torchvision {weights}",
        file=path.name,
        expected=path,
        found=path if path.is_file() else None,
        url=weights.url,
        fetch=f"curl -L -o {path.name} {weights.url}",
    )


def timm_weights_location(name: str) -> WeightsLocation:
    """Where timm's default pretrained weights for `name` are looked up: HF cache, else torch hub cache."""
    import huggingface_hub
    from huggingface_hub import constants as hf_constants
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise ConfigError(f"model.pretrained: imagenet: timm model {name!r} has no pretrained weights")
    model = f"timm:{name}"
    if cfg.file:
        file = Path(cfg.file)
        found = file if file.is_file() else None
        return WeightsLocation(model, "timm (file)", file.name, file, found, "", "")
    url = cfg.url if isinstance(cfg.url, str) else ""
    cache = Path(hf_constants.HF_HUB_CACHE)  # read at call time: whoever repoints the cache is honoured
    if cfg.hf_hub_id:
        repo_id, _, revision = cfg.hf_hub_id.partition("@")
        filenames = (
            [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        )
        found_hf: Path | None = None
        for filename in filenames:
            hit = huggingface_hub.try_to_load_from_cache(
                repo_id, filename, cache_dir=str(cache), revision=revision or None
            )
            if isinstance(hit, str) and Path(hit).is_file():
                found_hf = Path(hit)
                break
        if found_hf is None and url and not url.endswith(".npz"):
            hub = _hub_checkpoint_path(url)  # an older timm cache location, still honoured
            found_hf = hub if hub.is_file() else None
        return WeightsLocation(
            model=model,
            source=f"timm {cfg.hf_hub_id}",
            file=filenames[0],
            expected=cache / f"models--{repo_id.replace('/', '--')}",
            found=found_hf,
            url=f"https://huggingface.co/{repo_id}/resolve/{revision or 'main'}/{filenames[0]}",
            fetch=(
                f"huggingface-cli download {repo_id} {filenames[0]} (then copy its "
                f"models--{repo_id.replace('/', '--')} folder into {cache} here)"
            ),
        )
    if url and not url.endswith(".npz"):  # .npz (JAX) files need timm's custom loader: HF copies only
        path = _hub_checkpoint_path(url)
        return WeightsLocation(
            model, "timm (url)", path.name, path, path if path.is_file() else None, url,
            f"curl -L -o {path.name} {url}",
        )  # fmt: skip
    raise ConfigError(
        f"model.pretrained: imagenet: timm model {name!r} has only JAX .npz weights, which archbench does "
        "not read; put a converted weights file on this machine and give its path as model.pretrained"
    )


def timm_pretrained_file(name: str) -> Path:
    """The file holding timm's default pretrained weights for `name`, from the local caches only."""
    where = timm_weights_location(name)
    if where.found is not None:
        return where.found
    if where.expected.name.startswith("models--"):
        hint = (
            f"on a machine with network run `{where.fetch}` (or "
            f"`python -c \"import timm; timm.create_model('{name}', pretrained=True)\"`)"
        )
    else:
        hint = f"put {where.file} (from {where.url}) in the folder {where.expected.parent}"
    raise MissingWeightsError(
        f"model.pretrained: imagenet: the weights of timm model {name!r} are not on this machine and "
        f"archbench never downloads; {hint}."
    )


def imagenet_weights_file(name: str) -> Path:
    """Where `pretrained: imagenet` weights of a registry or `timm:` name are on this machine (cache only);
    raises MissingWeightsError saying which file to put where. Reads no weights (planning check)."""
    if name.startswith("timm:"):
        return timm_pretrained_file(name[len("timm:") :])
    where = torchvision_weights_location(name)
    if where.found is None:
        raise MissingWeightsError(
            _missing_file_message(f"{name} ({where.source})", where.expected, where.url)
        )
    return where.found
