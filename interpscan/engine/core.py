"""The engine's loop: data outer, points inner. Each split is a stream of batches; every distinct point is
evaluated on each batch as it arrives (by the strategy's runner), and its per-example losses are summed.

A point's weights are ``lerp(start, end, coefficient)`` computed afresh from the endpoints (exact at 0 and 1,
never accumulated), in float32 whatever the checkpoints' dtype; a point with a ``mix`` (a plane, a surface along
directions) is the linear combination of the states start, end and ``basis`` (runners.mix_state), exact at each
state's own coefficients. The caller's model is never modified.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..data.batches import Batches, Split, batch_len, slice_inputs, to_device
from ..distributed import World
from ..errors import DataError, RunError, UsageError, opt
from ..objectives import CROSS_ENTROPY, IGNORE_INDEX, Objective
from ..options import BNPolicy, DType, MemoryFormat, Strategy, check_memory_format
from ..progress import Progress  # called (n, total): n more evaluations done, of total
from .calibration import recompute_statistics
from .plan import Plan, laid_out, precision, prepare, try_channels_last
from .points import Point, PointResult, dedupe, untie
from .prefix import prefix_runner
from .runners import Batched, Runner, Sequential, Statistics
from .snapshot import Snapshot, SplitSums


def _positive(value: int | None, what: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise UsageError(f"{what} must be a whole number ≥ 1, got {value!r}")


@dataclass(frozen=True)
class EngineOptions:
    """How the engine evaluates: the BN policy and strategy (concrete: decisions.py resolves ``auto``), where,
    in batches of what size, and in which precision. Checked when built.

    ``chunk_size`` is the batched strategy's points per forward pass (default: from free memory on CUDA, 8 on
    CPU); ``calibration_batch_size`` the batch size of the ``recompute`` re-estimation (default ``batch_size``).
    ``keep_examples`` keeps every example's loss (and correctness) at every point, not only their sums: each
    PointResult then carries them, for a bootstrap over examples (4–5 bytes per point and example).
    """

    policy: BNPolicy = BNPolicy.INTERPOLATE
    strategy: Strategy = Strategy.SEQUENTIAL
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int = 256
    calibration_batch_size: int | None = None
    chunk_size: int | None = None
    dtype: DType = DType.FLOAT32
    keep_examples: bool = False
    memory_format: MemoryFormat = MemoryFormat.CONTIGUOUS

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "policy", BNPolicy.parse(self.policy, "policy"))
        set_(self, "strategy", Strategy.parse(self.strategy, "strategy"))
        set_(self, "dtype", DType.parse(self.dtype, "dtype"))
        set_(self, "memory_format", MemoryFormat.parse(self.memory_format, "memory_format"))
        set_(self, "device", torch.device(self.device))
        for concrete, flag in (
            (self.policy, "policy"),
            (self.strategy, "strategy"),
            (self.memory_format, "memory_format"),
        ):
            if concrete.value == "auto":
                raise UsageError(f"the engine needs a concrete {flag}, not auto", hint="see interpscan.decisions")
        check_memory_format(self.memory_format, self.strategy)
        _positive(self.batch_size, "batch_size")
        _positive(self.calibration_batch_size, "the calibration batch size")
        _positive(self.chunk_size, "chunk_size")


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
    calibration_examples: int
    seconds_calibration: float
    seconds_evaluation: float
    bn_modules: int
    note: str | None = None  # e.g. why the prefix strategy fell back to sequential
    chunk_shrinks: int = 0  # times an out-of-memory error halved the batched strategy's chunk
    dtype: str = "float32"
    ignored: dict[str, int] = field(default_factory=dict)  # split -> examples left out (label -100)
    memory_format: str = "contiguous"  # the layout the points ran in
    memory_format_note: str | None = None  # why channels-last was asked for and not used


class _Meter:
    """Counts (point, batch) evaluations and tells ``progress``."""

    def __init__(self, progress: Progress | None, total: int | None, done: int = 0) -> None:
        self.progress, self.total, self.done = progress, total, done
        if progress is not None and done:
            progress(done, total)

    def advance(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(n, self.total)


def _accumulate(
    sums: SplitSums,
    idx: slice,
    outputs: torch.Tensor,
    targets: torch.Tensor,
    objective: Objective,
    kept: tuple[torch.Tensor, torch.Tensor] | None,
) -> None:
    """outputs: (P, B, …) for the points ``idx``; targets: (B, …); ``kept``: the batch's (points, B) per-example
    losses and hits, filled in for ``idx`` when examples are kept."""
    p, b = outputs.shape[:2]
    flat = outputs.reshape(p * b, *outputs.shape[2:])
    repeated = targets.repeat(p, *([1] * (targets.dim() - 1)))
    losses = objective.per_sample(flat, repeated).view(p, b).double()
    sums.loss[idx] += losses.sum(1).cpu()
    sums.loss_sq[idx] += (losses * losses).sum(1).cpu()
    hits = outputs.argmax(-1) == targets if objective.classification else None
    if hits is not None:
        sums.correct[idx] += hits.sum(1).cpu()
    if kept is not None:
        kept[0][idx] = losses.float().cpu()
        if hits is not None:
            kept[1][idx] = hits.cpu()


def _as_calibration(calibration: Batches | torch.Tensor | None) -> Batches | None:
    if isinstance(calibration, torch.Tensor):  # inputs alone; the targets are never read
        return Split("calibration", calibration, torch.zeros(len(calibration)), None)
    return calibration


def _total(
    points: int, splits: Sequence[Batches], batch_size: int, calibration: Batches | None, cb: int, world: World
) -> int | None:
    """(point, batch) evaluations this rank will make, when known."""
    counts = [None if (n := s.num_batches(batch_size)) is None else len(world.share(n)) for s in splits]
    if calibration is not None:
        n = calibration.num_batches(cb)
        counts.append(None if n is None else sum(world.owns_calibration(k) for k in range(n)))
    return None if any(c is None for c in counts) else points * sum(c for c in counts if c is not None)


def _share(split: Batches, batch_size: int, done: int, world: World) -> range | None:
    """The batches of ``split`` this rank evaluates, less the ``done`` first ones (a resumed scan's); None for a
    stream of unknown length in a single process (read whole, finished batches skipped).

    Raises:
        UsageError: a stream of unknown length under torchrun, which cannot be shared out.
    """
    n = split.num_batches(batch_size)
    if n is None:
        if world.size > 1:
            raise UsageError(
                f"the {split.name} split is a stream of unknown length, which cannot be shared among "
                f"{world.size} processes",
                hint="pass a Dataset or a DataLoader with a length, or run one process",
            )
        return None
    share = world.share(n)
    return range(max(share.start, done), share.stop)


def _channels_last(plan: Plan, sources: Sequence[Batches], device: torch.device) -> str | None:
    """Lay the plan out channels-last, tried first on two examples of the first split held in memory
    (plan.try_channels_last); None when it is, else why not. Data that only streams is not read for a trial (a
    one-shot stream could not be read again): it runs contiguous."""
    split = next((s for s in sources if isinstance(s, Split) and len(s)), None)
    if split is None:
        return "ran contiguous: channels-last is tried on an example held in memory, and the data streams"
    return try_channels_last(plan, to_device(slice_inputs(split.inputs, slice(0, 2)), device))


def _evaluate(
    runner: Runner,
    splits: Sequence[Batches],
    options: EngineOptions,
    objective: Objective,
    saved: Sequence[SplitSums],
    stats: Statistics | None,
    meter: _Meter,
    on_batch: Callable[[Snapshot], None] | None,
    world: World,
) -> list[SplitSums]:
    """Every point on every batch of this rank's share of every split; a snapshot after each batch when
    ``on_batch`` is given. The sums are this rank's: reduced over the ranks by the caller."""
    points = len(runner.points)
    done: list[SplitSums] = []
    copies: list[SplitSums] = []  # of the finished splits, for the snapshots
    for si, split in enumerate(splits):
        sums = saved[si].copy() if si < len(saved) else SplitSums.zeros(points)
        share = _share(split, options.batch_size, sums.batches, world)
        stream = split.batches(options.batch_size, options.device, share)
        for b, (inputs, given) in enumerate(stream, share.start if share is not None else 0):
            if b < sums.batches:
                continue  # finished before the interruption (a stream of unknown length is read from its start)
            ignored = None
            targets = objective.examples_of_targets(given)  # (B, …), or (B·(T−1),) tokens for next_token
            size = batch_len(targets)
            kept = (
                (torch.zeros(points, size), torch.zeros(points, size, dtype=torch.bool))
                if options.keep_examples
                else None
            )
            for chunk, outputs in runner.evaluate(inputs):
                if not sums.checked:  # the shapes, once per split, before anything is accumulated
                    objective.check(outputs[0], given)
                    sums.checked = True
                outputs = objective.examples_of_outputs(outputs)
                if ignored is None:  # the labels, on every batch
                    ignored = objective.labels(outputs[0], targets)
                _accumulate(sums, chunk, outputs, targets, objective, kept)
                meter.advance(chunk.stop - chunk.start)
            if kept is not None:
                counted = slice(None) if not ignored else (targets != IGNORE_INDEX).cpu()
                sums.keep(kept[0][:, counted], kept[1][:, counted])
            sums.n += size - (ignored or 0)
            sums.ignored += ignored or 0
            sums.batches = b + 1
            if on_batch is not None:
                on_batch(Snapshot(points, stats, (*copies, sums.copy()), meter.done))
        if share is not None:
            sums.batches = max(sums.batches, share.stop)  # this rank's share is finished, even an empty one
        done.append(sums)
        if on_batch is not None:
            copies.append(sums.copy())
    return done


def _reduce(splits: Sequence[Batches], sums: list[SplitSums], world: World) -> list[SplitSums]:
    """Every rank's sums combined (the single process's as they are); a split with nothing counted is an error.

    Raises:
        DataError: a split with no example to evaluate.
    """
    for split, s in zip(splits, sums, strict=True):
        world.reduce_sums(s)
        if not s.n:
            what = f"all {s.ignored} of its examples are labelled {IGNORE_INDEX}" if s.ignored else "it is empty"
            raise DataError(
                f"nothing to evaluate on the {split.name} split: {what}",
                hint=f"check the data passed with {opt('data')}",
            )
    return sums


def _results(
    points: Sequence[Point],
    index: Sequence[int],
    splits: Sequence[Batches],
    sums: Sequence[SplitSums],
    objective: Objective,
) -> list[PointResult]:
    results = []
    kept = [s.examples() for s in sums]
    for p, u in zip(points, index, strict=True):
        for split, s, k in zip(splits, sums, kept, strict=True):
            n = s.n
            mean = float(s.loss[u]) / n if n else math.nan
            var = (float(s.loss_sq[u]) - n * mean * mean) / (n - 1) if n > 1 else math.nan
            se = math.sqrt(max(var, 0.0) / n) if n > 1 and math.isfinite(var) else math.nan
            acc = float(s.correct[u]) / n if n and objective.classification else math.nan
            losses, hits = (k[0][u], k[1][u] if objective.classification else None) if k else (None, None)
            results.append(PointResult(p, split.name, mean, se, acc, n, losses, hits))
    return results


def make_runner(
    strategy: Strategy, plan: Plan, points: Sequence[Point], *, chunk_size: int | None, device: torch.device
) -> tuple[Runner, Sequence[Point]]:
    """The runner for ``strategy`` and the points it evaluates, in its order (prefix adds the base networks it
    shares from, and prefix-batched puts each group's points side by side).

    Raises:
        UsageError: ``auto`` (decisions.choose_strategy resolves it before the engine runs).
    """
    if strategy in (Strategy.PREFIX, Strategy.PREFIX_BATCHED):
        return prefix_runner(
            plan, points, batched=strategy is Strategy.PREFIX_BATCHED, chunk_size=chunk_size, device=device
        )
    if strategy is Strategy.BATCHED:
        return Batched(plan, points, chunk_size, device), points
    if strategy is Strategy.SEQUENTIAL:
        return Sequential(plan, points), points
    raise UsageError(f"the engine runs a concrete strategy, not {strategy}", hint="see decisions.choose_strategy")


def _check_mixes(points: Sequence[Point], k: int, strategy: Strategy) -> None:
    """Points with a ``mix`` come alone, each with one coefficient per state, and run by the strategies that
    evaluate whole networks (prefix sharing is between layer groups, which combinations of states do not have).

    Raises:
        UsageError: a mix of the wrong length, mix and line points together, or a prefix strategy.
    """
    mixed = [p.mix is not None for p in points]
    if not any(mixed) and k == 2:
        return
    if not all(mixed) or any(p.mix is not None and len(p.mix) != k for p in points):
        raise UsageError(f"every point must combine the {k} states (a mix of {k} coefficients)")
    if strategy in (Strategy.PREFIX, Strategy.PREFIX_BATCHED):
        raise UsageError(
            f"{opt('strategy', strategy)} shares work between layer groups, and a plane has none",
            hint=f"use {opt('strategy', 'sequential')} or {opt('strategy', 'batched')}",
        )


def scan_points(
    model: nn.Module,
    start: Mapping[str, torch.Tensor],
    end: Mapping[str, torch.Tensor],
    points: Sequence[Point],
    splits: Sequence[Batches],
    options: EngineOptions | None = None,
    *,
    calibration: Batches | torch.Tensor | None = None,
    objective: Objective = CROSS_ENTROPY,
    progress: Progress | None = None,
    resume: Snapshot | None = None,
    on_batch: Callable[[Snapshot], None] | None = None,
    world: World | None = None,
    basis: Sequence[Mapping[str, torch.Tensor]] = (),
) -> tuple[list[PointResult], EngineReport]:
    """Evaluate the model at every point on every split.

    Args:
        model: module whose ``state_dict()`` names match ``start`` and ``end``; copied, never modified.
        start, end: the path's endpoints θ_A, θ_B (same names and shapes; checked by the caller).
        points: the networks to evaluate; coinciding points are evaluated once.
        splits: streams of (inputs, targets) batches (data/batches.py); a resident Split is moved to the device
            once, a Stream batch by batch.
        options: policy, strategy, device, batch sizes, precision (EngineOptions; the defaults when None).
        calibration: training inputs for ``recompute`` (a split, or a tensor of inputs), read once.
        objective: the per-example loss (and whether accuracy is defined); cross-entropy by default.
        progress: told about the (point, batch) evaluations as they finish.
        on_batch: given a Snapshot after every finished evaluation batch (copies: keep it as it is).
        resume: such a snapshot, from a scan of the same points, data and options: the re-estimation and the
            finished batches are not run again, and the sums continue from there, so the result is the same
            as an uninterrupted scan's.
        world: this process's rank among the processes of one scan (distributed.py): it evaluates its share of
            each split's batches and of the calibration batches, and the sums and statistics are reduced over
            the ranks, so every rank returns the single process's result. A snapshot is the rank's own.
        basis: more states (same names) that points with a ``mix`` (of length 2 + len(basis)) combine.

    Returns:
        One PointResult per (point, split), in the order of ``points`` then ``splits``; and an EngineReport.

    Raises:
        UsageError: ``recompute`` without calibration data, or a snapshot made for other points.
        DataError: the model's output does not fit the targets.
        RunError: the model's forward pass raised, or a single point does not fit in memory.
    """
    options, world = options or EngineOptions(), world or World()
    device = options.device
    _check_mixes(points, 2 + len(basis), options.strategy)
    plan = prepare(model, start, end, options.policy, device, basis)
    recompute = options.policy is BNPolicy.RECOMPUTE and bool(plan.bn_stats)
    calib = _as_calibration(calibration)
    layout_note = None
    if options.memory_format is MemoryFormat.CHANNELS_LAST:
        layout_note = _channels_last(plan, [*splits, *([calib] if calib is not None else [])], device)
    if recompute and calib is None:
        raise UsageError(
            "BN policy 'recompute' needs training data to re-estimate statistics",
            hint=f"use {opt('bn', 'interpolate')} or {opt('bn', 'batch')}, or data with a train split",
        )
    unique, index = dedupe([untie(p, plan.aliases) for p in points], plan.names)
    runner, evaluated = make_runner(options.strategy, plan, unique, chunk_size=options.chunk_size, device=device)
    position = {p: i for i, p in enumerate(evaluated)}  # a runner may order the points its own way
    index = [position[unique[u]] for u in index]
    if resume is not None and resume.unique_points != len(evaluated):
        raise UsageError(
            "the saved partial scan was made for other points", hint=f"rerun without {opt('resume', True)}"
        )
    stats = resume.stats if resume is not None and recompute else None
    cb = options.calibration_batch_size or options.batch_size
    need_calibration = recompute and stats is None
    total = _total(len(evaluated), splits, options.batch_size, calib if need_calibration else None, cb, world)
    meter = _Meter(progress, total, resume.units if resume is not None else 0)
    calibration_batches = calibration_examples = 0
    t0 = time.perf_counter()
    try:
        with torch.inference_mode(), precision(device, options.dtype):
            if need_calibration and calib is not None:
                batches = (
                    inputs for k, (inputs, _) in enumerate(calib.batches(cb, device)) if world.owns_calibration(k)
                )
                # every calibration pass computes batch statistics, which a channels-last batch gives less
                # precisely (plan._nchw_statistics) and, relaid per BN layer, more slowly than a contiguous one
                with laid_out(plan, torch.contiguous_format):
                    stats, calibration_batches, calibration_examples = recompute_statistics(
                        runner, plan, batches, meter.advance
                    )
                (calibration_examples,) = world.sum_ints(calibration_examples)
                stats, calibration_batches = world.reduce_statistics(stats, calibration_batches)
            runner.use_statistics(stats if recompute else None)
            t1 = time.perf_counter()
            saved = resume.splits if resume is not None else ()
            sums = _evaluate(runner, splits, options, objective, saved, stats, meter, on_batch, world)
            sums = _reduce(splits, sums, world)
            t2 = time.perf_counter()
    except torch.OutOfMemoryError as exc:
        raise RunError(
            f"out of memory on {device} evaluating a single point on a batch of {options.batch_size}",
            hint=f"lower {opt('batch_size')}, or use {opt('dtype', 'bfloat16')}",
        ) from exc
    report = EngineReport(
        strategy=str(runner.strategy),
        policy=str(options.policy),
        device=str(device),
        batch_size=options.batch_size,
        chunk_size=runner.chunk_size,
        chunk_shrinks=runner.shrinks,
        dtype=str(options.dtype),
        unique_points=len(evaluated),
        calibration_batches=calibration_batches,
        calibration_examples=calibration_examples,
        seconds_calibration=t1 - t0,
        seconds_evaluation=t2 - t1,
        bn_modules=len(plan.bn_modules),
        note=runner.note,
        ignored={split.name: s.ignored for split, s in zip(splits, sums, strict=True) if s.ignored},
        memory_format=str(
            MemoryFormat.CHANNELS_LAST if plan.layout is torch.channels_last else MemoryFormat.CONTIGUOUS
        ),
        memory_format_note=layout_note,
    )
    return _results(points, index, splits, sums, objective), report
