"""What every strategy starts from: a working copy of the model on the device, the endpoint tensors every point
is interpolated from, and the batch-norm modules a policy is about. The caller's model is never modified."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..options import BNPolicy, DType

RUNNING_STATS = ("running_mean", "running_var")


def batchnorm_modules(model: nn.Module) -> list[tuple[str, _BatchNorm]]:
    """The batch-norm modules that keep running statistics (the ones a BN policy is about)."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, _BatchNorm) and m.track_running_stats and m.running_mean is not None
    ]


def has_running_stats(model: nn.Module) -> bool:
    return bool(batchnorm_modules(model))


@dataclass
class Plan:
    """The working model and the state tensors every point is built from (all on the device)."""

    model: nn.Module
    start: dict[str, torch.Tensor]  # floating tensors that are interpolated, float32
    end: dict[str, torch.Tensor]
    fixed: dict[str, torch.Tensor]  # integer tensors (taken from the final state)
    bn_stats: list[str]  # names of BN running statistics re-estimated under "recompute"
    bn_modules: list[_BatchNorm] = field(default_factory=list)
    # tied tensors (one tensor under two names, e.g. embedding and decoder): other name -> the first name.
    # Only the first is interpolated and written; the model's tying carries the value to the others.
    aliases: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """The interpolated tensors, sorted: the key that tells two points apart."""
        return sorted(self.start)


def prepare(
    model: nn.Module,
    start: Mapping[str, torch.Tensor],
    end: Mapping[str, torch.Tensor],
    policy: BNPolicy,
    device: torch.device,
) -> Plan:
    """Copy the model to ``device`` in eval mode, its parameters frozen, and sort the endpoints' tensors into
    interpolated (floating, as float32), fixed (integer, from ``end``) and skipped (BN statistics that the policy
    re-estimates or does without)."""
    work = copy.deepcopy(model).to(device).eval()
    for p in work.parameters():
        p.requires_grad_(False)
    bns = batchnorm_modules(work)
    stat_names = [f"{name}.{s}" if name else s for name, _ in bns for s in RUNNING_STATS]
    if policy is BNPolicy.BATCH:
        # With both running statistics None, BatchNorm normalizes with the batch's own statistics even in
        # eval mode, and updates nothing.
        for _, m in bns:
            m.running_mean = None
            m.running_var = None
    skip = set(stat_names) if policy in (BNPolicy.BATCH, BNPolicy.RECOMPUTE) else set()
    plan = Plan(work, {}, {}, {}, stat_names if policy is BNPolicy.RECOMPUTE else [], [m for _, m in bns])
    first: dict[int, str] = {}
    for name, t in work.state_dict(keep_vars=True).items():
        owner = first.setdefault(id(t), name)
        if owner != name:
            plan.aliases[name] = owner
    for name, ref in work.state_dict().items():
        if name in skip or name in plan.aliases:
            continue
        s, e = start[name], end[name]
        if s.is_floating_point() and e.is_floating_point():
            plan.start[name] = s.detach().to(device=device, dtype=torch.float32)
            plan.end[name] = e.detach().to(device=device, dtype=torch.float32)
        else:
            plan.fixed[name] = e.detach().to(device=device, dtype=ref.dtype, copy=True)
    return plan


@contextmanager
def precision(device: torch.device, dtype: DType) -> Iterator[None]:
    """Autocast the forward pass to ``dtype``; on CUDA allow TF32 for float32 work, restoring the flags after."""
    cuda = device.type == "cuda"
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        if dtype is DType.FLOAT32:
            yield
        else:
            with torch.autocast(device_type=device.type, dtype=getattr(torch, dtype.value)):
                yield
    finally:
        if cuda:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
