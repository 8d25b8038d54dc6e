"""Models: owns the public model API (`create_model` is the only door); importing it never imports torch.

Importing this package registers every name (see `zoo.py`); torch, torchvision and timm are imported only
when a model is built or a `timm:` name is checked.
"""

from archbench.models import zoo as _zoo  # noqa: F401  (registers the names)
from archbench.models.base import TIMM_PREFIX, BuildArgs, Built
from archbench.models.registry import (
    build_info,
    check_model_name,
    check_model_spec,
    create_model,
    layer_decay_problem,
    layer_decay_refusal,
    model_family,
    model_names,
    register_model,
)

__all__ = [
    "TIMM_PREFIX",
    "BuildArgs",
    "Built",
    "build_info",
    "check_model_name",
    "check_model_spec",
    "create_model",
    "layer_decay_problem",
    "layer_decay_refusal",
    "model_family",
    "model_names",
    "register_model",
]
