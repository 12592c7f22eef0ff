"""What every strategy starts from: a working copy of the model on the device, the endpoint tensors every point
is interpolated from, and the batch-norm modules a policy is about. The caller's model is never modified."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.hooks import RemovableHandle

from ..data.batches import Inputs
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
    hooks: list[RemovableHandle] = field(default_factory=list)  # the layout's hooks on the working model
    layout: torch.memory_format = torch.contiguous_format  # of the 4-D tensors (relayout)
    # the states after start and end that points with a ``mix`` combine (Point.mix), float32, same names
    basis: list[dict[str, torch.Tensor]] = field(default_factory=list)
    # the BN running variances that are combined (interpolate): a mix with negative coefficients can make one
    # negative, which is clamped at 0 (mix_state; the caller flags such points)
    variances: list[str] = field(default_factory=list)

    @property
    def states(self) -> list[dict[str, torch.Tensor]]:
        """The K states a ``mix`` point combines, in its coefficients' order."""
        return [self.start, self.end, *self.basis]

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
    basis: Sequence[Mapping[str, torch.Tensor]] = (),
) -> Plan:
    """Copy the model to ``device`` in eval mode, its parameters frozen, and sort the endpoints' tensors into
    interpolated (floating, as float32), fixed (integer, from ``end``) and skipped (BN statistics that the policy
    re-estimates or does without). ``basis``: more states for points with a ``mix`` (their floating tensors)."""
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
    plan.basis = [{n: b[n].detach().to(device=device, dtype=torch.float32) for n in plan.start} for b in basis]
    plan.variances = [n for n in stat_names if n.endswith("running_var") and n in plan.start]
    return plan


def _nchw_statistics(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Forward pre-hook on a BN module of a channels-last plan: a batch whose own statistics it computes (train
    mode, or no running statistics) goes in contiguous. PyTorch's CPU kernel sums a channels-last batch far less
    precisely (running_var off by ~3e-5 relative, against ~6e-8 contiguous, float64 as the truth)."""
    x = args[0] if args else None
    batch_statistics = module.training or getattr(module, "running_mean", None) is None
    module.__dict__["_interpscan_relaid"] = False
    if batch_statistics and isinstance(x, torch.Tensor) and x.dim() == 4 and not x.is_contiguous():
        module.__dict__["_interpscan_relaid"] = True
        return (x.contiguous(), *args[1:])
    return None


def _channels_last_again(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
    """Forward hook after _nchw_statistics: the output back in channels-last for the layers that follow."""
    if module.__dict__.get("_interpscan_relaid") and isinstance(output, torch.Tensor):
        return output.contiguous(memory_format=torch.channels_last)
    return None


def relayout(plan: Plan, memory_format: torch.memory_format) -> None:
    """Lay out every 4-D floating tensor of the working model and of the endpoints in ``memory_format``, in
    place (``.data`` of the same Parameter and buffer objects, so that views of the state dict stay valid).
    Channels-last BN modules get hooks that compute batch statistics on contiguous tensors (_nchw_statistics)."""
    for t in itertools.chain(plan.model.parameters(), plan.model.buffers()):
        if t.dim() == 4 and t.is_floating_point():
            t.data = t.data.contiguous(memory_format=memory_format)
    for tensors in plan.states:
        for name, t in tensors.items():
            if t.dim() == 4:
                tensors[name] = t.contiguous(memory_format=memory_format)
    plan.layout = memory_format
    for handle in plan.hooks:
        handle.remove()
    plan.hooks.clear()
    if memory_format is torch.channels_last:
        for m in plan.model.modules():
            if isinstance(m, _BatchNorm):
                plan.hooks.append(m.register_forward_pre_hook(_nchw_statistics))
                plan.hooks.append(m.register_forward_hook(_channels_last_again))


@contextmanager
def laid_out(plan: Plan, memory_format: torch.memory_format) -> Iterator[None]:
    """The plan in ``memory_format`` for the duration, in its own layout again after."""
    own = plan.layout
    if own is memory_format:
        yield
        return
    relayout(plan, memory_format)
    try:
        yield
    finally:
        relayout(plan, own)


def try_channels_last(plan: Plan, example: Inputs) -> str | None:
    """Lay the plan out channels-last (NHWC) if the model's forward pass on ``example`` gives the same scores
    that way as contiguous; else leave it contiguous and return why. Convolutions hand the layout on to their
    outputs, so a model that ``.view``s such an output raises here, and one whose own code reads raw memory
    gives other scores."""
    from ..errors import InterpscanError
    from .forward import call, scores, users_code

    try:
        with torch.inference_mode(), users_code(example):
            reference = scores(call(plan.model, example)).float()
    except InterpscanError:
        return "channels-last not tried: the forward pass failed on one example"  # the scan reports it
    relayout(plan, torch.channels_last)
    try:
        with torch.inference_mode(), users_code(example):
            got = scores(call(plan.model, example)).float()
    except InterpscanError as exc:
        relayout(plan, torch.contiguous_format)
        cause = exc.__cause__ or exc
        first = (str(cause).strip().splitlines() or [""])[0]
        return f"ran contiguous: the forward pass fails on channels-last tensors ({type(cause).__name__}: {first})"
    scale = float(reference.abs().nan_to_num(0.0, 0.0, 0.0).max()) if reference.numel() else 0.0
    tolerance = 1e-4 * max(1.0, scale)  # the two layouts differ by float32 rounding (~1e-7), a bad one by O(1)
    if got.shape != reference.shape or not torch.allclose(got, reference, rtol=0, atol=tolerance, equal_nan=True):
        relayout(plan, torch.contiguous_format)
        return "ran contiguous: the model's outputs on channels-last tensors differ from those on contiguous ones"
    return None


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
