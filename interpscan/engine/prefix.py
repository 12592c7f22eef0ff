"""The prefix strategy: with groups, a point that moves only layer3 runs conv1..layer2 with the hold weights, the
same computation for every α and for every later group.

The model is traced with torch.fx; each "base" network (every tensor at a hold value) runs once per batch,
keeping the values alive at each point's cut (the first node that reads a tensor the point moves), and each
point runs only the rest of the graph. BN policies stay exact: the prefix's weights (and, under recompute, its
re-estimated statistics, computed from the same weights and data) are the base's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..data.batches import Inputs
from ..options import Strategy
from .forward import scores, users_code
from .plan import Plan
from .points import Point
from .runners import Runner, Sequential


@dataclass
class Traced:
    graph: Any  # torch.fx.GraphModule sharing the working model's modules and tensors
    nodes: list[Any]
    first_read: dict[str, int]  # tensor name -> index of the first node that reads it


def trace(plan: Plan) -> tuple[Traced | None, str | None]:
    """Trace the working model; None and the reason when torch.fx cannot (data-dependent control flow, …)."""
    import torch.fx

    try:
        gm = torch.fx.symbolic_trace(plan.model)
    except Exception as exc:  # fx raises TraceError, TypeError, NotImplementedError, ... for untraceable code
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"prefix sharing unavailable (torch.fx could not trace the model: {reason}); ran sequential"
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


class Prefix(Sequential):
    """Sequential, but each point runs only the part of the graph after its first moving tensor."""

    strategy = Strategy.PREFIX

    def __init__(self, plan: Plan, points: Sequence[Point], traced: Traced) -> None:
        import torch.fx

        super().__init__(plan, points)
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
        self.cut: list[int] = []
        for p in points:
            base = base_of(p)
            if base is None or base not in self.bases:
                self.cut.append(0)
                continue
            varying = [n for n in names if p.coefficient(n) != base]
            self.cut.append(min((traced.first_read.get(n, end) for n in varying), default=end))
        last_use: dict[Any, int] = {}
        for i, node in enumerate(traced.nodes):
            for used in node.all_input_nodes:
                last_use[used] = i
        # cut -> nodes before it whose values are used at or after it; per base, the union over its points
        live = {k: [n for n in traced.nodes[:k] if last_use.get(n, -1) >= k] for k in set(self.cut)}
        self.captures = {
            base: Capture(
                traced.graph,
                {n for k, p in zip(self.cut, points, strict=True) if base_of(p) == base for n in live[k]},
            )
            for base in self.bases
        }
        self.suffix = torch.fx.Interpreter(traced.graph)  # re-entered with each point's initial values

    def evaluate(self, inputs: Inputs) -> Iterator[tuple[slice, torch.Tensor]]:
        if not isinstance(inputs, torch.Tensor):  # the traced graph takes one positional tensor
            self.note = "prefix sharing needs a single input tensor, and the data has named inputs; ran sequential"
            self.strategy = Strategy.SEQUENTIAL
            yield from super().evaluate(inputs)
            return
        nodes = self.traced.nodes
        for base, i in self.bases.items():
            self.load(i)
            with users_code(inputs):
                output = self.captures[base].run(inputs)
            yield slice(i, i + 1), scores(output).unsqueeze(0)
        base_points = set(self.bases.values())
        for i, p in enumerate(self.points):
            if i in base_points:
                continue
            self.load(i)
            k = self.cut[i]
            with users_code(inputs):
                if k == 0:
                    output = self.plan.model(inputs)
                else:
                    values = self.captures[base_of(p)].saved  # type: ignore[index]
                    env = {n: values.get(n) for n in nodes[:k]}  # dead values: None, never read
                    output = self.suffix.run(inputs, initial_env=env)
            yield slice(i, i + 1), scores(output).unsqueeze(0)


def prefix_runner(plan: Plan, points: Sequence[Point]) -> tuple[Runner, Sequence[Point]]:
    """A Prefix runner over ``points`` plus the base networks it shares from; Sequential (with a note saying
    why) when torch.fx cannot trace the model."""
    traced, note = trace(plan)
    if traced is None:
        runner = Sequential(plan, points)
        runner.note = note
        return runner, points
    points = with_bases(points, plan.names)
    return Prefix(plan, points, traced), points
