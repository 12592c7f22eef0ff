"""What a scan measures at each point: a per-sample loss and, for classification, accuracy.

An Objective scores a batch of model outputs against targets, one loss value per example, so that means and
standard errors come out of the same numbers. ``check`` validates shapes once, before the scan's loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import DataError


def _check_classification(outputs: torch.Tensor, targets: torch.Tensor) -> None:
    if outputs.dim() != 2 or outputs.shape[0] != targets.shape[0] or targets.dim() != 1:
        raise DataError(
            f"the model's output has shape {list(outputs.shape)} and the targets {list(targets.shape)}; "
            "cross-entropy needs outputs (batch, classes) and integer targets (batch,)",
            hint="for regression targets use --loss mse",
        )
    if targets.is_floating_point():
        raise DataError(
            "cross-entropy needs integer class targets, got floating-point ones",
            hint="for regression targets use --loss mse",
        )
    top = int(targets.max()) if targets.numel() else -1
    if top >= outputs.shape[1] or (targets.numel() and int(targets.min()) < 0):
        raise DataError(
            f"targets go up to class {top} but the model outputs {outputs.shape[1]} classes",
            hint="check num_classes (--model-arg num_classes=...) against the dataset",
        )


def _cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs.float(), targets, reduction="none")


def _squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # (B, ...) -> (B,): mean squared error over each example's outputs
    return (outputs.float() - targets.float().view_as(outputs)).pow(2).flatten(1).mean(1)


def _check_regression(outputs: torch.Tensor, targets: torch.Tensor) -> None:
    if outputs.shape[0] != targets.shape[0] or outputs.numel() != targets.numel():
        raise DataError(
            f"the model's output has shape {list(outputs.shape)} but the targets {list(targets.shape)}; "
            "mse needs one target value per output value",
        )


@dataclass(frozen=True)
class Objective:
    """A per-sample loss ``(outputs (B, …), targets (B, …)) -> (B,)`` and whether accuracy is defined."""

    name: str
    per_sample: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    classification: bool
    check: Callable[[torch.Tensor, torch.Tensor], None]


CROSS_ENTROPY = Objective("cross_entropy", _cross_entropy, True, _check_classification)
MSE = Objective("mse", _squared_error, False, _check_regression)
