"""archbench's own small CNNs (tiny_cnn, simple_cnn): owns their layers; fast on CPU, no pretrained weights.

Layout: `features` (conv blocks, each conv 3x3 + BN + ReLU, a 2x2 max-pool between blocks) → `pool`
(global avg or max) → `dropout` → `fc`. The names stay the same whatever the options, so checkpoints load
across dropout settings. Stages for `freeze` are the conv blocks.
"""

from __future__ import annotations

import torch
from torch import nn

from archbench.models.base import BuildArgs, Built
from archbench.models.surgery import stages_of


class SmallCNN(nn.Module):
    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        widths: tuple[int, ...],
        convs_per_block: int,
        pool: str = "avg",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        chans = in_chans
        for index, width in enumerate(widths):
            layers: list[nn.Module] = []
            for _ in range(convs_per_block):
                # ReLU is not in-place so hooks on block outputs (Grad-CAM, captum) see unmodified tensors.
                layers += [
                    nn.Conv2d(chans, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(),
                ]
                chans = width
            if index < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            blocks.append(nn.Sequential(*layers))
        self.features = nn.Sequential(*blocks)
        self.pool: nn.Module = nn.AdaptiveMaxPool2d(1) if pool == "max" else nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(chans, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.fc(self.dropout(x))


def build_small_cnn(args: BuildArgs, widths: tuple[int, ...], convs_per_block: int) -> Built:
    spec = args.spec
    model = SmallCNN(args.in_chans, args.num_classes, widths, convs_per_block, spec.pool, spec.dropout)
    return Built(model, stages_of((f"block{i + 1}", block) for i, block in enumerate(model.features)))
