"""What identifies decoded data: the one definition the prepared-data cache, the runner's in-memory
dataset reuse, `archbench prepare` and planning checks share. Reads nothing, decodes nothing."""

from __future__ import annotations

import json
from typing import Any

from archbench.config import DataSpec

# The options that change the decoded arrays. `resolution` and `augment` are applied per batch on the
# device; `memory_budget` and `cache_dir` say where the arrays live, not what they are.
DECODE_FIELDS = frozenset(
    {
        "kind",
        "val_fraction",
        "test_fraction",
        "limit_per_class",
        "test_limit_per_class",
        "split_seed",
        "on_bad_file",
        "max_image_pixels",
        "options",
    }
)


def decode_options(spec: DataSpec) -> dict[str, Any]:
    """The decoding options of `spec` as JSON values (part of every cache key; the source files are
    identified separately, by their listing)."""
    return spec.model_dump(mode="json", include=set(DECODE_FIELDS))


def decode_identity(spec: DataSpec) -> str:
    """One string per distinct decoded dataset: the decoding options, the source folder (`root`) and the
    cache that holds the arrays (`cache_dir`). Two specs with the same identity load the same arrays from
    the same place, so one load serves both."""
    ident = spec.model_dump(mode="json", include=set(DECODE_FIELDS) | {"root", "cache_dir"})
    return json.dumps(ident, sort_keys=True, separators=(",", ":"))
