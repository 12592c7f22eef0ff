"""Batch-norm re-estimation for the ``recompute`` policy: every point's running statistics, estimated afresh from
the same training batches as a cumulative average (docs/design.md, "Batch norm: the trap").

Only the BN modules are switched to train mode (dropout and the rest stay in eval mode). Before the k-th batch
each BN module's momentum is set to 1/(k+1), which gives exactly the cumulative average that ``momentum=None``
would, and unlike it works under ``vmap`` (docs/design.md, "BN re-estimation under vmap"). Every point starts
from fresh statistics (mean 0, variance 1), so nothing — not even a NaN — leaks from one point into the next.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

from ..data.batches import Inputs, inputs_len, slice_inputs
from ..errors import InterpscanError
from .forward import EndOfStatistics, call, users_code
from .plan import Plan
from .runners import Runner, Statistics


def fresh_statistics(plan: Plan, points: int) -> Statistics:
    """(P, C) statistics at BatchNorm's initial values, one row per point, on the model's device."""
    ref = plan.model.state_dict()
    return {
        name: ref[name].new_empty(points, *ref[name].shape).fill_(1.0 if name.endswith("running_var") else 0.0)
        for name in plan.bn_stats
    }


@contextmanager
def calibrating(plan: Plan) -> Iterator[None]:
    """BN modules in train mode for the duration; their momentum and the model's integer counters restored
    after (train mode bumps ``num_batches_tracked``)."""
    saved = [m.momentum for m in plan.bn_modules]
    fixed = {k: v.clone() for k, v in plan.fixed.items()}
    for m in plan.bn_modules:
        m.train()
    try:
        yield
    finally:
        for m, momentum in zip(plan.bn_modules, saved, strict=True):
            m.momentum = momentum
            m.eval()
        for name, value in fixed.items():
            plan.fixed[name].copy_(value)


def last_statistics_layer(plan: Plan, inputs: Inputs) -> nn.Module | None:
    """The BN module a forward pass calls last, found by one pass in eval mode on one example with hooks
    recording the calls; None when that module is called more than once (a shared layer: a pass that starts
    after some of its calls, as prefix's do, could not tell its last call), or when the pass fails (the
    calibration itself reports that)."""
    calls: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda m, args, out: calls.append(m)) for m in plan.bn_modules]
    try:
        with users_code(inputs):
            call(plan.model, slice_inputs(inputs, slice(0, 1)))
    except InterpscanError:
        return None
    finally:
        for h in hooks:
            h.remove()
    if not calls or calls.count(calls[-1]) > 1:
        return None
    return calls[-1]


def _end(module: nn.Module, args: Any, output: Any) -> None:
    raise EndOfStatistics


def recompute_statistics(
    runner: Runner, plan: Plan, batches: Iterable[Inputs], advance: Callable[[int], None]
) -> tuple[Statistics, int, int]:
    """Re-estimate every point's BN statistics over ``batches`` (inputs only). Returns the statistics (P rows)
    and the numbers of batches and examples used; ``advance`` is told about each (point, batch) done.

    Each pass ends right after the last BN layer (last_statistics_layer): what follows it (a classifier head,
    pooling) changes no statistic, so calibration costs a forward pass up to there, not a whole one."""
    stats = fresh_statistics(plan, len(runner.points))
    count = examples = 0
    stream = iter(batches)
    first = next(stream, None)
    if first is None:
        return stats, 0, 0
    last = last_statistics_layer(plan, first)
    # first among the module's forward hooks: a channels-last plan's hook would copy the output for nothing
    hook = last.register_forward_hook(_end, prepend=True) if last is not None else None
    try:
        with calibrating(plan):
            for k, inputs in enumerate(itertools.chain([first], stream)):
                for m in plan.bn_modules:
                    m.momentum = 1.0 / (k + 1)  # the cumulative average, as momentum=None would give
                for done in runner.calibrate(inputs, stats):
                    advance(done)
                count, examples = k + 1, examples + inputs_len(inputs)
    finally:
        if hook is not None:
            hook.remove()
    return stats, count, examples
