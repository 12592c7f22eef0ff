"""The library's entry points: one scan as a call.

``scan(model, init, final, data, …)`` takes what a notebook holds — a module, two state dicts, tensors or a
DataLoader — or files and dataset names; ``run_scan(ScanConfig)`` is the same from the command line's names.
Both check the options first (options.py), resolve the inputs (inputs.py), make the two decisions
(decisions.py), run the engine, and return a ScanResult: the tidy tables, run.json as a dict, ``figure()`` and
``save(directory)``. Nothing here needs an argv or an output directory.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from . import __version__
from .data import Split, Transform, check_normalize
from .decisions import (
    Decision,
    batch_statistics,
    batched_obstacle,
    choose_bn_policy,
    choose_memory_format,
    choose_strategy,
    default_batch_size,
)
from .devices import resolve_device
from .distributed import World, rank_device
from .download import DownloadProgress
from .engine import (
    EngineOptions,
    EngineReport,
    Point,
    PointResult,
    Progress,
    ScanSnapshot,
    Snapshot,
    has_running_stats,
    scan_points,
)
from .errors import DataError, UsageError
from .groups import Grouping, ModuleTree, resolve_groups
from .huggingface import Task, model_task
from .inputs import Data, StateLike, Weights, content_digest, resolve_data, resolve_weights, tensors_digest
from .models import CODE_KINDS, ResolvedModel, split_ties
from .objectives import CROSS_ENTROPY, IGNORE_INDEX, NEXT_TOKEN, Objective, parse_objective
from .options import (
    DEFAULT_BOOTSTRAP,
    BNPolicy,
    DType,
    Hold,
    MemoryFormat,
    Mode,
    ReadOptions,
    ScanOptions,
    Strategy,
    check_path,
)
from .refine import ROUNDS, next_alphas, round_sizes
from .tables import Curve, group_curves, results_frame, summary_frame
from .uncertainty import LEVEL, bootstrap_intervals, per_example_arrays

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

Log = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class ScanConfig(ScanOptions):
    """A scan from files: the checkpoints (init, final, and ``onward`` for a path through several), the data and
    the model as the command line names them, how to read them, and the ScanOptions. Checked when built, like
    ScanOptions; paths are as the user gave them."""

    init: Path = field(kw_only=False)
    final: Path = field(kw_only=False)
    onward: tuple[Path, ...] = ()  # checkpoints after final: the path goes on through them, in order
    data: str = "fashion-mnist-small"
    model: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    data_root: Path | None = None
    splits: tuple[str, ...] | None = ("test",)
    normalize: str = "auto"
    download: bool = True
    data_keys: tuple[str, str] | None = None
    key: str | None = None
    unsafe_pickle: bool = False
    strict: bool = True
    trust_recorded_code: bool = False
    workers: int | None = None
    resize: int | None = None
    crop: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        Transform(self.resize, self.crop)  # checked here, with the rest, before any file is read
        _ = self.read
        object.__setattr__(self, "init", check_path(self.init, "INIT"))
        object.__setattr__(self, "final", check_path(self.final, "FINAL"))
        object.__setattr__(self, "onward", tuple(check_path(c, "CHECKPOINT") for c in self.onward))
        check_path(self.data, "--data")  # a name, or a file or folder
        if self.data_root is not None:
            object.__setattr__(self, "data_root", check_path(self.data_root, "--data-root"))
        check_normalize(self.normalize)

    @property
    def read(self) -> ReadOptions:
        """The ReadOptions among these fields."""
        return ReadOptions(**{f.name: getattr(self, f.name) for f in fields(ReadOptions)})


@dataclass(frozen=True)
class ScanResult:
    """A scan's outputs as data: results.csv and summary.csv as DataFrames (their columns and dtypes: see
    tables.py), and run.json as a dict."""

    results: pd.DataFrame
    summary: pd.DataFrame
    manifest: dict[str, Any]
    # with per_example: name -> array, as per_example.npz holds them (uncertainty.per_example_arrays)
    examples: dict[str, Any] | None = field(default=None, repr=False)

    def figure(self) -> go.Figure:
        """The interactive figure ``interpscan run`` puts in results.html (plots.path_figure)."""
        from .plots import path_figure
        from .report import run_title

        return path_figure(self.results, self.summary, title=run_title(self.manifest))

    def save(self, directory: str | Path, *, force: bool = False, html: bool = True) -> dict[str, Path]:
        """Write results.csv, summary.csv, run.json and results.html (and per_example.npz when the scan kept
        examples) into ``directory`` (created; a non-empty one only with ``force``), as ``interpscan run`` does.
        Returns file name -> path.

        Raises:
            OutputError: the directory is not empty (without ``force``), locked by a run, or not writable.
        """
        from .rundir import RunDirectory

        with RunDirectory(Path(directory), force=force) as run_dir:
            return run_dir.write(self, html=html)


@dataclass(frozen=True)
class Hooks:
    """What a caller is told while a scan runs, where it resumes from, the command line for run.json, and the
    process's rank among the processes of one scan (torchrun; distributed.py)."""

    progress: Progress | None = None  # (point, batch) evaluations as they finish
    log: Log | None = None  # one-line messages: what was chosen, downloaded, filled
    download: DownloadProgress | None = None
    resume: ScanSnapshot | None = None
    on_batch: Callable[[ScanSnapshot], None] | None = None
    command: Sequence[str] | None = None
    world: World = field(default_factory=World)


def scan(
    model: nn.Module | str | None,
    init: StateLike | Sequence[StateLike],
    final: StateLike | None,
    data: Any,
    *,
    alphas: int | str | Sequence[float] = 21,
    alpha_range: str | Sequence[float] | None = None,
    groups: str | Sequence[str] | None = None,
    hold: Hold | str = Hold.FINAL,
    mode: Mode | str = Mode.ONLY,
    bn: BNPolicy | str = BNPolicy.AUTO,
    bn_samples: int = 2048,
    splits: str | Sequence[str] | None = None,
    samples: int | None = None,
    seed: int = 0,
    device: str = "auto",
    batch_size: int | None = None,
    chunk_size: int | None = None,
    dtype: DType | str = DType.FLOAT32,
    strategy: Strategy | str = Strategy.AUTO,
    memory_format: MemoryFormat | str = MemoryFormat.AUTO,
    loss: str = "cross_entropy",
    tol: float = 0.0,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    per_example: bool = False,
    random_init: int | None = None,
    refine: int = 0,
    calibration: Any = None,
    strict: bool = True,
    workers: int | None = None,
    resize: int | None = None,
    crop: int | None = None,
    progress: Progress | None = None,
    log: Log | None = None,
) -> ScanResult:
    """Evaluate ``model`` along θ(α) = (1−α)·θ_init + α·θ_final: the whole network and, with ``groups``, one
    curve per group (that group moving, the rest held at ``hold``). Given a list of checkpoints ``[c0, c1, …,
    cm]`` as ``init`` (and None as ``final``), along the piecewise-linear path through them: each segment
    c_{i−1} → c_i scanned as its own path (interpscan.paths).

    Args:
        model: an ``nn.Module`` (never modified), a ``--model`` spec (``"resnet18"``, ``"net.py:make"``), or None
            to use ``final`` when it is a module, else what the checkpoint files bring, record or match.
        init, final: state dicts, modules, checkpoint paths, or loaded Checkpoints; or ``init`` a list or tuple
            of two or more of them and ``final`` None.
        data: ``(inputs, targets)`` tensors (inputs may be a dict of tensors), a ``Dataset``, a ``DataLoader`` or
            any iterable of ``(inputs, targets)`` batches (or dicts with ``labels``), a mapping of split name to
            any of those, or a dataset name or file as ``--data`` takes it.
        alphas: a count of evenly spaced α in [0, 1] (or ``alpha_range``), or the α values themselves.
        groups: ``--groups`` patterns (``"layer*"``, ``"head=fc,!fc.bias"``, ``"@top"``).
        hold, mode: where the other tensors stay (``final``/``init``), and whether the group moves (``only``) or
            everything else does (``all-but``); for groups only.
        bn: batch-norm policy: ``auto``, ``interpolate``, ``recompute`` (from ``bn_samples`` examples of the
            ``train`` split, or from ``calibration``), ``batch``.
        splits: the splits to evaluate (default: ``test`` when the data has one, else all).
        samples, seed: a seeded subset of ``samples`` examples per split (data in memory or read from files).
        device, batch_size, chunk_size, dtype, strategy: where and how (every strategy gives the same numbers).
        memory_format: ``auto`` (channels-last for conv nets on CPU, where it is 1.3–2.8× faster), ``contiguous``, or
            ``channels-last``; the layouts agree to float32 rounding.
        loss: ``cross_entropy`` (with accuracy), ``mse``, or ``path/to/file.py:fn``.
        tol: a path is monotone when its largest rise Δ ≤ tol.
        bootstrap: resamples of the examples behind each shape metric's 95% interval (summary's ``*_ci_low``,
            ``*_ci_high``, ``rise_significant``; see interpscan.uncertainty); 0 skips it.
        per_example: keep every example's loss at every point in ``ScanResult.examples`` (and ``save``'s
            per_example.npz).
        random_init: append a fresh initialization of the model, its factory called after
            ``torch.manual_seed(random_init)``, as the path's last checkpoint (init → final → random init).
        refine: add this many points per curve and segment after the grid, in rounds, where the curve is least
            resolved (interpscan.refine); results' ``refined`` column marks them, and the metrics use every point.
        calibration: data for ``recompute`` (any form ``data`` takes, one split), used whole.
        strict: checkpoint tensors the model lacks, or lacks in them, are errors (else filled and recorded).
        workers, resize, crop: how an image folder named as ``data`` (or ``"imagenet"``) streams, as ``--workers``,
            ``--resize`` and ``--crop``: DataLoader worker processes decoding it (None: the cores less one, at most
            8); the shorter side resized to ``resize`` pixels, then the centre ``crop`` × ``crop`` (either None:
            left out; either given: the folder streams). Only for data named by path or name.
        progress: told ``(done, total)`` as (point, batch) evaluations finish (total None while unknown).
        log: told one-line messages (what was chosen and why).

    Returns:
        A ScanResult (``.results``, ``.summary``, ``.manifest``, ``.figure()``, ``.save(dir)``).

    Raises:
        InterpscanError: bad options (before anything is read), unreadable or mismatched inputs, or a model
            that fails on the data.
    """
    options = ScanOptions(
        alphas=alphas,
        alpha_range=alpha_range,
        groups=(groups,) if isinstance(groups, str) else tuple(groups or ()),
        hold=hold,  # type: ignore[arg-type]  # a string is parsed into the enum
        mode=mode,  # type: ignore[arg-type]
        bn=bn,  # type: ignore[arg-type]
        bn_samples=bn_samples,
        splits=(splits,) if isinstance(splits, str) else (tuple(splits) if splits is not None else None),
        samples=samples,
        seed=seed,
        device=device,
        batch_size=batch_size,
        chunk_size=chunk_size,
        dtype=dtype,  # type: ignore[arg-type]
        strategy=strategy,  # type: ignore[arg-type]
        memory_format=memory_format,  # type: ignore[arg-type]
        loss=loss,
        tol=tol,
        bootstrap=bootstrap,
        per_example=per_example,
        random_init=random_init,
        refine=refine,
    )
    read = ReadOptions(strict=strict, workers=workers, resize=resize, crop=crop)
    Transform(resize, crop)  # checked with the rest, before anything is read
    path = _checkpoint_list(init, final)
    hooks = Hooks(progress=progress, log=log)
    return _scan(model, path, data, options, read, hooks, calibration=calibration)


def _checkpoint_list(init: StateLike | Sequence[StateLike], final: StateLike | None) -> list[StateLike]:
    """``scan``'s checkpoints: ``init`` and ``final``, or the list given as ``init``.

    Raises:
        UsageError: a list with ``final`` too, fewer than two checkpoints, or no ``final`` for one.
    """
    if isinstance(init, (list, tuple)):
        if final is not None:
            raise UsageError(
                "init is a list of checkpoints and final is given too",
                hint="pass the whole path as init=[c0, c1, …] with final=None, or two checkpoints",
            )
        if len(init) < 2:
            raise UsageError(f"a path needs two or more checkpoints, got {len(init)}", hint="pass [init, final, …]")
        return list(init)
    if final is None:
        raise UsageError("final is None", hint="pass the final checkpoint, or the whole path as a list as init")
    return [init, final]  # type: ignore[list-item]  # a str is a Sequence too; lists and tuples were taken above


def run_scan(
    config: ScanConfig,
    progress: Progress | None = None,
    log: Log | None = None,
    download_progress: DownloadProgress | None = None,
    resume: ScanSnapshot | None = None,
    on_batch: Callable[[ScanSnapshot], None] | None = None,
    command: Sequence[str] | None = None,
    world: World | None = None,
) -> ScanResult:
    """``scan`` from the command line's names (ScanConfig): what ``interpscan run`` does, minus the files.

    ``on_batch`` receives a resumable snapshot after every finished batch; ``resume`` continues from one (it must
    come from the same scan: same inputs, points and options, checked by fingerprint). ``command`` is recorded in
    run.json. ``world``: this process's rank when several run the scan (torchrun, with the process group
    joined: distributed.joined); each evaluates its share, and every rank returns the whole result.

    Raises:
        InterpscanError: any problem with the inputs, before compute starts where it can be known.
    """
    hooks = Hooks(progress, log, download_progress, resume, on_batch, command, world or World())
    path = [config.init, config.final, *config.onward]
    return _scan(config.model, path, config.data, config, config.read, hooks)


def non_finite_warning(label: str, tensors: Mapping[str, torch.Tensor]) -> str | None:
    """A warning line when a checkpoint holds NaN or Inf values: the scan still runs, its losses will not be
    finite. None when every value is finite."""
    counts = {k: int((~torch.isfinite(t)).sum()) for k, t in tensors.items() if t.is_floating_point() or t.is_complex()}
    bad = {k: n for k, n in sorted(counts.items()) if n}
    if not bad:
        return None
    total = sum(bad.values())
    names = ", ".join(list(bad)[:5]) + (", …" if len(bad) > 5 else "")
    return (
        f"warning: {label} holds {total} non-finite value{'s' if total != 1 else ''} ({names}) — the scan runs; "
        "expect NaN losses"
    )


def non_finite_inputs_warning(split: Any) -> str | None:
    """A warning line when a split in memory holds NaN or Inf inputs: the scan runs, those examples' losses will
    not be finite. None when every input is finite, or when the split is streamed (not read ahead)."""
    if not isinstance(split, Split):
        return None
    tensors = split.inputs.values() if isinstance(split.inputs, Mapping) else [split.inputs]
    bad = sum(int((~torch.isfinite(t)).sum()) for t in tensors if t.is_floating_point() or t.is_complex())
    if not bad:
        return None
    return (
        f"warning: the {split.name} split holds {bad} non-finite input value{'s' if bad != 1 else ''} — the scan "
        "runs; expect NaN losses"
    )


def _check_path_length(weights: Weights) -> None:
    """A path from a network to itself has length zero: every point is the same network, every metric 0 or
    undefined; so has a segment between two equal consecutive checkpoints. Tensors the scan moves (floating
    point) are compared; buffers such as counters are not.

    Raises:
        UsageError: two consecutive checkpoints are the same network.
    """
    for i in range(1, len(weights.path)):
        start, end = weights.path[i - 1], weights.path[i]
        moving = [n for n, t in end.tensors.items() if t.is_floating_point() and n in start.tensors]
        if not (moving and all(torch.equal(start.tensors[n], end.tensors[n]) for n in moving)):
            continue
        same = " (the same file)" if start.info.path == end.info.path else ""
        if len(weights.path) == 2:
            raise UsageError(
                f"init and final are the same network{same}: every tensor is equal, so the path has length zero",
                hint="pass the checkpoint from before training as init and the one after it as final",
            )
        a, b = weights.labels[i - 1], weights.labels[i]
        raise UsageError(
            f"checkpoints {i} and {i + 1} ({a} and {b}) are the same network{same}: segment {i} of the path has "
            "length zero",
            hint="give each checkpoint of the path once",
        )


@dataclass(frozen=True)
class _Plan:
    """What a scan evaluates, decided: every input resolved and every choice made, before compute."""

    weights: Weights
    data: Data
    objective: Objective
    device: torch.device
    grouping: Grouping | None
    curves: dict[str, Curve]
    points: list[Point]
    strategy: Decision[Strategy]
    layout: Decision[MemoryFormat]
    policy: Decision[BNPolicy]
    calibration: Any  # the Batches of recompute's re-estimation, or None
    engine: EngineOptions
    warnings: list[str]


def _plan(
    model: nn.Module | str | None,
    path: Sequence[StateLike],
    data: Any,
    options: ScanOptions,
    read: ReadOptions,
    hooks: Hooks,
    calibration: Any,
) -> _Plan:
    """Resolve and decide, in an order that fails early: the device and the loss, then the checkpoints and the
    model (no data is read before they are known to fit together), the groups and the strategy, then the data,
    the BN policy and its calibration data."""
    say = hooks.log or (lambda _msg: None)
    device = rank_device(hooks.world, resolve_device(options.device))
    objective = parse_objective(options.loss)
    weights = resolve_weights(model, path[0], path[1], read, onward=path[2:], random_seed=options.random_init)
    if objective is CROSS_ENTROPY and model_task(weights.model.model) == Task.CAUSAL_LM:
        objective = NEXT_TOKEN  # a language model's logits are per token: its loss is each next token's
        say("loss next_token: per-token cross-entropy of a causal language model (labels -100 left out)")
    for note in weights.matched.notes():
        say(note)
    warnings = [
        w for label, c in zip(weights.labels, weights.path, strict=True) if (w := non_finite_warning(label, c.tensors))
    ]
    for w in warnings:
        say(w)
    _check_path_length(weights)
    net = weights.model.model
    grouping: Grouping | None = None
    if options.groups:
        grouping = resolve_groups(options.groups, ModuleTree.from_model(net))
        if split := split_ties({g.name: g.tensors for g in grouping.groups}, weights.matched.tied):
            raise UsageError(f"--groups: {split[0]}", hint="put every name of a tied tensor in the same group")
    strategy = choose_strategy(options.strategy, device=device, grouped=grouping is not None, model=net)
    resolved = resolve_data(
        data,
        options.splits,
        samples=options.samples,
        seed=options.seed,
        class_targets=objective.classification and not objective.per_token,
        root=read.data_root,
        download=read.download,
        keys=read.data_keys,
        normalize=read.normalize,
        transform=Transform(read.resize, read.crop),
        workers=read.workers,
        calibration=calibration,
        progress=hooks.download,
        log=say,
    )
    for part in resolved.splits:
        if isinstance(part, Split) and not len(part):
            raise DataError(
                f"the {part.name} split of {resolved.name} has no examples: nothing to evaluate",
                hint="check the data passed with --data (and --samples)",
            )
        if w := non_finite_inputs_warning(part):
            say(w)
            warnings.append(w)
    policy = choose_bn_policy(options.bn, model=net, has_train=resolved.has_train, data_name=resolved.name)
    layout = choose_memory_format(
        options.memory_format,
        device=device,
        strategy=strategy.value,
        model=net,
        batch_stats=batch_statistics(net, policy.value),
    )
    calib = None
    if policy.value is BNPolicy.RECOMPUTE and has_running_stats(net):
        calib = resolved.calibration(options.bn_samples, options.seed)
    names = list(net.state_dict())
    params = [n for n, _ in net.named_parameters()]
    curves = {"all": Curve("all", "", "", frozenset(names), params)}
    if grouping is not None:
        curves.update(group_curves(grouping, names, params, options.hold, options.mode))
    points = [
        Point(c.name, a, None if c.name == "all" else c.moving, Hold(c.hold).coefficient if c.hold else 1.0)
        for c in curves.values()
        for a in options.grid.alphas
    ]
    engine = EngineOptions(
        policy=policy.value,
        strategy=strategy.value,
        memory_format=layout.value,
        device=device,
        batch_size=options.batch_size or default_batch_size(device),
        chunk_size=options.chunk_size,
        dtype=options.dtype,
        keep_examples=options.bootstrap > 0 or options.per_example,
    )
    return _Plan(
        weights,
        resolved,
        objective,
        device,
        grouping,
        curves,
        points,
        strategy,
        layout,
        policy,
        calib,
        engine,
        warnings,
    )


def _size(split: Any) -> int | None:
    """Examples in a split, when known before it is read (a Split's; a Stream's length is the loader's)."""
    return len(split) if isinstance(split, Split) else None


def _split_digest(split: Any) -> str | None:
    """A sha256 of a split's contents (inputs and targets, as the scan sees them), for one held in memory; for a
    stream, which cannot be read ahead, its own fingerprint where it has one (a mapped file's size and time), else
    None: a stream's resume trusts its name and length."""
    if not isinstance(split, Split):
        return getattr(split, "fingerprint", None)
    inputs = split.inputs if isinstance(split.inputs, Mapping) else {"": split.inputs}
    return tensors_digest({**inputs, " targets": split.targets})


def _file_digest(where: str | Path | None) -> str | None:
    if where is None or not Path(where).is_file():
        return None
    return hashlib.sha256(Path(where).read_bytes()).hexdigest()


def _source_digest(obj: Any) -> str | None:
    """A sha256 of the file that defines ``obj`` (a class, a function), or None when there is none."""
    try:
        return _file_digest(inspect.getsourcefile(obj))
    except TypeError:  # built in, or defined in the interpreter
        return None


def _model_digest(model: ResolvedModel) -> str | None:
    """A sha256 of the code that built the model: the factory's file or module, else the model class's file."""
    spec = model.spec
    if spec.kind == "file":
        return _file_digest(spec.target)
    if spec.kind == "module":
        import importlib.util

        try:
            found = importlib.util.find_spec(spec.target)
        except (ImportError, ValueError):
            found = None
        return _file_digest(found.origin if found is not None else None)
    return _source_digest(type(model.model))


def _fingerprint(plan: _Plan, options: ScanOptions, read: ReadOptions, hooks: Hooks) -> str:
    """Everything the numbers depend on, by content (the checkpoints' and the data's bytes, the source files of
    the model and the loss): a partial scan resumes only into the scan that saved it, even when a file was
    replaced by another of the same name and size."""
    calib = plan.calibration
    data = [
        (s.name, type(s).__name__, _size(s), getattr(s, "indices", None), _split_digest(s)) for s in plan.data.splits
    ]
    return hashlib.sha256(
        json.dumps(
            {
                "checkpoints": [*(content_digest(c) for c in plan.weights.path), read.key],
                "model": [plan.weights.model.spec.to_json(), _model_digest(plan.weights.model)],
                "loss": _source_digest(inspect.unwrap(plan.objective.per_sample)),
                "calibration": _split_digest(calib),
                "data": [plan.data.name, plan.data.normalization, data, read.resize, read.crop],
                "policy": [str(plan.policy.value), getattr(calib, "indices", None) if calib is not None else None],
                "points": [(p.curve, p.alpha, sorted(p.moving) if p.moving else None, p.hold) for p in plan.points],
                "refine": options.refine,
                "engine": [
                    str(plan.engine.strategy),
                    str(plan.engine.memory_format),
                    plan.engine.batch_size,
                    plan.engine.keep_examples,
                    options.chunk_size,
                    str(options.dtype),
                    options.loss,
                    str(plan.device),
                ],
                # each rank's partial scan holds its own share
                "world": [hooks.world.rank, hooks.world.size] if hooks.world.size > 1 else None,
            },
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()


def _scan(
    model: nn.Module | str | None,
    path: Sequence[StateLike],
    data: Any,
    options: ScanOptions,
    read: ReadOptions,
    hooks: Hooks,
    *,
    calibration: Any = None,
) -> ScanResult:
    t_start = time.perf_counter()
    plan = _plan(model, path, data, options, read, hooks, calibration)
    if hooks.log is not None:
        hooks.log(_summary_line(plan, options))
    fingerprint = (
        _fingerprint(plan, options, read, hooks) if hooks.resume is not None or hooks.on_batch is not None else ""
    )
    if hooks.resume is not None and hooks.resume.fingerprint != fingerprint:
        raise UsageError(
            "the partial scan saved in the output directory was made with other inputs or options",
            hint="resume with exactly the command that was interrupted, or start afresh with --force",
        )
    stages = _Stages(plan, hooks, fingerprint, options.refine)
    point_results: list[PointResult] = []
    report: EngineReport | None = None
    for segment in range(1, len(plan.weights.path)):
        segment_results, report = stages.run(segment, [replace(p, segment=segment) for p in plan.points])
        sizes = round_sizes(options.refine)
        for k, size in enumerate(sizes):
            points = _refinement(plan.points, segment_results, size)
            if not points:  # no curve has anything left to resolve: no more rounds
                stages.fewer(sum(sizes[k:]) * len(plan.curves))
                break
            stages.fewer(size * len(plan.curves) - len(points))  # a curve with nothing left takes fewer
            more, report = stages.run(segment, [replace(p, segment=segment) for p in points])
            segment_results += more
        point_results += segment_results
    assert report is not None  # a path has at least one segment
    for name, count in report.ignored.items():
        if plan.objective.per_token:  # padding and prompts a user masked: expected, so said, not warned about
            if hooks.log is not None:
                hooks.log(f"{name}: {count} tokens labelled {IGNORE_INDEX} (padding) are not scored")
            continue
        w = (
            f"warning: {count} example{'s' if count != 1 else ''} of the {name} split "
            f"{'are' if count != 1 else 'is'} labelled {IGNORE_INDEX} (cross-entropy's ignore_index) and left out "
            "of every mean"
        )
        plan.warnings.append(w)
        if hooks.log is not None:
            hooks.log(w)
    split_names = [s.name for s in plan.data.splits]
    results = results_frame(point_results, split_names, plan.curves)
    intervals = (
        bootstrap_intervals(point_results, replicates=options.bootstrap, seed=options.seed)
        if options.bootstrap
        else None
    )
    summary = summary_frame(results, plan.curves, [c.tensors for c in plan.weights.path], options.tol, intervals)
    counts = {r.split: r.n for r in point_results}
    report = stages.report(report)
    manifest = _manifest(plan, options, read, report, hooks, counts, time.perf_counter() - t_start)
    examples = per_example_arrays(point_results) if options.per_example else None
    return ScanResult(results, summary, manifest, examples)


def _refinement(templates: Sequence[Point], results: Sequence[PointResult], size: int) -> list[Point]:
    """One round of --refine for one segment: ``size`` new points per curve, each curve refined on its own
    (refine.next_alphas over its points so far on every split)."""
    points = []
    for template in {p.curve: p for p in templates}.values():
        mine = sorted((r for r in results if r.point.curve == template.curve), key=lambda r: r.point.alpha)
        alphas = sorted({r.point.alpha for r in mine})
        splits = list(dict.fromkeys(r.split for r in mine))
        losses = [[r.loss for r in mine if r.split == split] for split in splits]
        points += [replace(template, alpha=a, refined=True) for a in next_alphas(alphas, losses, size)]
    return points


class _Stages:
    """The engine calls of one scan (per segment of the path: the grid, then each round of --refine), each
    resumable: a call finished before an interruption is replayed from its saved Snapshot (no batch evaluated
    again), the one under way continues, and every snapshot handed to ``hooks.on_batch`` carries the finished
    calls with it. A refinement round's points follow from the results before it, which a replay reproduces
    exactly. Progress is told for the whole scan: what is done, this call's total, and an estimate of the calls
    to come from the (point, batch) evaluations per point so far."""

    def __init__(self, plan: _Plan, hooks: Hooks, fingerprint: str, refine: int = 0) -> None:
        self.plan, self.hooks, self.fingerprint = plan, hooks, fingerprint
        resume = hooks.resume
        self.saved: list[Snapshot] = [*resume.finished, resume.engine] if resume is not None else []
        self.finished: list[Snapshot] = []  # the whole snapshot of each call done (with on_batch)
        self.stage = 0  # calls made
        segments = len(plan.weights.path) - 1
        # points still to come, each counted as many times as the engine is told of (a point per curve)
        self.remaining = segments * (len(plan.points) + refine * len(plan.curves))
        self.done = 0  # (point, batch) evaluations of the finished calls
        self.seconds = [0.0, 0.0]  # calibration, evaluation
        self.calibration = [0, 0]  # batches, examples

    def fewer(self, points: int) -> None:
        """Points the progress estimate counted on that will not be evaluated."""
        self.remaining -= points

    def _progress(self, points: int) -> Progress | None:
        progress = self.hooks.progress
        self.remaining -= points
        if progress is None:
            return None
        before, later = self.done, self.remaining

        def tell(n: int, total: int | None) -> None:
            self.done += n
            progress(n, None if total is None else before + total + round(later * total / max(points, 1)))

        return tell

    def run(self, segment: int, points: Sequence[Point]) -> tuple[list[PointResult], EngineReport]:
        """Evaluate ``points`` on the segment from checkpoint ``segment − 1`` to ``segment``."""
        plan, on_batch = self.plan, self.hooks.on_batch
        stage, self.stage = self.stage, self.stage + 1
        resume = self.saved[stage] if stage < len(self.saved) else None
        latest: list[Snapshot] = [resume] if resume is not None else []

        def keep(snap: Snapshot) -> None:
            latest[:] = [snap]
            if on_batch is not None:
                on_batch(ScanSnapshot(self.fingerprint, snap, tuple(self.finished)))

        results, report = scan_points(
            plan.weights.model.model,
            plan.weights.path[segment - 1].tensors,
            plan.weights.path[segment].tensors,
            points,
            plan.data.splits,
            plan.engine,
            calibration=plan.calibration,
            progress=self._progress(len(points)),
            objective=plan.objective,
            resume=resume,
            on_batch=keep if on_batch is not None else None,
            world=self.hooks.world,
        )
        if latest:
            self.finished.append(latest[0])
        self.seconds[0] += report.seconds_calibration
        self.seconds[1] += report.seconds_evaluation
        self.calibration[0] += report.calibration_batches
        self.calibration[1] = max(self.calibration[1], report.calibration_examples)
        return results, report

    def report(self, last: EngineReport) -> EngineReport:
        """The last call's report with the times and calibration batches of every call."""
        return replace(
            last,
            seconds_calibration=self.seconds[0],
            seconds_evaluation=self.seconds[1],
            calibration_batches=self.calibration[0],
            calibration_examples=self.calibration[1],
        )


def _summary_line(plan: _Plan, options: ScanOptions) -> str:
    resolved = plan.weights.model
    sizes = ", ".join(f"{s.name}={n}" if (n := _size(s)) is not None else s.name for s in plan.data.splits)
    curves = f" × {len(plan.grouping) + 1} curves (all + {len(plan.grouping)} groups)" if plan.grouping else ""
    refine = f" (+ {options.refine} refined)" if options.refine else ""
    segments = len(plan.weights.path) - 1
    path = f" × {segments} segments ({' → '.join(plan.weights.labels)})" if segments > 1 else ""
    return (
        f"model {resolved.spec.text} ({resolved.origin}); data {plan.data.name} {sizes}; "
        f"BN policy {plan.policy.value} ({plan.policy.reason}); {len(options.grid.alphas)} α{refine}{curves}{path}; "
        f"{plan.strategy.value} on {plan.device}"
    )


def _manifest(
    plan: _Plan,
    options: ScanOptions,
    read: ReadOptions,
    report: EngineReport,
    hooks: Hooks,
    counts: Mapping[str, int],
    seconds: float,
) -> dict[str, Any]:
    """run.json: how every number was made."""
    resolved, weights, device = plan.weights.model, plan.weights, plan.device
    net = resolved.model
    calib = plan.calibration
    grouping = plan.grouping
    return {
        "interpscan": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "argv": list(hooks.command) if hooks.command is not None else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "device": str(device),
        "device_name": (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
        ),
        "strategy": report.strategy,
        "strategy_reason": plan.strategy.reason,
        "strategy_note": report.note,
        "memory_format": report.memory_format,
        "memory_format_reason": plan.layout.reason,
        "memory_format_note": report.memory_format_note,
        "checkpoints": {"init": weights.init.info.to_json(), "final": weights.final.info.to_json()},
        # every checkpoint of the path in order (segment i runs from entry i − 1 to entry i); init and final
        # above are its first two
        "path": {
            "segments": len(weights.path) - 1,
            "checkpoints": [
                {"label": label, **c.info.to_json()} for label, c in zip(weights.labels, weights.path, strict=True)
            ],
            "random_init": options.random_init,
        },
        "weights": {
            "key": read.key,
            "strict": read.strict,
            "unsafe_pickle": read.unsafe_pickle,
            "batched_obstacle": batched_obstacle(net),
            **weights.matched.to_json(),
        },
        "model": {
            **resolved.spec.to_json(),
            "origin": resolved.origin,
            "source": resolved.source,
            # True only when the model's code was imported because a checkpoint named it (--trust-recorded-code)
            "runs_recorded_code": resolved.source == "recorded" and resolved.spec.kind in CODE_KINDS,
            "parameters": sum(p.numel() for p in net.parameters()),
            "tensors": len(net.state_dict()),
        },
        "data": {
            "name": plan.data.name,
            "kind": plan.data.kind,
            "location": plan.data.location,
            "transform": {"resize": read.resize, "crop": read.crop} if read.resize or read.crop else None,
            "normalization": plan.data.normalization,
            "seed": options.seed,
            "splits": {
                s.name: {
                    "n": counts.get(s.name, 0),
                    "indices": list(indices) if (indices := getattr(s, "indices", None)) is not None else "all",
                }
                for s in plan.data.splits
            },
        },
        "bn": {
            "policy": str(plan.policy.value),
            "reason": plan.policy.reason,
            "batchnorm_modules": report.bn_modules,
            "calibration_samples": report.calibration_examples,
            "calibration_indices": [int(i) for i in (getattr(calib, "indices", None) or [])],
        },
        "grid": {"alphas": list(options.grid.alphas), "endpoints_added": list(options.grid.added)},
        # --refine: points added per curve and segment, in rounds of these sizes (results.csv's refined rows)
        "refine": {"points": options.refine, "rounds": round_sizes(options.refine), "max_rounds": ROUNDS}
        if options.refine
        else None,
        "groups": None
        if grouping is None
        else {
            "specs": list(options.groups),
            "hold": str(options.hold),
            "mode": str(options.mode),
            "groups": [{"name": g.name, "source": g.source, "tensors": list(g.tensors)} for g in grouping.groups],
            "rest": list(grouping.rest),
        },
        "tol": options.tol,
        "bootstrap": {"replicates": options.bootstrap, "seed": options.seed, "level": LEVEL, "unit": "example"}
        if options.bootstrap
        else None,
        "loss": {
            "name": plan.objective.name,
            "accuracy": plan.objective.classification,
            # next_token: results.csv's n counts tokens, and perplexity is exp(loss)
            **({"per_token": True} if plan.objective.per_token else {}),
        },
        "engine": {
            "batch_size": report.batch_size,
            "chunk_size": report.chunk_size,
            "chunk_shrinks": report.chunk_shrinks,
            "dtype": report.dtype,
            "unique_points": report.unique_points,
            "calibration_batches": report.calibration_batches,
            "processes": hooks.world.size,
        },
        "warnings": plan.warnings,
        "timings": {
            "calibration_s": round(report.seconds_calibration, 4),
            "evaluation_s": round(report.seconds_evaluation, 4),
            "total_s": round(seconds, 4),
        },
    }
