"""A small, seeded training loop and self-describing checkpoints, for the demo and examples/.

Not a training framework: just enough to produce θ_init and θ_final under the interventions the seed paper
studies (weight decay, optimizer, learning rate, data fraction, augmentation, epochs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .atomic import write_atomic
from .checkpoints import META_KEY
from .data import Split
from .errors import UsageError
from .models import ModelSpec


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters. ``lr`` is the peak learning rate (cosine-decayed to 0 over all steps)."""

    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9  # SGD only
    weight_decay: float = 5e-4
    optimizer: str = "sgd"  # "sgd" or "adam"
    data_fraction: float = 1.0  # train on this seeded fraction of the training split
    augment: bool = False  # random shifts of up to 2 pixels and horizontal flips
    seed: int = 0


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to 2 pixels (zero-padded crop) and horizontal flip, per example."""
    n, _, h, w = x.shape
    padded = F.pad(x, (2, 2, 2, 2))
    dx = torch.randint(0, 5, (n,), generator=gen)
    dy = torch.randint(0, 5, (n,), generator=gen)
    out = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def train(
    model: nn.Module,
    data: Split,
    config: TrainConfig,
    log: Callable[[str], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place on ``data`` with cross-entropy; returns per-epoch mean loss and accuracy.

    ``log`` gets one line per epoch; ``on_step`` gets (steps done, total steps) after every optimizer step, for
    a progress bar.

    Raises:
        UsageError: an unknown optimizer or a data fraction outside (0, 1].
    """
    if not 0 < config.data_fraction <= 1:
        raise UsageError(f"data fraction must be in (0, 1], got {config.data_fraction}")
    gen = torch.Generator().manual_seed(config.seed)
    n = len(data)
    keep = torch.randperm(n, generator=gen)[: max(1, round(n * config.data_fraction))]
    if not isinstance(data.inputs, torch.Tensor):
        raise UsageError("training takes inputs of one tensor", hint="the demo and examples/ train on images")
    x, y = data.inputs[keep], data.targets[keep]
    params = list(model.parameters())
    if config.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=True
        )
    elif config.optimizer == "adam":
        opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    else:
        raise UsageError(f"unknown optimizer {config.optimizer!r}", hint="use sgd or adam")
    steps = config.epochs * -(-len(x) // config.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + torch.cos(torch.tensor(torch.pi * s / max(steps, 1))).item())
    )
    history = []
    done = 0
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(x), generator=gen)
        total_loss, correct = 0.0, 0
        for lo in range(0, len(x), config.batch_size):
            idx = order[lo : lo + config.batch_size]
            xb, yb = x[idx], y[idx]
            if config.augment and xb.dim() == 4:
                xb = _augment(xb, gen)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sched.step()
            total_loss += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            done += 1
            if on_step:
                on_step(done, steps)
        history.append({"epoch": epoch + 1, "loss": total_loss / len(x), "accuracy": correct / len(x)})
        if log:
            log(
                f"epoch {epoch + 1}/{config.epochs}: train loss {total_loss / len(x):.4f}, "
                f"accuracy {correct / len(x):.3f}"
            )
    model.eval()
    return history


def save_checkpoint(
    model: nn.Module,
    path: Path,
    spec: ModelSpec,
    extra: dict[str, Any] | None = None,
    *,
    data: str | None = None,
) -> None:
    """Save ``checkpoint(model, spec, extra, data=data)`` to ``path`` atomically (``atomic.write_atomic``)."""
    payload = checkpoint(model, spec, extra, data=data)
    write_atomic(path, lambda fh: torch.save(payload, fh))


def checkpoint(
    model: nn.Module, spec: ModelSpec, extra: dict[str, Any] | None = None, *, data: str | None = None
) -> dict[str, Any]:
    """``{"state_dict": …, "interpscan": {"model": …, "model_args": …, "data": …, **extra}}``, as ``torch.save``
    stores it.

    The recorded spec lets ``interpscan run`` rebuild the model without ``--model``, and the recorded dataset (a
    named one, such as fashion-mnist-small) lets it run without ``--data``. A model file is recorded by its
    absolute path, so the checkpoint can be scanned from any directory.
    """
    text = spec.text
    if spec.kind == "file":
        text = f"{Path(spec.target).resolve()}:{spec.factory}"
    return {
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        META_KEY: {"model": text, "model_args": dict(spec.args), **({"data": data} if data else {}), **(extra or {})},
    }


def config_dict(config: TrainConfig) -> dict[str, Any]:
    return asdict(config)
