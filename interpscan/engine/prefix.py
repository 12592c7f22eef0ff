"""Prefix sharing: with groups, a point that moves only layer3 runs conv1..layer2 with the hold weights, the same
computation for every α and for every later group.

The model is traced with torch.fx; each "base" network (every tensor at a hold value) runs once per batch,
keeping the values alive at each point's cut (the first node that reads a tensor the point moves), and each
point runs only the rest of the graph. ``Prefix`` runs that rest point by point; ``PrefixBatched`` runs it under
vmap over chunks of a group's points (the GPU default with groups).

Batch-norm policies stay exact. Evaluating, the prefix's weights and statistics are the base's. Re-estimating
statistics (``recompute``), a BN layer before the cut sees the base's activations (train mode normalizes with
the batch's own statistics, so its running statistics do not change them) and so ends with the base's
statistics, which are copied; only the layers after the cut are re-estimated per point, from the shared
activations — the same numbers as a full forward pass per point, at the cost of the rest of the graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from ..data.batches import Inputs
from ..options import Strategy
from ..usercode import ExitCalled
from .forward import scores, users_code
from .plan import Plan
from .points import Point
from .runners import Batched, Runner, Sequential, Statistics, write_point


@dataclass
class Traced:
    module: Any  # torch.fx.GraphModule sharing the working model's modules and tensors
    nodes: list[Any]
    first_read: dict[str, int]  # tensor name -> index of the first node that reads it


def trace(plan: Plan) -> tuple[Traced | None, str | None]:
    """Trace the working model; None and the reason when torch.fx cannot (data-dependent control flow, …)."""
    import torch.fx

    try:
        gm = torch.fx.symbolic_trace(plan.model)
    # fx raises TraceError, TypeError, NotImplementedError, ... for untraceable code; a forward that calls sys.exit
    # is reported when it runs for real (forward.users_code)
    except (Exception, SystemExit) as raised:
        exc = ExitCalled(raised.code) if isinstance(raised, SystemExit) else raised
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"prefix sharing unavailable (torch.fx could not trace the model: {reason})"
    nodes = list(gm.graph.nodes)
    names = [*plan.start, *plan.fixed, *plan.bn_stats]
    first_read: dict[str, int] = {}
    for i, node in enumerate(nodes):
        if node.op in ("call_module", "get_attr"):
            target = str(node.target)
            for name in names:
                if name == target or name.startswith(target + "."):
                    first_read.setdefault(name, i)
    for alias, owner in plan.aliases.items():
        if alias in first_read:
            first_read[owner] = min(first_read.get(owner, len(nodes)), first_read[alias])
    return Traced(gm, nodes, first_read), None


def base_of(point: Point) -> float | None:
    """The coefficient of the network whose prefix a point shares: its hold value, for points that move a set."""
    return None if point.moving is None else point.hold


def with_bases(points: Sequence[Point], names: Sequence[str]) -> list[Point]:
    """Add each base network (every tensor at a hold value) to the points unless one already coincides."""
    keys = {tuple(p.coefficient(n) for n in names) for p in points}
    out = list(points)
    for base in sorted({b for p in points if (b := base_of(p)) is not None}):
        if tuple(base for _ in names) not in keys:
            out.append(Point("", base))  # internal: evaluated for its activations, never reported
    return out


class Capture:
    """Run a GraphModule node by node, keeping the values of the nodes in ``keep``."""

    def __init__(self, graph: Any, keep: set[Any]) -> None:
        import torch.fx

        outer = self

        class Interpreter(torch.fx.Interpreter):
            def run_node(self, n: Any) -> Any:
                value = super().run_node(n)
                if n in outer.keep:
                    outer.saved[n] = value
                return value

        self.keep = keep
        self.saved: dict[Any, Any] = {}
        self.interpreter = Interpreter(graph)

    def run(self, x: torch.Tensor) -> Any:
        self.saved = {}
        return self.interpreter.run(x)


class Sharing:
    """Which points share which base network's prefix, and up to where: the bases, each point's cut, the values
    each base run must keep, and which BN statistics lie before each cut."""

    def __init__(self, plan: Plan, points: Sequence[Point], traced: Traced) -> None:
        self.traced = traced
        names = list(plan.start)
        end = len(traced.nodes)
        self.bases: dict[float, int] = {}  # hold value -> index of the base point
        for i, p in enumerate(points):
            # any point with one coefficient everywhere is a base network: an "all" point, the internal one
            # with_bases adds, or a group's point at α = hold (which coincides with it and is deduplicated)
            coefficients = {p.coefficient(n) for n in names}
            if len(coefficients) == 1:
                self.bases.setdefault(coefficients.pop(), i)
        self.base_points = set(self.bases.values())
        self.cut: list[int] = []
        for p in points:
            base = base_of(p)
            if base is None or base not in self.bases:
                self.cut.append(0)
                continue
            varying = [n for n in names if p.coefficient(n) != base]
            cut = min((traced.first_read.get(n, end) for n in varying), default=end)
            # tensors the forward never reads: no cut to resume from, so the point runs whole (its outputs are
            # the base's)
            self.cut.append(cut if cut < end else 0)
        last_use: dict[Any, int] = {}
        for i, node in enumerate(traced.nodes):
            for used in node.all_input_nodes:
                last_use[used] = i
        # cut -> nodes before it whose values are used at or after it; per base, the union over its points
        self.live = {k: [n for n in traced.nodes[:k] if last_use.get(n, -1) >= k] for k in set(self.cut)}
        self.captures = {
            base: Capture(
                traced.module,
                {n for k, p in zip(self.cut, points, strict=True) if base_of(p) == base for n in self.live[k]},
            )
            for base in self.bases
        }
        # BN statistics read before each cut: they end every calibration batch equal to the base's
        self.prefix_stats = {k: [n for n in plan.bn_stats if traced.first_read.get(n, end) < k] for k in set(self.cut)}

    def base_index(self, point: Point) -> int:
        return self.bases[base_of(point)]  # type: ignore[index]


class Prefix(Sequential):
    """Sequential, but each point runs only the part of the graph after its first moving tensor."""

    strategy = Strategy.PREFIX

    def __init__(self, plan: Plan, points: Sequence[Point], traced: Traced) -> None:
        import torch.fx

        super().__init__(plan, points)
        self.traced = traced
        self.share = Sharing(plan, points, traced)
        self.suffix = torch.fx.Interpreter(traced.module)  # re-entered with each point's initial values

    @property
    def bases(self) -> dict[float, int]:
        return self.share.bases

    @property
    def cut(self) -> list[int]:
        return self.share.cut

    def _fallback(self) -> None:
        self.note = "prefix sharing needs a single input tensor, and the data has named inputs; ran sequential"
        self.strategy = Strategy.SEQUENTIAL

    def _run(self, i: int, inputs: torch.Tensor) -> Any:
        """Point ``i``'s output: the whole graph for a base (capturing), else the rest after its cut."""
        point, k = self.points[i], self.cut[i]
        with users_code(inputs):
            if i in self.share.base_points:
                return self.share.captures[_uniform(point)].run(inputs)
            if k == 0:
                return self.plan.model(inputs)
            values = self.share.captures[base_of(point)].saved  # type: ignore[index]
            env = {n: values.get(n) for n in self.traced.nodes[:k]}  # dead values: None, never read
            return self.suffix.run(inputs, initial_env=env)

    def _order(self) -> list[int]:
        """Bases first (their runs keep the values the others start from), then every other point."""
        return [*self.share.bases.values(), *(i for i in range(len(self.points)) if i not in self.share.base_points)]

    def calibrate(self, inputs: Inputs, stats: Statistics) -> Iterator[int]:
        if not isinstance(inputs, torch.Tensor):
            self._fallback()
            yield from super().calibrate(inputs, stats)
            return
        self.stats = stats
        for i in self._order():
            before = set(self.share.prefix_stats[self.cut[i]]) if i not in self.share.base_points else set()
            if len(before) < len(self.plan.bn_stats):  # else no BN layer after the cut: nothing to re-estimate
                self.load(i)
                self._run(i, inputs)  # BN in train mode updates the working model's statistics after the cut
            base = self.share.base_index(self.points[i]) if before else i
            for name in self.plan.bn_stats:
                stats[name][i].copy_(stats[name][base] if name in before else self.state[name])
            yield 1

    def evaluate(self, inputs: Inputs) -> Iterator[tuple[slice, torch.Tensor]]:
        if not isinstance(inputs, torch.Tensor):  # the traced graph takes one positional tensor
            self._fallback()
            yield from super().evaluate(inputs)
            return
        for i in self._order():
            self.load(i)
            yield slice(i, i + 1), scores(self._run(i, inputs)).unsqueeze(0)


def _uniform(point: Point) -> float:
    return point.alpha if point.moving is None else point.hold


class PrefixBatched(Batched):
    """Prefix sharing with the rest of the graph vmapped: each base runs once per batch (capturing), then each
    group's points — side by side in ``points`` — run the graph after their cut as one suffix module under vmap,
    chunk by chunk (chunk sizing and out-of-memory back-off as for Batched)."""

    strategy = Strategy.PREFIX_BATCHED

    def __init__(
        self, plan: Plan, points: Sequence[Point], traced: Traced, chunk_size: int | None, device: torch.device
    ) -> None:
        super().__init__(plan, points, chunk_size, device)
        self.traced = traced
        self.share = Sharing(plan, points, traced)
        self.working = plan.model.state_dict(keep_vars=True)
        # runs of side-by-side non-base points with one base and cut: (points, cut, base hold value or None)
        self.groups: list[tuple[slice, int, float | None]] = []
        for i, p in enumerate(points):
            if i in self.share.base_points:
                continue
            key = (self.share.cut[i], base_of(p) if self.share.cut[i] else None)
            if self.groups and self.groups[-1][0].stop == i and self.groups[-1][1:] == key:
                self.groups[-1] = (slice(self.groups[-1][0].start, i + 1), *key)
            else:
                self.groups.append((slice(i, i + 1), *key))
        self._suffixes: dict[int, tuple[set[str], Callable[..., torch.Tensor]]] = {}

    def _suffix(self, k: int) -> tuple[set[str], Callable[..., torch.Tensor]]:
        """The graph after cut ``k`` as a module whose inputs are the live values (built once per cut): the names
        of its tensors, and its forward vmapped over stacked states."""
        if k not in self._suffixes:
            import torch.fx
            from torch.func import functional_call, vmap

            graph = torch.fx.Graph()
            env = {n: graph.placeholder(f"cut_{n.name}") for n in self.share.live[k]}
            for node in self.traced.nodes[k:]:
                env[node] = graph.node_copy(node, lambda n: env[n])
            module = torch.fx.GraphModule(self.traced.module, graph)
            names = set(module.state_dict())
            fixed = {n: t for n, t in self.plan.fixed.items() if n in names}

            def forward(state: dict[str, torch.Tensor], *values: Any) -> torch.Tensor:
                return scores(functional_call(module, {**state, **fixed}, values))

            in_dims = (0, *([None] * len(self.share.live[k])))
            self._suffixes[k] = (names, vmap(forward, in_dims=in_dims))
        return self._suffixes[k]

    def _fallback(self) -> None:
        self.note = "prefix sharing needs a single input tensor, and the data has named inputs; ran batched"
        self.strategy = Strategy.BATCHED

    def _base_run(self, i: int, inputs: torch.Tensor) -> Any:
        write_point(self.plan, self.working, self.points[i], self.stats, i)
        with users_code(inputs):
            return self.share.captures[_uniform(self.points[i])].run(inputs)

    def _group_forward(self, k: int, base: float | None, inputs: torch.Tensor, chunk: slice) -> torch.Tensor:
        """(P_c, B, …) outputs of the chunk's points: the whole model for cut 0, else the suffix after ``k``. Under
        calibration (BN in train mode) the stacked statistics in the state are updated in place."""
        return self._group_run(k, base, inputs, self._state(chunk, None if k == 0 else self._suffix(k)[0]))

    def _group_run(
        self, k: int, base: float | None, inputs: torch.Tensor, state: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        if k == 0:
            return self._forward(state, inputs)
        _, suffix = self._suffix(k)
        saved = self.share.captures[base].saved  # type: ignore[index]
        with users_code(inputs, batched=True):
            return suffix(state, *(saved[n] for n in self.share.live[k]))

    def _calibrate_chunk(
        self, k: int, base: float | None, inputs: torch.Tensor, stats: Statistics, chunk: slice
    ) -> None:
        before = set(self.share.prefix_stats[k])
        state: dict[str, torch.Tensor] = {}
        if len(before) < len(self.plan.bn_stats):  # else no BN layer after the cut: nothing to re-estimate
            state = self._state(chunk, None if k == 0 else self._suffix(k)[0])
            self._group_run(k, base, inputs, state)  # updates the stacked running statistics in ``state``
        for name in self.plan.bn_stats:
            if name in before:  # the base's, as a full pass would give
                stats[name][chunk] = stats[name][self.share.bases[base]]  # type: ignore[index]
            else:
                stats[name][chunk] = state[name]

    def evaluate(self, inputs: Inputs) -> Iterator[tuple[slice, torch.Tensor]]:
        if not isinstance(inputs, torch.Tensor):
            self._fallback()
            yield from super().evaluate(inputs)
            return
        if not self.sized:
            self._size(inputs)
        for i in self.share.bases.values():
            yield slice(i, i + 1), scores(self._base_run(i, inputs)).unsqueeze(0)
        for group, k, base in self.groups:
            yield from self._chunks(inputs, partial(self._group_forward, k, base, inputs), group)

    def calibrate(self, inputs: Inputs, stats: Statistics) -> Iterator[int]:
        if not isinstance(inputs, torch.Tensor):
            self._fallback()
            yield from super().calibrate(inputs, stats)
            return
        self.stats = stats
        if not self.sized:
            self._size(inputs)
        for i in self.share.bases.values():
            self._base_run(i, inputs)
            for name in self.plan.bn_stats:
                stats[name][i].copy_(self.working[name])
            yield 1
        for group, k, base in self.groups:
            for chunk, _ in self._chunks(inputs, partial(self._calibrate_chunk, k, base, inputs, stats), group):
                yield chunk.stop - chunk.start


def prefix_runner(
    plan: Plan, points: Sequence[Point], *, batched: bool, chunk_size: int | None, device: torch.device
) -> tuple[Runner, Sequence[Point]]:
    """A Prefix (or PrefixBatched) runner over ``points`` plus the base networks it shares from; Sequential (or
    Batched), with a note saying why, when torch.fx cannot trace the model."""
    traced, note = trace(plan)
    if traced is None:
        fallback: Sequential | Batched = (
            Batched(plan, points, chunk_size, device) if batched else Sequential(plan, points)
        )
        fallback.note = f"{note}; ran {'batched' if batched else 'sequential'}"
        return fallback, points
    points = with_bases(points, plan.names)
    if not batched:
        return Prefix(plan, points, traced), points
    # a group's points side by side, so that each group is one run of the points vmap takes in chunks
    share = Sharing(plan, points, traced)
    order = sorted(
        range(len(points)),
        key=lambda i: (
            i not in share.base_points,
            share.cut[i],
            -math.inf if (b := base_of(points[i])) is None else b,
            i,
        ),
    )
    points = [points[i] for i in order]
    return PrefixBatched(plan, points, traced, chunk_size, device), points
