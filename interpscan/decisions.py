"""The choices a scan makes on the user's behalf, each in one function that returns the choice and the reason
run.json records: which strategy evaluates the points, how their 4-D tensors are laid out, and which batch-norm
policy defines them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .engine import has_running_stats
from .errors import UsageError, opt
from .options import BNPolicy, MemoryFormat, Strategy, check_memory_format

T = TypeVar("T")


@dataclass(frozen=True)
class Decision(Generic[T]):
    """A choice and why it was made, in words for the log and run.json."""

    value: T
    reason: str


def _fixed_forward(model: nn.Module) -> str | None:
    """What kind of program the model is when its own forward pass fixes how batch norm runs (TorchScript, a
    torch.export program), else None."""
    from .checkpoints import ProgramModule

    if isinstance(model, torch.jit.ScriptModule):
        return "TorchScript archive"
    if isinstance(model, ProgramModule):
        return "torch.export program"
    return None


def batched_obstacle(model: nn.Module) -> str | None:
    """Why the batched strategy (``functional_call`` under ``vmap``) cannot evaluate ``model``, if it cannot.

    A TorchScript module's weights cannot be swapped by ``torch.func``. (Tied weights are fine: the engine
    passes one tensor per tied group and ``functional_call`` carries it to the other names.)
    """
    if isinstance(model, torch.jit.ScriptModule):
        return "torch.func cannot swap a TorchScript module's weights"
    return None


def choose_strategy(
    requested: Strategy, *, device: torch.device, grouped: bool, model: nn.Module
) -> Decision[Strategy]:
    """The strategy: the one requested, or for ``auto``: on CUDA prefix-batched with groups, else batched; on CPU
    prefix with groups, else sequential (vmap is slower than a loop on CPU: docs/design.md, "vmap on CPU"). Every
    strategy gives the same numbers.

    Raises:
        UsageError: ``batched`` requested for a model it cannot evaluate.
    """
    obstacle = batched_obstacle(model)
    if requested in (Strategy.BATCHED, Strategy.PREFIX_BATCHED) and obstacle:
        raise UsageError(
            f"{opt('strategy', requested)}: {obstacle}", hint=f"use {opt('strategy', 'sequential')} (the same numbers)"
        )
    if requested is not Strategy.AUTO:
        return Decision(requested, "requested")
    if device.type == "cuda":
        if obstacle:
            return Decision(Strategy.SEQUENTIAL, f"auto on CUDA, not batched: {obstacle}")
        if grouped:
            return Decision(
                Strategy.PREFIX_BATCHED,
                "auto on CUDA with groups: a group's points share the forward pass before it, and vmap runs the rest",
            )
        return Decision(Strategy.BATCHED, "auto on CUDA: vmap evaluates a chunk of points per forward pass")
    if grouped:
        return Decision(
            Strategy.PREFIX, "auto on CPU with groups: each group's points share the forward pass before it"
        )
    return Decision(Strategy.SEQUENTIAL, "auto on CPU: a loop over points is faster than vmap there")


def batch_statistics(model: nn.Module, policy: BNPolicy) -> bool:
    """Whether evaluating a point computes batch-norm statistics from each batch: ``--bn batch``, or a BN module
    that keeps no running statistics."""
    return policy is BNPolicy.BATCH or any(
        isinstance(m, _BatchNorm) and m.running_mean is None for m in model.modules()
    )


def choose_memory_format(
    requested: MemoryFormat, *, device: torch.device, strategy: Strategy, model: nn.Module, batch_stats: bool = False
) -> Decision[MemoryFormat]:
    """The layout of 4-D tensors: the one requested, or for ``auto`` channels-last where it was measured to pay
    (a CPU, a model with 2-D convolutions, a loop over points, no batch statistics in evaluation (``batch_stats``,
    see batch_statistics): oneDNN's convolutions and max-pooling run faster on NHWC tensors on CPU (see
    benchmarks; docs/design.md, "Channels-last on CPU"), else contiguous. The engine still tries the layout on one
    example first and falls back to contiguous when the model's forward pass cannot take it (a ``.view`` of a
    convolution's output, say: engine.plan.try_channels_last).

    Raises:
        UsageError: channels-last requested with a strategy that vmaps the points.
    """
    check_memory_format(requested, strategy)
    if requested is not MemoryFormat.AUTO:
        return Decision(requested, "requested")
    contiguous = MemoryFormat.CONTIGUOUS
    if device.type != "cpu":
        return Decision(contiguous, f"auto on {device.type.upper()}: channels-last is measured on CPUs only")
    if strategy not in (Strategy.SEQUENTIAL, Strategy.PREFIX):
        return Decision(contiguous, f"auto with {strategy}: vmap's stacked weights have no 4-D layout to choose")
    if program := _fixed_forward(model):
        return Decision(contiguous, f"auto: a {program} keeps the layout it was compiled for")
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return Decision(contiguous, "auto: the model has no 2-D convolution")
    if batch_stats:
        return Decision(
            contiguous,
            "auto: batch norm computes batch statistics in every forward pass, which only contiguous tensors give "
            "precisely on CPU",
        )
    return Decision(
        MemoryFormat.CHANNELS_LAST,
        "auto on CPU with 2-D convolutions: channels-last is faster on CPU for oneDNN's convolutions and "
        "max-pooling (see benchmarks)",
    )


def choose_bn_policy(requested: BNPolicy, *, model: nn.Module, has_train: bool, data_name: str) -> Decision[BNPolicy]:
    """The batch-norm policy: ``recompute`` by default for a model with running statistics when there is
    training data to re-estimate them from, else ``interpolate``; a model whose own forward fixes batch norm's
    mode (TorchScript, torch.export) can only interpolate.

    Args:
        has_train: training data for the re-estimation exists (a train split, or calibration data given).
        data_name: the data's name, for the reason.

    Raises:
        UsageError: ``recompute`` without training data; ``recompute`` or ``batch`` for a fixed forward.
    """
    program = _fixed_forward(model)
    if program is not None and any(n.endswith(("running_mean", "running_var")) for n in model.state_dict()):
        if requested in (BNPolicy.RECOMPUTE, BNPolicy.BATCH):
            raise UsageError(
                f"{opt('bn', requested)} needs to switch batch norm's mode, and a {program}'s forward fixes it",
                hint=f"use {opt('bn', 'interpolate')} (or auto), or pass {opt('model')} to rebuild the model in Python",
            )
        return Decision(
            BNPolicy.INTERPOLATE,
            f"the {program}'s own forward fixes how batch norm runs; its statistics are interpolated",
        )
    if not has_running_stats(model):
        if requested is BNPolicy.AUTO:
            return Decision(BNPolicy.INTERPOLATE, "the model has no batch-norm running statistics")
        return Decision(requested, "requested (the model has no batch-norm running statistics, so all policies agree)")
    if requested is BNPolicy.AUTO:
        if has_train:
            return Decision(BNPolicy.RECOMPUTE, "default for a model with batch norm when a train split exists")
        return Decision(BNPolicy.INTERPOLATE, f"default: {data_name} has no train split to re-estimate statistics from")
    if requested is BNPolicy.RECOMPUTE and not has_train:
        raise UsageError(
            f"{opt('bn', 'recompute')} needs a train split to re-estimate statistics, and {data_name} has none",
            hint=f"use {opt('bn', 'interpolate')} or {opt('bn', 'batch')}, or data with a train split",
        )
    return Decision(requested, "requested")


def default_batch_size(device: torch.device) -> int:
    """Examples per forward pass when none is given. CPU: activations of a few hundred examples stay cache- and
    allocator-friendly (docs/design.md, "CPU batch size and the allocator"); GPU: large batches keep the device
    busy."""
    return 1024 if device.type == "cuda" else 256
