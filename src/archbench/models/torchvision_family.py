"""Torchvision architectures fitted to a ModelSpec: owns their surgery (first conv, pool, head, stages).

Each model is built with `weights=None`. ImageNet weights (only ever from the local torch hub cache) are
loaded into the unmodified 3-channel, 1000-class model first; then the first conv is adapted and the head
replaced, so pretrained stems survive `in_chans != 3`. `dropout` is the p of the Dropout right before the
final Linear, exactly: 0 also removes the head dropout torchvision has by default (mobilenet,
efficientnet, vgg's last one), so the config says what runs.

Stages for `freeze`, stem first: resnet stem (conv1+bn1), layer1..4; vgg the five blocks of `features`
that end in a max-pool; mobilenet/efficientnet the children of `features`; vit the patch embedding
(conv_proj, class token, position embedding), then each encoder layer.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models.mobilenetv2 import MobileNetV2

from archbench.models.bands import fit_first_conv
from archbench.models.base import BuildArgs, Built
from archbench.models.surgery import kaiming_fan_out, params_of, set_head_dropout, stages_of
from archbench.models.weights import torchvision_imagenet_state_dict
from archbench.util.errors import CheckpointError, ConfigError

_VIT_DEFAULT_SIZE = 224


class _MobileNetV2(MobileNetV2):
    """torchvision's MobileNetV2 with its global pooling as a module (`avgpool`), as v3 and EfficientNet have.

    The state_dict is identical to torchvision's (pooling has no parameters).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.avgpool: nn.Module = nn.AdaptiveAvgPool2d(1)

    def _forward_impl(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def build_torchvision(args: BuildArgs) -> Built:
    pretrained = args.spec.pretrained == "imagenet"
    model: Any
    if args.name == "mobilenet_v2":
        model = _MobileNetV2()
    elif args.family == "vit":
        size = args.image_size or _VIT_DEFAULT_SIZE
        if size % 16:
            raise ConfigError(
                f"{args.name} needs an input size that is a multiple of 16 (patch size), got {size}"
            )
        model = torchvision.models.get_model(args.name, weights=None, image_size=size)
    else:
        model = torchvision.models.get_model(args.name, weights=None)
    info: dict[str, Any] = {}
    if args.family == "vit":
        info = _vit_info(model.image_size, model.patch_size, _VIT_DEFAULT_SIZE, pretrained)
    if pretrained:
        path, state = torchvision_imagenet_state_dict(args.name)
        if args.family == "vit" and model.image_size != _VIT_DEFAULT_SIZE:
            from torchvision.models.vision_transformer import interpolate_embeddings

            # bicubic resampling of the 14x14 grid of position embeddings to the run's patch grid
            state = interpolate_embeddings(model.image_size, model.patch_size, OrderedDict(state))
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(path, f"does not fit {args.name}: {str(exc).splitlines()[0]}") from exc
    surgery = {
        "resnet": _resnet,
        "vgg": _vgg,
        "mobilenet": _mobile,
        "efficientnet": _mobile,
        "vit": _vit,
    }[args.family]
    built = surgery(model, args, pretrained)
    built.info.update(info)
    return built


def _vit_info(size: int, patch: int, native: int, pretrained: bool) -> dict[str, Any]:
    """What a reader must know about a ViT built for `size`: its patch grid, whether weights were resized."""
    return {
        "input_size": size,
        "native_input_size": native,
        "patch_grid": [size // patch, size // patch],
        "pos_embed_interpolated": pretrained and size != native,
    }


def _linear_head(in_features: int, num_classes: int, family: str) -> nn.Linear:
    """A new final Linear initialised the way the family's torchvision constructor does."""
    fc = nn.Linear(in_features, num_classes)
    if family in ("vgg", "mobilenet"):
        nn.init.normal_(fc.weight, 0, 0.01)
        nn.init.zeros_(fc.bias)
    elif family == "efficientnet":
        bound = 1.0 / math.sqrt(num_classes)
        nn.init.uniform_(fc.weight, -bound, bound)
        nn.init.zeros_(fc.bias)
    elif family == "vit":
        nn.init.zeros_(fc.weight)
        nn.init.zeros_(fc.bias)
    return fc  # resnet keeps nn.Linear's default init, as torchvision does


def _first_conv(
    conv: nn.Conv2d, args: BuildArgs, pretrained: bool, init: Callable[[nn.Conv2d], None]
) -> tuple[nn.Conv2d, dict[str, Any]]:
    """The first conv fitted to the run's bands (see bands.py), and what the record says about it."""
    return fit_first_conv(conv, args.in_chans, pretrained, init, args.band_names, args.spec.band_map)


def _resnet(model: Any, args: BuildArgs, pretrained: bool) -> Built:
    spec = args.spec
    if spec.stem == "cifar":
        # CIFAR-style stem: 3x3 stride 1 and no max-pool, so 32x32 inputs are not shrunk 4x before layer1.
        # It is always freshly initialised: no pretrained 7x7 kernel maps onto it.
        model.conv1 = nn.Conv2d(args.in_chans, model.conv1.out_channels, 3, stride=1, padding=1, bias=False)
        kaiming_fan_out(model.conv1)
        model.maxpool = nn.Identity()
        info: dict[str, Any] = {}
    else:
        model.conv1, info = _first_conv(model.conv1, args, pretrained, kaiming_fan_out)
    if spec.pool == "max":
        model.avgpool = nn.AdaptiveMaxPool2d(1)  # the attribute name is what ResNet.forward calls
    fc = _linear_head(model.fc.in_features, args.num_classes, "resnet")
    model.fc = nn.Sequential(nn.Dropout(spec.dropout), fc) if spec.dropout > 0 else fc
    stages = [("stem", params_of(model.conv1, model.bn1))]
    stages += stages_of((f"layer{i}", getattr(model, f"layer{i}")) for i in range(1, 5))
    return Built(model, stages, info)


def _vgg(model: Any, args: BuildArgs, pretrained: bool) -> Built:
    spec = args.spec
    model.features[0], info = _first_conv(model.features[0], args, pretrained, kaiming_fan_out)
    if spec.pool == "max":
        model.avgpool = nn.AdaptiveMaxPool2d(7)
    model.classifier[-1] = _linear_head(model.classifier[-1].in_features, args.num_classes, "vgg")
    set_head_dropout(model.classifier, spec.dropout)
    stages: list[tuple[str, list[nn.Parameter]]] = []
    block: list[nn.Module] = []
    for layer in model.features:
        block.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            stages.append((f"block{len(stages) + 1}", params_of(*block)))
            block = []
    return Built(model, stages, info)


def _mobile(model: Any, args: BuildArgs, pretrained: bool) -> Built:
    """MobileNet v2/v3 and EfficientNet share a layout: features[0][0] stem conv, avgpool, classifier."""
    spec = args.spec
    model.features[0][0], info = _first_conv(model.features[0][0], args, pretrained, kaiming_fan_out)
    if spec.pool == "max":
        model.avgpool = nn.AdaptiveMaxPool2d(1)
    model.classifier[-1] = _linear_head(model.classifier[-1].in_features, args.num_classes, args.family)
    set_head_dropout(model.classifier, spec.dropout)
    return Built(model, stages_of((f"features.{i}", block) for i, block in enumerate(model.features)), info)


def _vit_conv_init(conv: nn.Conv2d) -> None:
    fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
    nn.init.trunc_normal_(conv.weight, std=math.sqrt(1 / fan_in))
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _vit(model: Any, args: BuildArgs, pretrained: bool) -> Built:
    spec = args.spec
    model.conv_proj, info = _first_conv(model.conv_proj, args, pretrained, _vit_conv_init)
    head = model.heads.head
    layers = OrderedDict((name, module) for name, module in model.heads.named_children() if name != "head")
    if spec.dropout > 0:
        layers["dropout"] = nn.Dropout(spec.dropout)
    layers["head"] = _linear_head(head.in_features, args.num_classes, "vit")
    model.heads = nn.Sequential(layers)  # keeps the `heads.head.*` state_dict names
    model.num_classes = args.num_classes
    stages = [("patch_embed", params_of(model.conv_proj, model.class_token, model.encoder.pos_embedding))]
    stages += stages_of((f"encoder.layers.{i}", layer) for i, layer in enumerate(model.encoder.layers))
    return Built(model, stages, info)
