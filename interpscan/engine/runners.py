"""The strategies that evaluate a batch at every point, behind one protocol. They give the same numbers:

- ``Sequential`` writes each point's weights into one working model in place, then runs it;
- ``Batched`` evaluates a chunk of points at once with ``torch.func.functional_call`` under ``vmap``;
- ``Prefix`` (prefix.py) is sequential, but shares the forward pass up to each group's first tensor;
  ``PrefixBatched`` shares it too, and evaluates the rest of the graph with vmap over chunks of a group's points.

A runner only runs forward passes; the engine (core.py) scores the outputs, and calibration.py drives the
batch-norm re-estimation through ``calibrate``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Protocol, TypeVar

import torch

from ..data.batches import Inputs
from ..options import Strategy
from .forward import call, call_functional, forward_fn, scores, users_code
from .plan import Plan
from .points import Point

# points per vmap chunk on CPU, where vmap is slower than a loop anyway (docs/design.md, "vmap on CPU")
CPU_CHUNK = 8
Statistics = dict[str, torch.Tensor]  # BN running statistic name -> (P, C), one row per point
T = TypeVar("T")


class Runner(Protocol):
    """Evaluates every point on a batch; ``points`` are distinct (the engine deduplicates them)."""

    @property
    def strategy(self) -> Strategy:
        """What actually runs (prefix may fall back to sequential)."""
        ...

    @property
    def points(self) -> Sequence[Point]: ...

    @property
    def chunk_size(self) -> int | None:
        """Points per forward pass, where that applies."""
        ...

    @property
    def shrinks(self) -> int:
        """Times an out-of-memory error halved the chunk."""
        ...

    @property
    def note(self) -> str | None:
        """Why the strategy differs from the one asked for."""
        ...

    def use_statistics(self, stats: Statistics | None) -> None:
        """Evaluate with these re-estimated BN statistics (``recompute``), or the interpolated ones (None)."""
        ...

    def calibrate(self, inputs: Inputs, stats: Statistics) -> Iterator[int]:
        """One calibration batch at every point, BN modules in train mode: each point's row of ``stats`` is
        loaded, updated by the forward pass and written back. Yields the number of points done, as it goes."""
        ...

    def evaluate(self, inputs: Inputs) -> Iterator[tuple[slice, torch.Tensor]]:
        """The outputs of every point on ``inputs``: (points, outputs (P_c, B, …)) chunk by chunk."""
        ...


def mix_coefficients(points: Sequence[Point], k: int, device: torch.device) -> torch.Tensor:
    """(P, K) float32: each point's ``mix``, as every strategy multiplies by it."""
    return torch.tensor([p.mix for p in points], dtype=torch.float32, device=device).view(len(points), k)


def mix_state(plan: Plan, name: str, coefficients: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_k c_k·state_k of tensor ``name`` for the points whose (P, K) ``coefficients`` are given: (P, *shape), in
    ``out`` when given. Each product is rounded, then summed in the states' order, for one point as for a stack,
    so every strategy gets the same bits; a coefficient of exactly 1 with the others 0 gives that state exactly.
    A combined BN running variance below 0 (outside the checkpoints' hull) is clamped at 0."""
    states = plan.states
    first = states[0][name]
    shape = (-1, *([1] * first.dim()))
    p = coefficients.shape[0]
    result = torch.mul(first.expand(p, *first.shape), coefficients[:, 0].view(shape), out=out)
    for k in range(1, len(states)):
        result.add_(states[k][name] * coefficients[:, k].view(shape))
    if name in plan.variances:
        result.clamp_(min=0.0)
    return result


def write_point(plan: Plan, state: dict[str, torch.Tensor], point: Point, stats: Statistics | None, row: int) -> None:
    """Write ``point``'s weights into the working model's tensors ``state`` (its ``state_dict(keep_vars=True)``),
    and under recompute its BN statistics, row ``row`` of ``stats``."""
    if point.mix is not None:
        coefficients = mix_coefficients([point], len(plan.states), next(iter(plan.start.values())).device)
        for name in plan.start:
            mix_state(plan, name, coefficients, out=state[name].data.unsqueeze(0))
    else:
        for name, s in plan.start.items():
            torch.lerp(s, plan.end[name], point.coefficient(name), out=state[name].data)
    for name, t in plan.fixed.items():
        state[name].data.copy_(t)
    if stats is not None:
        for name in plan.bn_stats:
            state[name].data.copy_(stats[name][row])


class Sequential:
    """One working model; each point's weights are written into it in place before its forward pass."""

    strategy = Strategy.SEQUENTIAL

    def __init__(self, plan: Plan, points: Sequence[Point]) -> None:
        self.plan, self.points = plan, points
        self.state = plan.model.state_dict(keep_vars=True)
        self.stats: Statistics | None = None
        self.forward = forward_fn(plan.model)
        self.chunk_size: int | None = None
        self.shrinks = 0
        self.note: str | None = None

    def load(self, i: int) -> None:
        """Write point ``i``'s weights (and its BN statistics, under recompute) into the working model."""
        write_point(self.plan, self.state, self.points[i], self.stats, i)

    def use_statistics(self, stats: Statistics | None) -> None:
        self.stats = stats

    def calibrate(self, inputs: Inputs, stats: Statistics) -> Iterator[int]:
        self.stats = stats
        for i in range(len(self.points)):
            self.load(i)
            with users_code(inputs):
                call(self.plan.model, inputs)  # BN in train mode updates the working model's statistics
            for name in self.plan.bn_stats:
                stats[name][i].copy_(self.state[name])
            yield 1

    def evaluate(self, inputs: Inputs) -> Iterator[tuple[slice, torch.Tensor]]:
        for i in range(len(self.points)):
            self.load(i)
            yield slice(i, i + 1), self.forward(inputs).unsqueeze(0)


class Batched:
    """``vmap`` over chunks of points: stacked states (P_c, …) through ``functional_call``.

    The chunk is ``chunk_size`` points, or on CUDA (unless given) sized from free memory on the first batch; an
    out-of-memory error halves it and retries the same points, so a scan never fails because a chunk was too
    large (a single point that does not fit is a real error).
    """

    strategy = Strategy.BATCHED

    def __init__(self, plan: Plan, points: Sequence[Point], chunk_size: int | None, device: torch.device) -> None:
        from torch.func import vmap

        self.plan, self.points = plan, points
        self.chunk_size = min(chunk_size or CPU_CHUNK, len(points))
        self.sized = chunk_size is not None or device.type != "cuda"
        self.stats: Statistics | None = None
        self.shrinks = 0
        self.note: str | None = None
        model = plan.model

        def forward(state: dict[str, torch.Tensor], fixed: dict[str, torch.Tensor], inputs: Inputs) -> torch.Tensor:
            return scores(call_functional(model, {**state, **fixed}, inputs))

        self._vmapped = vmap(forward, in_dims=(0, None, None))

    def _forward(self, state: dict[str, torch.Tensor], inputs: Inputs) -> torch.Tensor:
        with users_code(inputs, batched=True):
            return self._vmapped(state, self.plan.fixed, inputs)  # type: ignore[no-any-return]

    def _state(self, chunk: slice, names: Collection[str] | None = None) -> dict[str, torch.Tensor]:
        """The chunk's points' tensors, stacked (P_c, …): every interpolated tensor and (under recompute) BN
        statistic, or those among ``names`` (a tied name takes its first name's values)."""
        points = self.points[chunk]
        plan = self.plan
        state: dict[str, torch.Tensor] = {}
        wanted = plan.start.keys() if names is None else [n for n in names if plan.aliases.get(n, n) in plan.start]
        mixes = None
        if points and points[0].mix is not None:
            mixes = mix_coefficients(points, len(plan.states), next(iter(plan.start.values())).device)
        for name in wanted:
            owner = plan.aliases.get(name, name)
            if mixes is not None:
                state[name] = mix_state(plan, owner, mixes)
                continue
            s, e = plan.start[owner], plan.end[owner]
            coef = torch.tensor([p.coefficient(owner) for p in points], dtype=s.dtype, device=s.device)
            coef = coef.view(-1, *([1] * s.dim()))
            # (P_c, *shape): the same lerp as the sequential strategy, so both agree to the last bit
            state[name] = torch.lerp(s.expand(len(points), *s.shape), e.expand(len(points), *s.shape), coef)
        if self.stats is not None:
            for name in plan.bn_stats:
                if names is None or name in names:
                    state[name] = self.stats[name][chunk].clone()
        return state

    def _size(self, inputs: Inputs) -> None:
        """On CUDA, choose the chunk from free memory: probe one point's peak use on a batch, fill half of what
        is free (the out-of-memory retry covers a bad guess)."""
        self.sized = True
        device = next(iter(self.plan.start.values())).device
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        self._forward(self._state(slice(0, 1)), inputs)
        torch.cuda.synchronize(device)
        per_point = max(torch.cuda.max_memory_allocated(device) - before, 1)
        free, _ = torch.cuda.mem_get_info(device)
        self.chunk_size = max(1, min(len(self.points), int(0.5 * free / per_point)))

    def _chunks(
        self, inputs: Inputs, work: Callable[[slice], T], within: slice | None = None
    ) -> Iterator[tuple[slice, T]]:
        """``work`` over consecutive chunks of the points (of the points ``within``), halving the chunk on
        out-of-memory. ``work`` must change nothing before its forward pass has succeeded."""
        if not self.sized:
            self._size(inputs)
        i, stop = (0, len(self.points)) if within is None else (within.start, within.stop)
        while i < stop:
            chunk = slice(i, min(i + self.chunk_size, stop))
            try:
                result = work(chunk)
            except torch.OutOfMemoryError:
                if self.chunk_size == 1:
                    raise
                self.chunk_size = max(1, self.chunk_size // 2)
                self.shrinks += 1
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            yield chunk, result
            i = chunk.stop

    def use_statistics(self, stats: Statistics | None) -> None:
        self.stats = stats

    def calibrate(self, inputs: Inputs, stats: Statistics) -> Iterator[int]:
        self.stats = stats

        def work(chunk: slice) -> None:
            state = self._state(chunk)
            self._forward(state, inputs)  # updates the batched running statistics in ``state`` in place
            for name in self.plan.bn_stats:
                stats[name][chunk] = state[name]

        for chunk, _ in self._chunks(inputs, work):
            yield chunk.stop - chunk.start

    def evaluate(self, inputs: Inputs) -> Iterator[tuple[slice, torch.Tensor]]:
        return self._chunks(inputs, lambda chunk: self._forward(self._state(chunk), inputs))  # (P_c, B, …)
