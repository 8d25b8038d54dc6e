"""The base of every config section: strict pydantic (unknown keys and inf/nan refused)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

SEED_MAX = 2**63 - 1  # seeds go into torch/numpy generators as signed 64-bit integers


class _Strict(BaseModel):
    # inf/nan are refused in every float field (they would be stored as null and break the record).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
