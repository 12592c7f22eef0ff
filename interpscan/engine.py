"""The scan engine: evaluate a model at many points of the path between two states, in one pass over the data.

A point assigns every floating-point tensor an interpolation coefficient; its state is
``lerp(start, end, coefficient)`` computed afresh from the two endpoints (exact at 0 and 1, never accumulated).
Data is the outer loop and points the inner one, so each batch is sliced once for all points. Two strategies
give the same numbers: ``sequential`` writes a point's weights into one working copy of the model in place;
``batched`` evaluates a chunk of points at once with ``torch.func.functional_call`` under ``vmap``.
The caller's model is never modified.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .data import Split
from .errors import DataError, RunError, UsageError
from .objectives import CROSS_ENTROPY, Objective

POLICIES = ("interpolate", "recompute", "batch")
STRATEGIES = ("auto", "sequential", "batched", "prefix")
DTYPES = ("float32", "bfloat16", "float16")
CPU_CHUNK = 8  # points per vmap chunk on CPU, where vmap is slower than a loop anyway (ENGINE-NOTES 1)
RUNNING_STATS = ("running_mean", "running_var")

# Called as progress(advance, total): ``advance`` (point, batch) evaluations just finished, of ``total``.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Point:
    """One network on the path: tensors in ``moving`` (all when None) sit at ``alpha``; the others at ``hold``.

    ``hold`` is an interpolation coefficient too: 1.0 keeps a tensor at its final value (the seed paper's
    layer-wise scan), 0.0 at its initial value.
    """

    curve: str
    alpha: float
    moving: frozenset[str] | None = None
    hold: float = 1.0

    def coefficient(self, name: str) -> float:
        return self.alpha if self.moving is None or name in self.moving else self.hold


@dataclass(frozen=True)
class PointResult:
    """Loss and accuracy of one point on one split. ``loss_se`` is the standard error of the mean loss."""

    point: Point
    split: str
    loss: float
    loss_se: float
    accuracy: float
    n: int


@dataclass(frozen=True)
class EngineReport:
    """What the engine did, for run.json."""

    strategy: str
    policy: str
    device: str
    batch_size: int
    chunk_size: int | None
    unique_points: int
    calibration_batches: int
    seconds_calibration: float
    seconds_evaluation: float
    bn_modules: int
    note: str | None = None  # e.g. why the prefix strategy fell back to sequential
    chunk_shrinks: int = 0  # times an out-of-memory error halved the batched strategy's chunk
    dtype: str = "float32"


@dataclass
class _Totals:
    """Running sums of per-sample loss, squared loss and correct predictions, per unique point."""

    loss: torch.Tensor  # (P,) float64
    loss_sq: torch.Tensor  # (P,) float64
    correct: torch.Tensor  # (P,) int64
    n: int = 0
    checked: bool = False


@dataclass
class _Plan:
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


def batchnorm_modules(model: nn.Module) -> list[tuple[str, _BatchNorm]]:
    """The batch-norm modules that keep running statistics (the ones a BN policy is about)."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, _BatchNorm) and m.track_running_stats and m.running_mean is not None
    ]


def has_running_stats(model: nn.Module) -> bool:
    return bool(batchnorm_modules(model))


def _prepare(
    model: nn.Module,
    start: Mapping[str, torch.Tensor],
    end: Mapping[str, torch.Tensor],
    policy: str,
    device: torch.device,
) -> _Plan:
    work = copy.deepcopy(model).to(device).eval()
    for p in work.parameters():
        p.requires_grad_(False)
    bns = batchnorm_modules(work)
    stat_names = [f"{name}.{s}" if name else s for name, _ in bns for s in RUNNING_STATS]
    if policy == "batch":
        # With both running statistics None, BatchNorm normalizes with the batch's own statistics even in
        # eval mode, and updates nothing.
        for _, m in bns:
            m.running_mean = None
            m.running_var = None
    skip = set(stat_names) if policy in ("batch", "recompute") else set()
    plan = _Plan(work, {}, {}, {}, stat_names if policy == "recompute" else [], [m for _, m in bns])
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
def _precision(device: torch.device, dtype: str) -> Iterator[None]:
    """Autocast the forward pass to ``dtype``; on CUDA allow TF32 for float32 work, restoring the flags after."""
    cuda = device.type == "cuda"
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        if dtype == "float32":
            yield
        else:
            with torch.autocast(device_type=device.type, dtype=getattr(torch, dtype)):
                yield
    finally:
        if cuda:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _reset_stat(name: str, t: torch.Tensor) -> torch.Tensor:
    """Fill a running statistic with BatchNorm's initial value (mean 0, variance 1), in place."""
    return t.fill_(1.0 if name.endswith("running_var") else 0.0)


def _batches(n: int, size: int) -> Iterator[slice]:
    for lo in range(0, n, size):
        yield slice(lo, min(lo + size, n))


def _accumulate(
    totals: _Totals, idx: slice, outputs: torch.Tensor, targets: torch.Tensor, objective: Objective
) -> None:
    """outputs: (P, B, …) for the points ``idx``; targets: (B, …)."""
    p, b = outputs.shape[:2]
    flat = outputs.reshape(p * b, *outputs.shape[2:])
    repeated = targets.repeat(p, *([1] * (targets.dim() - 1)))
    losses = objective.per_sample(flat, repeated).view(p, b).double()
    totals.loss[idx] += losses.sum(1).cpu()
    totals.loss_sq[idx] += (losses * losses).sum(1).cpu()
    if objective.classification:
        totals.correct[idx] += (outputs.argmax(-1) == targets).sum(1).cpu()


# --------------------------------------------------------------------------------------- the strategies


class _Sequential:
    """One working model; each point's weights are written into it in place before its forward pass."""

    def __init__(self, plan: _Plan, points: Sequence[Point], objective: Objective) -> None:
        self.plan, self.points, self.objective = plan, points, objective
        self.state = plan.model.state_dict(keep_vars=True)
        self.stats: list[dict[str, torch.Tensor]] = [{} for _ in points]
        self.total = 0

    def _load(self, i: int) -> None:
        point = self.points[i]
        for name, s in self.plan.start.items():
            torch.lerp(s, self.plan.end[name], point.coefficient(name), out=self.state[name].data)
        for name, t in self.plan.fixed.items():
            self.state[name].data.copy_(t)
        if self.stats[i]:
            for name, t in self.stats[i].items():
                self.state[name].data.copy_(t)
        else:
            # before a point's first calibration batch: fresh statistics, so that nothing (not even a NaN
            # left by the previous point) leaks in through momentum·old = 0·NaN
            for name in self.plan.bn_stats:
                _reset_stat(name, self.state[name].data)

    def calibrate(self, x: torch.Tensor, k: int, progress: Progress | None) -> None:
        for i in range(len(self.points)):
            self._load(i)
            self.plan.model(x)
            self.stats[i] = {name: self.state[name].detach().clone() for name in self.plan.bn_stats}
            if progress:
                progress(1, self.total)

    def evaluate(self, x: torch.Tensor, y: torch.Tensor, totals: _Totals, progress: Progress | None) -> None:
        for i in range(len(self.points)):
            self._load(i)
            self._score(i, self.plan.model(x), y, totals, progress)

    def _score(
        self, i: int, outputs: torch.Tensor, y: torch.Tensor, totals: _Totals, progress: Progress | None
    ) -> None:
        if not totals.checked:  # the shapes, once per split, before anything is accumulated
            self.objective.check(outputs, y)
            totals.checked = True
        _accumulate(totals, slice(i, i + 1), outputs.unsqueeze(0), y, self.objective)
        if progress:
            progress(1, self.total)


class _Batched:
    """``vmap`` over chunks of points: stacked states (P_c, …) through ``functional_call``."""

    def __init__(self, plan: _Plan, points: Sequence[Point], objective: Objective, chunk_size: int) -> None:
        from torch.func import functional_call, vmap

        self.plan, self.points, self.objective, self.chunk_size = plan, points, objective, chunk_size
        model = plan.model

        def forward(state: dict[str, torch.Tensor], fixed: dict[str, torch.Tensor], x: torch.Tensor) -> Any:
            return functional_call(model, {**state, **fixed}, (x,))

        self.forward = vmap(forward, in_dims=(0, None, None))
        self.stats: dict[str, torch.Tensor] = {}  # name -> (P, C) running statistics under "recompute"
        self.total = 0
        self.shrinks = 0  # how often an out-of-memory error halved the chunk

    def _each_chunk(self, work: Callable[[slice], None], progress: Progress | None) -> None:
        """Run ``work`` over consecutive chunks of points. On out-of-memory the chunk is halved and the same
        points retried, so a scan never fails because a chunk was too large (a single point that does not
        fit is a real error). ``work`` must change nothing before its forward pass has succeeded."""
        i = 0
        while i < len(self.points):
            chunk = slice(i, min(i + self.chunk_size, len(self.points)))
            try:
                work(chunk)
            except torch.OutOfMemoryError:
                if self.chunk_size == 1:
                    raise
                self.chunk_size = max(1, self.chunk_size // 2)
                self.shrinks += 1
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            if progress:
                progress(chunk.stop - chunk.start, self.total)
            i = chunk.stop

    def size_chunks(self, x: torch.Tensor) -> None:
        """On CUDA, choose the chunk from free memory: probe one point's peak use on a batch, fill half of
        what is free (the out-of-memory retry covers a bad guess)."""
        if x.device.type != "cuda":
            return
        torch.cuda.synchronize(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        before = torch.cuda.memory_allocated(x.device)
        self.forward(self._state(slice(0, 1)), self.plan.fixed, x)
        torch.cuda.synchronize(x.device)
        per_point = max(torch.cuda.max_memory_allocated(x.device) - before, 1)
        free, _ = torch.cuda.mem_get_info(x.device)
        self.chunk_size = max(1, min(len(self.points), int(0.5 * free / per_point)))

    def _state(self, chunk: slice) -> dict[str, torch.Tensor]:
        points = self.points[chunk]
        state: dict[str, torch.Tensor] = {}
        for name, s in self.plan.start.items():
            coef = torch.tensor([p.coefficient(name) for p in points], dtype=s.dtype, device=s.device)
            coef = coef.view(-1, *([1] * s.dim()))
            # (P_c, *shape): the same lerp as the sequential strategy, so both agree to the last bit
            state[name] = torch.lerp(
                s.expand(len(points), *s.shape), self.plan.end[name].expand(len(points), *s.shape), coef
            )
        for name in self.plan.bn_stats:
            if name in self.stats:
                state[name] = self.stats[name][chunk].clone()
        return state

    def calibrate(self, x: torch.Tensor, k: int, progress: Progress | None) -> None:
        def work(chunk: slice) -> None:
            state = self._state(chunk)
            if k == 0:  # fresh statistics (see _Sequential._load)
                ref = self.plan.model.state_dict()
                n = chunk.stop - chunk.start
                for name in self.plan.bn_stats:
                    state[name] = _reset_stat(name, ref[name].new_empty(n, *ref[name].shape))
            self.forward(state, self.plan.fixed, x)  # updates the batched running statistics in place
            for name in self.plan.bn_stats:
                if name not in self.stats:
                    self.stats[name] = torch.empty(len(self.points), *state[name].shape[1:], device=x.device)
                self.stats[name][chunk] = state[name]

        self._each_chunk(work, progress)

    def evaluate(self, x: torch.Tensor, y: torch.Tensor, totals: _Totals, progress: Progress | None) -> None:
        def work(chunk: slice) -> None:
            outputs = self.forward(self._state(chunk), self.plan.fixed, x)  # (P_c, B, …)
            if not totals.checked:
                self.objective.check(outputs[0], y)
                totals.checked = True
            _accumulate(totals, chunk, outputs, y, self.objective)

        self._each_chunk(work, progress)


# ------------------------------------------------------------------------------------ prefix sharing
#
# With --groups and hold=final, a point that moves only layer3 runs conv1..layer2 with final weights, the same
# computation for every α and for every later group. The prefix strategy traces the model with torch.fx, runs
# each "base" network (every tensor at the hold value) once per batch, keeps the values alive at each point's
# cut (the first node that reads a tensor the point moves), and runs only the rest of the graph per point.
# BN policies stay exact: the prefix's weights (and, under recompute, its re-estimated statistics, computed
# from the same weights and data) are the base's.


@dataclass
class _Traced:
    graph: Any  # torch.fx.GraphModule sharing the working model's modules and tensors
    nodes: list[Any]
    first_read: dict[str, int]  # tensor name -> index of the first node that reads it


def _trace(plan: _Plan) -> tuple[_Traced | None, str | None]:
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
    return _Traced(gm, nodes, first_read), None


def _base_of(point: Point) -> float | None:
    """The coefficient of the network whose prefix a point shares: its hold value, for points that move a set."""
    return None if point.moving is None else point.hold


def _with_bases(points: list[Point], names: Sequence[str]) -> list[Point]:
    """Add each base network (every tensor at a hold value) to the points unless one already coincides."""
    keys = {tuple(p.coefficient(n) for n in names) for p in points}
    out = list(points)
    for base in sorted({b for p in points if (b := _base_of(p)) is not None}):
        if tuple(base for _ in names) not in keys:
            out.append(Point("", base))  # internal: evaluated for its activations, never reported
    return out


class _Prefix(_Sequential):
    """Sequential, but each point runs only the part of the graph after its first moving tensor."""

    def __init__(self, plan: _Plan, points: Sequence[Point], objective: Objective, traced: _Traced) -> None:
        import torch.fx

        super().__init__(plan, points, objective)
        self.traced = traced
        names = list(plan.start)
        end = len(traced.nodes)
        self.bases: dict[float, int] = {}  # hold value -> index of the base point
        for i, p in enumerate(points):
            # any point with one coefficient everywhere is a base network: an "all" point, the internal one
            # _with_bases adds, or a group's point at α = hold (which coincides with it and is deduplicated)
            coefficients = {p.coefficient(n) for n in names}
            if len(coefficients) == 1:
                self.bases.setdefault(coefficients.pop(), i)
        self.cut: list[int] = []
        for p in points:
            base = _base_of(p)
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
            base: _Capture(
                traced.graph,
                {n for k, p in zip(self.cut, points, strict=True) if _base_of(p) == base for n in live[k]},
            )
            for base in self.bases
        }
        self.suffix = torch.fx.Interpreter(traced.graph)  # re-entered with each point's initial values

    def evaluate(self, x: torch.Tensor, y: torch.Tensor, totals: _Totals, progress: Progress | None) -> None:
        nodes = self.traced.nodes
        for base, i in self.bases.items():
            self._load(i)
            self._score(i, self.captures[base].run(x), y, totals, progress)
        base_points = set(self.bases.values())
        for i, p in enumerate(self.points):
            if i in base_points:
                continue
            self._load(i)
            k = self.cut[i]
            if k == 0:
                outputs = self.plan.model(x)
            else:
                values = self.captures[_base_of(p)].saved  # type: ignore[index]
                env = {n: values.get(n) for n in nodes[:k]}  # dead values: None, never read
                outputs = self.suffix.run(x, initial_env=env)
            self._score(i, outputs, y, totals, progress)


class _Capture:
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


# ------------------------------------------------------------------------------------------- the entry


def _untie(point: Point, aliases: Mapping[str, str]) -> Point:
    """A point that moves any name of a tied tensor moves the tensor (under its first name)."""
    if point.moving is None or not aliases or not (point.moving & aliases.keys()):
        return point
    moving = point.moving | {aliases[n] for n in point.moving if n in aliases}
    return Point(point.curve, point.alpha, frozenset(moving), point.hold)


def _dedupe(points: Sequence[Point], names: Sequence[str]) -> tuple[list[Point], list[int]]:
    """Evaluate each distinct network once: points with equal coefficients on every tensor coincide."""
    unique: list[Point] = []
    where: dict[tuple[float, ...], int] = {}
    index: list[int] = []
    for p in points:
        key = tuple(p.coefficient(n) for n in names)
        if key not in where:
            where[key] = len(unique)
            unique.append(p)
        index.append(where[key])
    return unique, index


def scan_points(
    model: nn.Module,
    start: Mapping[str, torch.Tensor],
    end: Mapping[str, torch.Tensor],
    points: Sequence[Point],
    splits: Sequence[Split],
    *,
    policy: str = "interpolate",
    calibration: torch.Tensor | None = None,
    calibration_batch_size: int | None = None,
    strategy: str = "sequential",
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    chunk_size: int | None = None,
    progress: Progress | None = None,
    objective: Objective = CROSS_ENTROPY,
    dtype: str = "float32",
    resume: Mapping[str, Any] | None = None,
    on_batch: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[list[PointResult], EngineReport]:
    """Evaluate the model at every point on every split.

    Args:
        model: module whose ``state_dict()`` names match ``start`` and ``end``; copied, never modified.
        start, end: the path's endpoints θ_A, θ_B (same names and shapes; checked by the caller).
        points: the networks to evaluate; coinciding points are evaluated once.
        splits: data in memory; each is moved to ``device`` once.
        policy: batch-norm policy, one of POLICIES (see DOMAIN.md): "interpolate" the running statistics,
            "recompute" them per point from ``calibration`` inputs (cumulative average), or normalize with the
            "batch"'s own statistics.
        calibration: (M, …) training inputs for "recompute", processed in batches of
            ``calibration_batch_size`` (default ``batch_size``).
        strategy: "sequential", "batched" (vmap over chunks of ``chunk_size`` points; by default sized from
            free memory on CUDA, 8 on CPU, and halved on out-of-memory) or "prefix" (sequential, sharing
            the forward pass up to each point's first moving tensor; sequential when torch.fx cannot trace).
        batch_size: examples per forward pass.
        dtype: "float32", or "bfloat16"/"float16" for the forward pass under autocast. Interpolation, the
            loss and all sums stay in float32 or better. On CUDA, float32 matmuls and convolutions may use
            TF32 during the scan.
        on_batch: called after every finished evaluation batch with a snapshot of the scan so far (the sums
            per point and split, and the re-estimated BN statistics): small, made of tensors and numbers.
        resume: such a snapshot, from a scan of the same points, data and options: the re-estimation and the
            finished batches are not run again, and the sums continue from there, so the result is the same
            as an uninterrupted scan's.
        progress: called with the number of (point, batch) evaluations just finished.
        objective: the per-sample loss (and whether accuracy is defined); cross-entropy by default.

    Returns:
        One PointResult per (point, split), in the order of ``points`` then ``splits``; and an EngineReport.

    Raises:
        UsageError: an unknown policy or strategy, or "recompute" without calibration data.
        DataError: the model's output does not fit the targets.
        RunError: the model's forward pass raised.
    """
    if policy not in POLICIES:
        raise UsageError(f"unknown BN policy {policy!r}", hint=f"use one of {', '.join(POLICIES)}")
    if strategy not in STRATEGIES[1:]:
        raise UsageError(f"unknown strategy {strategy!r}", hint="use sequential, batched or prefix")
    if batch_size <= 0:
        raise UsageError(f"--batch-size must be positive, got {batch_size}")
    if dtype not in DTYPES:
        raise UsageError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    dev = torch.device(device)
    plan = _prepare(model, start, end, policy, dev)
    if policy == "recompute" and plan.bn_stats and calibration is None:
        raise UsageError(
            "BN policy 'recompute' needs training data to re-estimate statistics",
            hint="use --bn interpolate or --bn batch, or data with a train split",
        )
    unique, index = _dedupe([_untie(p, plan.aliases) for p in points], sorted(plan.start))
    sized = chunk_size is None and dev.type == "cuda"  # chosen from free memory on the first batch
    chunk = min(chunk_size or CPU_CHUNK, len(unique))
    note = None
    runner: _Sequential | _Batched
    if strategy == "prefix":
        traced, note = _trace(plan)
        if traced is None:
            strategy = "sequential"
        else:
            unique = _with_bases(unique, sorted(plan.start))
            runner = _Prefix(plan, unique, objective, traced)
    if strategy == "sequential":
        runner = _Sequential(plan, unique, objective)
    elif strategy == "batched":
        runner = _Batched(plan, unique, objective, chunk)

    cb_size = calibration_batch_size or batch_size
    recompute = policy == "recompute" and bool(plan.bn_stats) and calibration is not None
    runner.total = len(unique) * (
        sum(math.ceil(len(s) / batch_size) for s in splits)
        + (math.ceil(len(calibration) / cb_size) if recompute and calibration is not None else 0)
    )
    calib_batches = 0
    t0 = time.perf_counter()
    try:
        with torch.inference_mode(), _precision(dev, dtype):
            if sized and isinstance(runner, _Batched):
                probe = calibration if calibration is not None and recompute else splits[0].inputs
                runner.size_chunks(probe[:batch_size].to(dev))
            if resume is not None:
                if int(resume["unique_points"]) != len(unique):
                    raise UsageError("the saved partial scan was made for other points", hint="rerun without --resume")
                if resume.get("stats") is not None:
                    runner.stats = resume["stats"]
                if progress:
                    progress(int(resume["units"]), runner.total)
            if recompute and calibration is not None and (resume is None or resume.get("stats") is None):
                calib = calibration.to(dev)
                saved = [m.momentum for m in plan.bn_modules]
                fixed = {k: v.clone() for k, v in plan.fixed.items()}  # BN's train mode bumps its counters
                for m in plan.bn_modules:
                    m.train()  # only the BN modules: dropout and the rest stay in eval mode
                for k, sl in enumerate(_batches(len(calib), cb_size)):
                    for m in plan.bn_modules:
                        m.momentum = 1.0 / (k + 1)  # the cumulative average, as momentum=None would give
                    runner.calibrate(calib[sl], k, progress)
                    calib_batches += 1
                for m, mom in zip(plan.bn_modules, saved, strict=True):
                    m.momentum = mom
                    m.eval()
                for name, value in fixed.items():
                    plan.fixed[name].copy_(value)
            t1 = time.perf_counter()

            results: list[PointResult] = []
            per_split: list[_Totals] = []
            finished: list[dict[str, Any]] = []  # one entry per split begun, for on_batch's snapshots
            saved_splits = list(resume["splits"]) if resume is not None else []
            units = int(resume["units"]) if resume is not None else calib_batches * len(unique)
            for si, split in enumerate(splits):
                x_all, y_all = split.inputs.to(dev), split.targets.to(dev)
                totals = _Totals(
                    torch.zeros(len(unique), dtype=torch.float64),
                    torch.zeros(len(unique), dtype=torch.float64),
                    torch.zeros(len(unique), dtype=torch.int64),
                )
                skip = 0
                if si < len(saved_splits):
                    entry = saved_splits[si]
                    totals.loss.copy_(entry["loss"])
                    totals.loss_sq.copy_(entry["loss_sq"])
                    totals.correct.copy_(entry["correct"])
                    totals.n, skip = int(entry["n"]), int(entry["batches"])
                for b, sl in enumerate(_batches(len(split), batch_size)):
                    if b < skip:
                        continue
                    runner.evaluate(x_all[sl], y_all[sl], totals, progress)
                    totals.n += sl.stop - sl.start
                    units += len(unique)
                    if on_batch is not None:
                        entry = {
                            "loss": totals.loss.clone(),
                            "loss_sq": totals.loss_sq.clone(),
                            "correct": totals.correct.clone(),
                            "n": totals.n,
                            "batches": b + 1,
                        }
                        on_batch(
                            {
                                "unique_points": len(unique),
                                "stats": runner.stats if recompute else None,
                                "splits": [*finished, entry],
                                "units": units,
                            }
                        )
                finished.append(
                    {
                        "loss": totals.loss.clone(),
                        "loss_sq": totals.loss_sq.clone(),
                        "correct": totals.correct.clone(),
                        "n": totals.n,
                        "batches": math.ceil(len(split) / batch_size),
                    }
                )
                per_split.append(totals)
            t2 = time.perf_counter()
    except (DataError, UsageError):
        raise
    except torch.OutOfMemoryError as exc:
        raise RunError(
            f"out of memory on {dev} evaluating a single point on a batch of {batch_size}",
            hint="lower --batch-size, or use --dtype bfloat16",
        ) from exc
    except RuntimeError as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(
            f"the model's forward pass failed: {msg}",
            hint="check that the data's shape fits the model (e.g. in_channels)",
        ) from exc

    for p, u in zip(points, index, strict=True):
        for split, totals in zip(splits, per_split, strict=True):
            n = totals.n
            mean = float(totals.loss[u]) / n if n else math.nan
            var = (float(totals.loss_sq[u]) - n * mean * mean) / (n - 1) if n > 1 else math.nan
            se = math.sqrt(max(var, 0.0) / n) if n > 1 and math.isfinite(var) else math.nan
            acc = float(totals.correct[u]) / n if n and objective.classification else math.nan
            results.append(PointResult(p, split.name, mean, se, acc, n))
    report = EngineReport(
        strategy=strategy,
        policy=policy,
        device=str(dev),
        batch_size=batch_size,
        chunk_size=runner.chunk_size if isinstance(runner, _Batched) else None,
        chunk_shrinks=runner.shrinks if isinstance(runner, _Batched) else 0,
        dtype=dtype,
        unique_points=len(unique),
        calibration_batches=calib_batches,
        seconds_calibration=t1 - t0,
        seconds_evaluation=t2 - t1,
        bn_modules=len(plan.bn_modules),
        note=note,
    )
    return results, report
