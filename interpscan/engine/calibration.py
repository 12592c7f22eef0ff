"""Batch-norm re-estimation for the ``recompute`` policy: every point's running statistics, estimated afresh from
the same training batches as a cumulative average (DOMAIN.md, "the trap").

Only the BN modules are switched to train mode (dropout and the rest stay in eval mode). Before the k-th batch
each BN module's momentum is set to 1/(k+1), which gives exactly the cumulative average that ``momentum=None``
would, and unlike it works under ``vmap`` (ENGINE-NOTES 3). Every point starts from fresh statistics (mean 0,
variance 1), so nothing — not even a NaN — leaks from one point into the next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from ..data.batches import Inputs, inputs_len
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


def recompute_statistics(
    runner: Runner, plan: Plan, batches: Iterable[Inputs], advance: Callable[[int], None]
) -> tuple[Statistics, int, int]:
    """Re-estimate every point's BN statistics over ``batches`` (inputs only). Returns the statistics (P rows)
    and the numbers of batches and examples used; ``advance`` is told about each (point, batch) done."""
    stats = fresh_statistics(plan, len(runner.points))
    count = examples = 0
    with calibrating(plan):
        for k, inputs in enumerate(batches):
            for m in plan.bn_modules:
                m.momentum = 1.0 / (k + 1)  # the cumulative average, as momentum=None would give
            for done in runner.calibrate(inputs, stats):
                advance(done)
            count, examples = k + 1, examples + inputs_len(inputs)
    return stats, count, examples
