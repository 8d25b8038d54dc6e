"""Every registered model name, one entrypoint each: owns the list of names, never the surgery (lazy imports).

An entrypoint is two lines: what it is, and one call to its family's private builder. Importing this module
registers the names and imports no torch; the builders import their heavy modules when called.
"""

from __future__ import annotations

from archbench.models.base import TIMM_PREFIX, BuildArgs, Built
from archbench.models.registry import register_model, register_prefix


def _torchvision(args: BuildArgs) -> Built:
    from archbench.models.torchvision_family import build_torchvision

    return build_torchvision(args)


def _small_cnn(args: BuildArgs, widths: tuple[int, ...], convs_per_block: int) -> Built:
    from archbench.models.small_cnn import build_small_cnn

    return build_small_cnn(args, widths=widths, convs_per_block=convs_per_block)


# --- built-in small CNNs -------------------------------------------------------------------------------


@register_model("small_cnn")
def tiny_cnn(args: BuildArgs) -> Built:
    """Two conv blocks (16, 32 channels): fast on CPU, for tests and smoke runs."""
    return _small_cnn(args, widths=(16, 32), convs_per_block=1)


@register_model("small_cnn")
def simple_cnn(args: BuildArgs) -> Built:
    """A small VGG-style CNN: three blocks of two 3x3 conv+BN+ReLU (32, 64, 128 channels)."""
    return _small_cnn(args, widths=(32, 64, 128), convs_per_block=2)


# --- torchvision ResNets (He et al. 2016) --------------------------------------------------------------


@register_model("resnet")
def resnet18(args: BuildArgs) -> Built:
    return _torchvision(args)


@register_model("resnet")
def resnet34(args: BuildArgs) -> Built:
    return _torchvision(args)


@register_model("resnet")
def resnet50(args: BuildArgs) -> Built:
    return _torchvision(args)


@register_model("resnet")
def resnet101(args: BuildArgs) -> Built:
    return _torchvision(args)


@register_model("resnet")
def resnet152(args: BuildArgs) -> Built:
    return _torchvision(args)


# --- torchvision VGG (Simonyan & Zisserman 2015) -------------------------------------------------------


@register_model("vgg")
def vgg11(args: BuildArgs) -> Built:
    return _torchvision(args)


@register_model("vgg")
def vgg11_bn(args: BuildArgs) -> Built:
    return _torchvision(args)


@register_model("vgg")
def vgg16(args: BuildArgs) -> Built:
    return _torchvision(args)


@register_model("vgg")
def vgg16_bn(args: BuildArgs) -> Built:
    return _torchvision(args)


# --- torchvision MobileNets (v2: Sandler et al. 2018; v3: Howard et al. 2019) --------------------------


@register_model("mobilenet")
def mobilenet_v2(args: BuildArgs) -> Built:
    return _torchvision(args)


@register_model("mobilenet")
def mobilenet_v3_small(args: BuildArgs) -> Built:
    return _torchvision(args)


@register_model("mobilenet")
def mobilenet_v3_large(args: BuildArgs) -> Built:
    return _torchvision(args)


# --- torchvision EfficientNets (Tan & Le 2019) ---------------------------------------------------------


@register_model("efficientnet")
def efficientnet_b0(args: BuildArgs) -> Built:
    return _torchvision(args)


@register_model("efficientnet")
def efficientnet_b1(args: BuildArgs) -> Built:
    return _torchvision(args)


@register_model("efficientnet")
def efficientnet_b2(args: BuildArgs) -> Built:
    return _torchvision(args)


@register_model("efficientnet")
def efficientnet_b3(args: BuildArgs) -> Built:
    return _torchvision(args)


# --- torchvision Vision Transformer (Dosovitskiy et al. 2021) ------------------------------------------


@register_model("vit")
def vit_b_16(args: BuildArgs) -> Built:
    """ViT-B/16; its input size is fixed at build time (`image_size`, default 224, a multiple of 16)."""
    return _torchvision(args)


# --- any timm model as timm:NAME ------------------------------------------------------------------------


def _check_timm(name: str) -> None:
    from archbench.models.timm_family import check_timm_name

    check_timm_name(name)


def _build_timm(args: BuildArgs) -> Built:
    from archbench.models.timm_family import build_timm

    return build_timm(args)


register_prefix(TIMM_PREFIX, "timm", check=_check_timm, build=_build_timm)
