"""The post-training stages' sections of a sweep file (`profile:`, `explain:`, `map:`): one settings type per
stage, its defaults here only (the stages and their commands read them)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from archbench.config.base import SEED_MAX, _Strict

STAGE_DEVICE = "null: the device the run trained on (archbench.stages.base owns the rule)"


class ProfileSpec(_Strict):
    """`profile:` in a sweep file: measure every completed run (record block `stages.profile`)."""

    enabled: bool = Field(True, description="false: keep the section but do not profile")
    resolutions: list[int] | None = Field(None, description="null: the run's own resolution")
    batch_sizes: list[int] = Field(
        default_factory=lambda: [1, 64], description="latency at the first, throughput at the last"
    )
    warmup: int = Field(3, ge=0, description="untimed iterations before timing")
    iters: int = Field(10, ge=1, description="timed calls per measurement at least; below 10 a row is noisy")
    budget_s: float = Field(
        1.0,
        ge=0,
        le=3600,
        description="seconds per measurement: after `iters` calls, more are timed until spent (0: none)",
    )
    memory: bool = Field(True, description="peak memory (CUDA allocator, or a CPU subprocess's peak RSS)")
    train_step: bool = Field(True, description="also time a training step")
    device: Literal["auto", "cpu", "cuda"] | None = Field(None, description=STAGE_DEVICE)
    threads: int | None = Field(None, ge=1, description="torch threads while profiling; null: train.threads")


ExplainMethod = Literal["gradcam", "ig", "saliency", "attention"]
_DEFAULT_METHODS: tuple[ExplainMethod, ...] = ("gradcam", "ig", "saliency")


class ExplainSpec(_Strict):
    """`explain:` in a sweep file: explanations on the same test images for every model."""

    enabled: bool = Field(True, description="false: keep the section but do not explain")
    methods: list[ExplainMethod] = Field(
        default_factory=lambda: list(_DEFAULT_METHODS),
        description="gradcam, ig (integrated gradients), saliency, attention (ViT attention rollout)",
    )
    images: int = Field(8, ge=1, le=256, description="test images explained, the same ones for every model")
    select: Literal["mistakes", "correct", "random", "per-class"] = Field(
        "random", description="which test images are chosen"
    )
    seed: int = Field(0, ge=0, le=SEED_MAX, description="seed of the image choice")


class MapSpec(_Strict):
    """`map:` in a sweep file: a land-cover map per completed raster_patches run (block `stages.map`)."""

    enabled: bool = Field(True, description="false: keep the section but do not map")
    scene: str | None = Field(None, description="scene YAML to map; null: the scene each run trained on")
    root: str | None = Field(None, description="folder of the scene's rasters (overrides the scene's root)")
    rf: bool = Field(False, description="also fit, map and score the Random-Forest baseline")
    rf_trees: int = Field(100, ge=1, description="trees in the Random Forest")
    window: int = Field(256, ge=16, description="read/write window side in pixels")
    batch_size: int = Field(2048, ge=1, description="patches per forward pass")
    threads: int | None = Field(None, ge=1, description="torch threads while mapping; null: train.threads")
    device: Literal["auto", "cpu", "cuda"] | None = Field(None, description=STAGE_DEVICE)
