"""interpscan.train: the small training loop of the demo and examples/."""

from __future__ import annotations

import torch

from interpscan.data import Split
from interpscan.models import build_model, parse_model_spec
from interpscan.train import TrainConfig, train


def test_on_step_counts_every_optimizer_step() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(50, 1, 8, 8), torch.randint(0, 3, (50,))
    model = build_model(parse_model_spec("cnn", {"in_channels": 1, "num_classes": 3, "width": 2}))
    calls: list[tuple[int, int]] = []
    config = TrainConfig(epochs=3, batch_size=16, data_fraction=0.5)  # 25 examples: 2 steps per epoch
    history = train(model, Split("train", x, y, None), config, on_step=lambda n, total: calls.append((n, total)))
    assert calls == [(k, 6) for k in range(1, 7)]
    assert [h["epoch"] for h in history] == [1, 2, 3]
