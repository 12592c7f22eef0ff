"""A model that is not in interpscan's zoo, for ``--model examples/custom_model.py:make``.

Two conv-ReLU-pool stages with dropout and no batch norm, so every BN policy gives the same path and the
scan exercises the "never leave dropout on" side of the evaluation contract instead.
"""

from __future__ import annotations

import torch
from torch import nn


class SmallConvNet(nn.Module):
    """conv(1→width) → pool → conv(width→2·width) → pool → dropout → linear(2·width·7·7 → classes)."""

    def __init__(self, width: int = 64, num_classes: int = 10, dropout: float = 0.25) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * width * 7 * 7, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))  # (N, width, 14, 14) from (N, 1, 28, 28)
        x = self.pool(torch.relu(self.conv2(x)))  # (N, 2·width, 7, 7)
        logits: torch.Tensor = self.fc(self.dropout(torch.flatten(x, 1)))  # (N, classes)
        return logits


def make(width: int = 64) -> nn.Module:
    """The factory interpscan calls; ``--model-arg width=32`` reaches it as ``make(width=32)``."""
    return SmallConvNet(width=width)
