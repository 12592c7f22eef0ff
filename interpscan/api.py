"""The library's entry points: one scan as a call.

``scan(model, init, final, data, …)`` takes what a notebook holds — a module, two state dicts, tensors or a
DataLoader — or files and dataset names, and every option as a keyword; ``interpscan run`` builds the same
ScanConfig from its flags. ``run_scan`` checks the options first (options.py), takes the output directory (with
``out``: its lock, the partial scan an interruption leaves, ``resume``), resolves the inputs (inputs.py), makes
the decisions (decisions.py), runs the engine, and returns a ScanResult (results.py): the tidy tables, run.json as
a typed Manifest (manifest.py), ``figure()`` and ``save(directory)``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import platform
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import __version__
from . import manifest as mf
from .checkpoints import CheckpointInfo
from .data import Split, Transform
from .decisions import (
    Decision,
    batch_statistics,
    batched_obstacle,
    choose_bn_policy,
    choose_memory_format,
    choose_strategy,
    default_batch_size,
)
from .devices import host_memory_available, resolve_device
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
from .errors import DataError, Interrupted, UsageError, opt, render
from .files import describe_size
from .groups import Grouping, ModuleTree, resolve_groups
from .huggingface import Task, model_task
from .inputs import (
    Data,
    DataLike,
    ModelLike,
    StateLike,
    Weights,
    content_digest,
    recorded_data,
    resolve_data,
    resolve_weights,
    tensors_digest,
)
from .models import CODE_KINDS, ResolvedModel, split_ties
from .objectives import CROSS_ENTROPY, IGNORE_INDEX, NEXT_TOKEN, Objective, parse_objective
from .options import (
    DEFAULT_BOOTSTRAP,
    AlphaRange,
    Alphas,
    BNPolicy,
    BNPolicyName,
    Directions,
    DirectionsName,
    DType,
    DTypeName,
    Hold,
    HoldName,
    MemoryFormat,
    MemoryFormatName,
    Mode,
    ModeName,
    OutputOptions,
    PlaneOptions,
    ReadOptions,
    ScanOptions,
    Strategy,
    StrategyName,
)
from .options import describe as describe_options
from .options import params as option_params
from .options import split as split_options
from .refine import ROUNDS, next_alphas, round_sizes
from .results import ScanResult as ScanResult  # defined beside load_run, which returns one too
from .sanity import chance_warnings
from .tables import Curve, group_curves, results_frame, summary_frame
from .uncertainty import KEPT_BYTES, LEVEL, bootstrap_intervals, kept_bytes, per_example_arrays
from .values import DEFAULT_ALPHAS, Normalization, check_data, check_path

if TYPE_CHECKING:
    from .planes import Basis

Log = Callable[[str], None]


@dataclass(frozen=True)
class ScanConfig:
    """One scan, decided: the checkpoints of the path, the model and the data (as named on the command line, or
    as objects from the library), and the options. ``scan`` and ``interpscan run`` both build one and hand it to
    ``run_scan``; building it checks every option before any file is read."""

    checkpoints: tuple[StateLike, ...]  # two or more: init, final, and the checkpoints the path goes on through
    model: ModelLike = None
    data: DataLike | None = None  # a dataset name, file or folder, or data in memory; None: what the checkpoints record
    options: ScanOptions = field(default_factory=ScanOptions)
    read: ReadOptions = field(default_factory=ReadOptions)
    output: OutputOptions = field(default_factory=OutputOptions)
    calibration: Any = None  # data for recompute (library only), used whole

    def __post_init__(self) -> None:
        if len(self.checkpoints) < 2:
            raise UsageError(
                f"a path needs two or more checkpoints, got {len(self.checkpoints)}",
                hint=f"give {opt('init')} and {opt('final')} (e.g. init.pt final.pt), then any checkpoints after them",
            )
        names = ("init", "final", *["checkpoints"] * (len(self.checkpoints) - 2))
        checked = tuple(
            check_path(c, name) if isinstance(c, (str, os.PathLike)) else c
            for c, name in zip(self.checkpoints, names, strict=True)
        )
        object.__setattr__(self, "checkpoints", checked)
        if isinstance(self.data, os.PathLike):
            check_path(self.data, "data")  # a file or folder
        elif isinstance(self.data, str) or (
            isinstance(self.data, (tuple, list)) and self.data and all(isinstance(d, str) for d in self.data)
        ):
            object.__setattr__(self, "data", check_data(self.data))  # names, files, folders; NAME=SOURCE
        elif isinstance(self.data, Mapping):
            for value in self.data.values():
                if isinstance(value, (str, os.PathLike)):
                    check_path(value, "data")

    @classmethod
    def from_values(cls, checkpoints: Sequence[StateLike], values: Mapping[str, Any]) -> ScanConfig:
        """A config from option values by name (what the command line parsed); the rest keep their defaults.

        Raises:
            UsageError: a name that is no option, or a value its option refuses.
        """
        inputs, read, options, output = split_options(values)
        return cls(tuple(checkpoints), inputs.model, inputs.data, options, read, output)


@dataclass(frozen=True)
class Hooks:
    """What a caller is told while a scan runs, the command line for run.json, and the process's rank among the
    processes of one scan (torchrun; distributed.py)."""

    progress: Progress | None = None  # (evaluations just finished, the total so far estimated) as they finish
    log: Log | None = None  # one-line messages: what was chosen, downloaded, filled, warned about
    download: DownloadProgress | None = None
    command: Sequence[str] | None = None
    world: World = field(default_factory=World)
    # how messages (the log, run.json's warnings) name options: parameter -> flag (the CLI's), or None: as the
    # library names them
    flags: Mapping[str, str] | None = None

    def say(self, message: str) -> None:
        """``message`` to the log, its options named as this caller names them."""
        if self.log is not None:
            self.log(render(message, self.flags))


def scan(
    model: ModelLike,
    init: StateLike | Sequence[StateLike],
    final: StateLike | None = None,
    data: DataLike | None = None,
    *,
    splits: str | Sequence[str] | None = None,
    samples: int | str | None = None,
    seed: int = 0,
    loss: str = "cross_entropy",
    alphas: Alphas = DEFAULT_ALPHAS,
    alpha_range: AlphaRange | None = None,
    refine: int = 0,
    random_init: int | None = None,
    groups: str | Sequence[str] = (),
    hold: Hold | HoldName = Hold.FINAL,
    mode: Mode | ModeName = Mode.ONLY,
    bn: BNPolicy | BNPolicyName = BNPolicy.AUTO,
    bn_samples: int = 2048,
    tol: float = 0.0,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    strategy: Strategy | StrategyName = Strategy.AUTO,
    memory_format: MemoryFormat | MemoryFormatName = MemoryFormat.AUTO,
    device: str = "auto",
    batch_size: int | None = None,
    chunk_size: int | None = None,
    dtype: DType | DTypeName = DType.FLOAT32,
    per_example: bool = False,
    model_args: Mapping[str, Any] | Sequence[str] | None = None,
    key: str | None = None,
    unsafe_pickle: bool = False,
    strict: bool = True,
    trust_recorded_code: bool = False,
    data_root: str | os.PathLike[str] | None = None,
    download: bool = True,
    data_keys: str | Sequence[str] | None = None,
    normalize: str = "auto",
    workers: int | None = None,
    resize: int | None = None,
    crop: int | None = None,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    resume: bool = False,
    html: bool = True,
    calibration: Any = None,
    progress: Progress | bool | None = True,
    log: Log | None = None,
) -> ScanResult:
    """Evaluate ``model`` along θ(α) = (1−α)·θ_init + α·θ_final: the whole network and, with ``groups``, one
    curve per group (that group moving, the rest held at ``hold``). Given a list of checkpoints ``[c0, c1, …,
    cm]`` as ``init`` (and no ``final``), along the piecewise-linear path through them, segment by segment.

    With ``out``, the scan also writes its files there as ``interpscan run`` does, saving its finished batches as
    it goes: an interrupted scan (Ctrl-C; ``InterpscanError`` Interrupted) continues from them when called again
    with ``resume=True``.

    Args:
        model: an ``nn.Module`` (never modified), a model spec as ``interpscan run --model`` takes it
            (``"resnet18"``, ``"net.py:make"``), or None to use ``final`` when it is a module, else what the
            checkpoint files bring, record or match.
        init, final: state dicts, modules, checkpoint paths, or loaded Checkpoints; or ``init`` a list or tuple
            of two or more of them and ``final`` None.
        data: ``(inputs, targets)`` tensors (inputs may be a dict of tensors), a ``Dataset``, a ``DataLoader`` or
            any iterable of ``(inputs, targets)`` batches (or dicts with ``labels``), a mapping of split name to
            any of those, or a dataset name, file or folder; None: the dataset the checkpoints record. Data in
            several places: a mapping of split name to sources (``{"id": "test.pt", "ood": "shifted.pt"}``), each
            source giving the split of that name, else its only or its test split; or texts as the command line's
            repeated ``--data`` takes them (``["test.pt", "ood=shifted.pt"]``).
        calibration: data for ``bn="recompute"`` (any form ``data`` takes, one split), used whole; default: a
            seeded subset of ``bn_samples`` examples of the data's train split.
        progress: True (default): a bar where someone watches, i.e. in a notebook (one line, updated in place)
            or a terminal (on stderr), nothing elsewhere; False or None: none; or a function, called ``(n,
            total)`` each time ``n`` more (point, batch) evaluations finish (``n`` is the increment, not the
            count so far; ``total`` is the whole scan's, estimated, None while unknown).
        log: told one-line messages (what was chosen and why, warnings).
    {options}

    Returns:
        A ScanResult (``.results``, ``.summary``, ``.manifest``, ``.figure()``, ``.save(dir)``; ``.files`` with
        ``out``).

    Raises:
        InterpscanError: bad options (before anything is read), unreadable or mismatched inputs, a model that
            fails on the data, an output directory that cannot be used; Interrupted when stopped, with ``out``.
    """
    given = locals()
    values = {name: given[name] for name in _LIBRARY_OPTIONS}
    config = ScanConfig(tuple(_checkpoint_list(init, final)), model, data, calibration=calibration, **_options(values))
    return _watched(progress, log, lambda hooks: run_scan(config, hooks))


def _watched(progress: Progress | bool | None, log: Log | None, run: Callable[[Hooks], ScanResult]) -> ScanResult:
    """``run`` with the hooks the library's entry points take: ``progress`` a function to call, True for a bar
    where someone watches (progress.watch), or nothing."""
    if callable(progress) or not progress:
        return run(Hooks(progress=progress or None, log=log))
    from .progress import place, watch

    with watch(place(), done=log) as shown:
        return run(Hooks(progress=shown, log=log))


# scan()'s keyword arguments that are options (Inputs' model and data are its positional arguments)
_LIBRARY_OPTIONS = [p.name for cls in (ReadOptions, ScanOptions, OutputOptions) for p in option_params(cls)]


def _options(values: Mapping[str, Any]) -> dict[str, Any]:
    """Option values by name -> ScanConfig's ``options``, ``read`` and ``output``, each checked."""
    _, read, options, output = split_options(values)
    return {"options": options, "read": read, "output": output}


if scan.__doc__:  # the options' own help texts, in the library's words (python -OO strips docstrings)
    scan.__doc__ = re.sub(
        r"^ *\{options\}$",
        lambda _: describe_options(ReadOptions, ScanOptions, OutputOptions),
        scan.__doc__,
        flags=re.M,
    )


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
    hooks: Hooks | None = None,
    *,
    resume: ScanSnapshot | None = None,
    on_batch: Callable[[ScanSnapshot], None] | None = None,
) -> ScanResult:
    """Run the scan ``config`` describes: what ``scan`` and ``interpscan run`` both do.

    With ``config.output.out`` the run directory is checked, created and locked before any input is read; every
    finished batch is kept there (a few seconds apart) so that an interruption (KeyboardInterrupt, or SIGTERM
    where the caller turns it into one) loses little, and ``output.resume`` continues from it (the same scan
    only: same inputs, points and options, checked by fingerprint). Under torchrun (``hooks.world``, with the
    process group joined: distributed.joined) each rank evaluates its share, and every rank returns the whole
    result; rank 0 alone writes.

    Without ``out``, a caller may keep the snapshots itself: ``on_batch`` receives a resumable ScanSnapshot after
    every finished batch, and ``resume`` continues from one.

    Raises:
        InterpscanError: any problem with the inputs or the output directory, before compute starts where it can
            be known; Interrupted when stopped (what finished is saved, with ``out``).
    """
    hooks = hooks or Hooks()
    out = config.output.out
    if out is None:
        return _scan(config, hooks, resume=resume, on_batch=on_batch)
    if resume is not None or on_batch is not None:
        raise UsageError(
            f"with {opt('out')}, the scan keeps its snapshots in the output directory itself",
            hint=f"pass {opt('resume', True)} to continue from them, or leave {opt('out')} out",
        )
    from .rundir import RunDirectory

    world = hooks.world
    with RunDirectory(out, force=config.output.force, resume=config.output.resume, world=world) as run_dir:
        try:
            result = _scan(config, hooks, resume=run_dir.partial, on_batch=run_dir.keep)
        except KeyboardInterrupt:
            stopped = "interrupted" if world.size == 1 else "stopped (interrupted, or torchrun ended the processes)"
            if run_dir.flush():
                where = run_dir.saver.path if world.size == 1 else run_dir.path
                raise Interrupted(
                    f"{stopped}; the finished batches are saved in {where}",
                    hint=f"continue with the same command plus {opt('resume', True)}",
                ) from None
            raise Interrupted(f"{stopped} before any batch finished; nothing to save") from None
        files = run_dir.write(result, html=config.output.html)
    return replace(result, files=files)


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


def _plan(config: ScanConfig, hooks: Hooks, *, plane: bool = False) -> _Plan:
    """Resolve and decide, in an order that fails early: the device and the loss, then the checkpoints and the
    model (no data is read before they are known to fit together), the groups and the strategy, then the data,
    the BN policy and its calibration data. A ``plane``'s checkpoints are its states (a single one given twice),
    not a path: their distances are the basis's business (planes.py)."""
    say = hooks.say
    options, read, path = config.options, config.read, config.checkpoints
    device = rank_device(hooks.world, resolve_device(options.device))
    objective = parse_objective(options.loss)
    weights = resolve_weights(config.model, path[0], path[1], read, onward=path[2:], random_seed=options.random_init)
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
    if not plane:
        _check_path_length(weights)
    net = weights.model.model
    grouping: Grouping | None = None
    if options.groups:
        grouping = resolve_groups(options.groups, ModuleTree.from_model(net))
        if split := split_ties({g.name: g.tensors for g in grouping.groups}, weights.matched.tied):
            raise UsageError(f"{opt('groups')}: {split[0]}", hint="put every name of a tied tensor in the same group")
    strategy = choose_strategy(options.strategy, device=device, grouped=grouping is not None, model=net)
    resolved = resolve_data(
        config.data if config.data is not None else recorded_data(weights),
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
        calibration=config.calibration,
        progress=hooks.download,
        log=say,
    )
    for part in resolved.splits:
        if isinstance(part, Split) and not len(part):
            raise DataError(
                f"the {part.name} split of {resolved.name} has no examples: nothing to evaluate",
                hint=f"check the data passed with {opt('data')} (and {opt('samples')})",
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
    if options.bootstrap > 0 or options.per_example:
        _check_kept_memory(resolved.splits, len(points) + options.refine * len(curves), weights, options, objective)
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


def _scored(split: Any, objective: Objective) -> int | None:
    """Losses a split yields per point (examples, or next tokens for a causal language model), when known before
    it is read."""
    if isinstance(split, Split) and objective.per_token:
        return int(split.targets[..., 1:].numel())
    try:
        return len(split)
    except Exception:  # a stream whose length is not known (a user's dataset may raise anything): no estimate
        return None


def _check_kept_memory(
    splits: Sequence[Any], points: int, weights: Weights, options: ScanOptions, objective: Objective
) -> None:
    """Keeping every example's loss (the bootstrap, per_example) must fit in host memory: estimated before
    anything is evaluated (uncertainty.kept_bytes), not found out by the allocator at the end of the scan.

    Raises:
        UsageError: the estimate exceeds what the host has available (devices.host_memory_available).
    """
    counts = [n for n in (_scored(s, objective) for s in splits) if n is not None]
    total_points = points * (len(weights.path) - 1)
    need = kept_bytes(total_points, counts, replicates=options.bootstrap, arrays=options.per_example)
    have = host_memory_available()
    if have is None or need <= have:
        return
    uses = [(opt("bootstrap", options.bootstrap), opt("bootstrap", 0))] if options.bootstrap else []
    uses += [(opt("per_example", True), f"no {opt('per_example')}")] if options.per_example else []
    raise UsageError(
        f"keeping every example's loss for {' and '.join(u for u, _ in uses)} needs about {describe_size(need)} "
        f"({total_points:,} points × {sum(counts):,} examples × {KEPT_BYTES} bytes, and the copies made of them), "
        f"and {describe_size(have)} of memory is available",
        hint=f"turn it off ({', '.join(off for _, off in uses)}), or scan fewer points ({opt('alphas')}, "
        f"{opt('groups')}) or examples ({opt('samples')})",
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
                "points": [
                    (p.curve, p.alpha, sorted(p.moving) if p.moving else None, p.hold, *([p.mix] if p.mix else []))
                    for p in plan.points
                ],
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
    config: ScanConfig,
    hooks: Hooks,
    *,
    resume: ScanSnapshot | None = None,
    on_batch: Callable[[ScanSnapshot], None] | None = None,
) -> ScanResult:
    t_start = time.perf_counter()
    options, read = config.options, config.read
    plan = _plan(config, hooks)
    hooks.say(_summary_line(plan, options))
    fingerprint = _fingerprint(plan, options, read, hooks) if resume is not None or on_batch is not None else ""
    if resume is not None and resume.fingerprint != fingerprint:
        raise UsageError(
            "the partial scan saved in the output directory was made with other inputs or options",
            hint=f"resume with exactly the command that was interrupted, or start afresh with {opt('force', True)}",
        )
    stages = _Stages(plan, hooks, fingerprint, options.refine, resume, on_batch)
    point_results: list[PointResult] = []
    report: EngineReport | None = None
    refined = 0  # points --refine added, over every curve and segment
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
            refined += len(points)
        point_results += segment_results
    assert report is not None  # a path has at least one segment
    short = _refine_shortfall(options.refine, refined, len(plan.curves), len(plan.weights.path) - 1)
    if short is not None:
        plan.warnings.append(short)
        hooks.say(short)
    for name, count in report.ignored.items():
        if plan.objective.per_token:  # padding and prompts a user masked: expected, so said, not warned about
            hooks.say(f"{name}: {count} tokens labelled {IGNORE_INDEX} (padding) are not scored")
            continue
        w = (
            f"warning: {count} example{'s' if count != 1 else ''} of the {name} split "
            f"{'are' if count != 1 else 'is'} labelled {IGNORE_INDEX} (cross-entropy's ignore_index) and left out "
            "of every mean"
        )
        plan.warnings.append(w)
        hooks.say(w)
    split_names = [s.name for s in plan.data.splits]
    results = results_frame(point_results, split_names, plan.curves)
    for w in chance_warnings(results, _base_rates(plan)):
        plan.warnings.append(w)
        hooks.say(w)
    intervals = (
        bootstrap_intervals(point_results, replicates=options.bootstrap, seed=options.seed)
        if options.bootstrap
        else None
    )
    summary = summary_frame(results, plan.curves, [c.tensors for c in plan.weights.path], options.tol, intervals)
    counts = {r.split: r.n for r in point_results}
    report = stages.report(report)
    manifest = _manifest(plan, options, read, report, hooks, counts, time.perf_counter() - t_start, refined)
    examples = per_example_arrays(point_results) if options.per_example else None
    return ScanResult(results, summary, manifest, examples)


def _base_rates(plan: _Plan) -> dict[str, float | None]:
    """Per split in memory with class targets, the share of its most common class (the accuracy of always
    guessing it); None where not known (a streamed split, a loss without accuracy, tokens)."""
    rates: dict[str, float | None] = {}
    for split in plan.data.splits:
        rates[split.name] = None
        if isinstance(split, Split) and plan.objective.classification and not plan.objective.per_token:
            labels = split.targets[split.targets >= 0]  # -100: left out of every mean
            if labels.numel() and not labels.is_floating_point():
                rates[split.name] = float(torch.bincount(labels.long().flatten()).max()) / labels.numel()
    return rates


def _refine_shortfall(points: int, added: int, curves: int, segments: int) -> str | None:
    """A warning when --refine added fewer points than asked (``points`` per curve and segment): a curve whose
    loss no longer changes between neighbours (flat, or not finite) has nothing left to resolve. None when all
    were added."""
    asked = points * curves * segments
    if added >= asked:
        return None
    per = f" ({points} per curve and segment)" if curves * segments > 1 else ""
    return (
        f"warning: {opt('refine', points)} added {added} of {asked} points{per}: the loss stopped changing "
        "between neighbouring points (flat or not finite) where more were to go, so there was nothing left to "
        "resolve; run.json's refine.added records it"
    )


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

    def __init__(
        self,
        plan: _Plan,
        hooks: Hooks,
        fingerprint: str,
        refine: int,
        resume: ScanSnapshot | None,
        on_batch: Callable[[ScanSnapshot], None] | None,
    ) -> None:
        self.plan, self.hooks, self.fingerprint, self.on_batch = plan, hooks, fingerprint, on_batch
        self.saved: list[Snapshot] = [*resume.finished, resume.engine] if resume is not None else []
        self.finished: list[Snapshot] = []  # the whole snapshot of each call done (with on_batch)
        self.stage = 0  # calls made
        segments = len(plan.weights.path) - 1
        # points still to come, each counted as many times as the engine is told of (a point per curve)
        self.remaining = segments * (len(plan.points) + refine * len(plan.curves))
        self.done = 0  # (point, batch) evaluations of the finished calls
        self.seconds = [0.0, 0.0]  # calibration, evaluation
        self.calibration = [0, 0]  # batches, examples
        # a plane's states (start, end, then the basis its mix points combine), instead of the path's segments
        self.states: Sequence[Mapping[str, torch.Tensor]] | None = None

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
        plan, on_batch = self.plan, self.on_batch
        stage, self.stage = self.stage, self.stage + 1
        resume = self.saved[stage] if stage < len(self.saved) else None
        latest: list[Snapshot] = [resume] if resume is not None else []

        def keep(snap: Snapshot) -> None:
            latest[:] = [snap]
            if on_batch is not None:
                on_batch(ScanSnapshot(self.fingerprint, snap, tuple(self.finished)))

        states = self.states or [c.tensors for c in plan.weights.path[segment - 1 : segment + 1]]
        results, report = scan_points(
            plan.weights.model.model,
            states[0],
            states[1],
            points,
            plan.data.splits,
            plan.engine,
            calibration=plan.calibration,
            progress=self._progress(len(points)),
            objective=plan.objective,
            resume=resume,
            on_batch=keep if on_batch is not None else None,
            world=self.hooks.world,
            basis=states[2:],
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
    refined: int = 0,
) -> mf.Manifest:
    """run.json: how every number was made (``refined``: the points --refine added, over curves and segments)."""
    resolved, weights, device = plan.weights.model, plan.weights, plan.device
    net = resolved.model
    grouping = plan.grouping
    return mf.Manifest(
        interpscan=__version__,
        torch=torch.__version__,
        python=platform.python_version(),
        platform=platform.platform(),
        argv=tuple(hooks.command) if hooks.command is not None else None,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        device=str(device),
        device_name=(
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
        ),
        strategy=report.strategy,
        strategy_reason=plan.strategy.reason,
        strategy_note=report.note,
        memory_format=report.memory_format,
        memory_format_reason=plan.layout.reason,
        memory_format_note=report.memory_format_note,
        checkpoints=mf.Checkpoints(init=_checkpoint(weights.init.info), final=_checkpoint(weights.final.info)),
        path=mf.CheckpointPath(
            segments=len(weights.path) - 1,
            checkpoints=tuple(
                _checkpoint(c.info, label) for label, c in zip(weights.labels, weights.path, strict=True)
            ),
            random_init=options.random_init,
        ),
        weights=mf.Weights.from_json(
            {
                "key": read.key,
                "strict": read.strict,
                "unsafe_pickle": read.unsafe_pickle,
                "batched_obstacle": batched_obstacle(net),
                **weights.matched.to_json(),
            }
        ),
        model=mf.Model(
            spec=resolved.spec.text,
            kind=resolved.spec.kind,
            args=dict(resolved.spec.args),
            origin=render(resolved.origin, hooks.flags),
            source=resolved.source,
            # True only when the model's code was imported because a checkpoint named it (--trust-recorded-code)
            runs_recorded_code=resolved.source == "recorded" and resolved.spec.kind in CODE_KINDS,
            parameters=sum(p.numel() for p in net.parameters()),
            tensors=len(net.state_dict()),
        ),
        data=_data_record(plan, read, options, counts),
        bn=mf.BN(
            policy=str(plan.policy.value),
            reason=plan.policy.reason,
            batchnorm_modules=report.bn_modules,
            calibration_samples=report.calibration_examples,
            calibration_indices=tuple(int(i) for i in (getattr(plan.calibration, "indices", None) or [])),
        ),
        grid=mf.Grid(alphas=tuple(options.grid.alphas), endpoints_added=tuple(options.grid.added)),
        # --refine: points added per curve and segment, in rounds of these sizes (results.csv's refined rows)
        refine=mf.Refine(
            points=options.refine,
            rounds=tuple(round_sizes(options.refine)),
            max_rounds=ROUNDS,
            added=refined if refined < options.refine * len(plan.curves) * (len(weights.path) - 1) else None,
        )
        if options.refine
        else None,
        groups=None if grouping is None else _groups_record(grouping, options),
        tol=options.tol,
        bootstrap=mf.Bootstrap(replicates=options.bootstrap, seed=options.seed, level=LEVEL, unit="example")
        if options.bootstrap
        else None,
        # next_token: results.csv's n counts tokens, and perplexity is exp(loss)
        loss=mf.Loss(
            name=plan.objective.name, accuracy=plan.objective.classification, per_token=plan.objective.per_token
        ),
        engine=mf.Engine(
            batch_size=report.batch_size,
            chunk_size=report.chunk_size,
            chunk_shrinks=report.chunk_shrinks,
            dtype=report.dtype,
            unique_points=report.unique_points,
            calibration_batches=report.calibration_batches,
            processes=hooks.world.size,
        ),
        warnings=tuple(render(w, hooks.flags) for w in plan.warnings),
        timings=mf.Timings(
            calibration_s=round(report.seconds_calibration, 4),
            evaluation_s=round(report.seconds_evaluation, 4),
            total_s=round(seconds, 4),
        ),
    )


def _checkpoint(info: CheckpointInfo, label: str | None = None) -> mf.Checkpoint:
    """A checkpoint's provenance as run.json records it (checkpoints.CheckpointInfo.to_json)."""
    return mf.Checkpoint.from_json({**({"label": label} if label is not None else {}), **info.to_json()})


def _data_record(plan: _Plan, read: ReadOptions, options: ScanOptions, counts: Mapping[str, int]) -> mf.Data:
    """The data as run.json records it: what it is, how its inputs were prepared, and each split's examples."""
    data = plan.data
    splits = {}
    for s in data.splits:
        indices = getattr(s, "indices", None)
        splits[s.name] = mf.DataSplit(
            n=counts.get(s.name, 0), indices=tuple(int(i) for i in indices) if indices is not None else "all"
        )
    return mf.Data(
        name=data.name,
        kind=data.kind,
        location=data.location,
        transform=mf.Transform(resize=read.resize, crop=read.crop) if read.resize or read.crop else None,
        normalization=_normalization(data.normalization),
        seed=options.seed,
        splits=splits,
        sources=tuple(
            mf.DataSource(
                given=r.given,
                name=r.name,
                kind=r.kind,
                location=r.location,
                normalization=_normalization(r.normalization),
                splits=dict(r.splits),
            )
            for r in data.sources
        ),
    )


def _normalization(value: Any) -> Normalization | None:
    """(mean, std) as tuples: each one number or one per channel."""
    if value is None:
        return None
    mean, std = (tuple(float(x) for x in v) if isinstance(v, (tuple, list)) else float(v) for v in value)
    return mean, std


def _groups_record(grouping: Grouping, options: ScanOptions) -> mf.Groups:
    return mf.Groups(
        specs=tuple(options.groups),
        hold=str(options.hold),
        mode=str(options.mode),
        groups=tuple(mf.Group(name=g.name, source=g.source, tensors=tuple(g.tensors)) for g in grouping.groups),
        rest=tuple(grouping.rest),
    )


# --------------------------------------------------------------------------------------- planes and trajectories

# the scan options that apply to a plane (no α grid, groups, refinement, bootstrap or per-example losses)
PLANE_SCAN_OPTIONS = (
    *("splits", "samples", "seed", "loss", "bn", "bn_samples"),
    *("strategy", "memory_format", "device", "batch_size", "chunk_size", "dtype"),
)
TRAJECTORY_PLANE_OPTIONS = ("grid", "margin")  # of PlaneOptions: the directions' options are a plane's alone


@dataclass(frozen=True)
class PlaneConfig:
    """One plane (``kind`` plane: through three checkpoints, or around one along random directions) or trajectory
    run, decided: the scan's config (its checkpoints the plane's, one given twice) and the plane's options.
    ``interpscan plane`` / ``trajectory`` and ``interpscan.plane`` / ``trajectory`` build one for ``run_plane``."""

    kind: str  # plane or trajectory
    scan: ScanConfig
    plane: PlaneOptions
    count: int  # the checkpoints given

    @classmethod
    def from_values(cls, kind: str, checkpoints: Sequence[StateLike], values: Mapping[str, Any]) -> PlaneConfig:
        """A config from option values by name, as ``ScanConfig.from_values`` (the plane's options among them).

        Raises:
            UsageError: a name that is no option, a value its option refuses, or checkpoints the kind cannot take.
        """
        from .planes import TRAJECTORY, check_kind

        names = {p.name for p in option_params(PlaneOptions)}
        plane = PlaneOptions(**{k: v for k, v in values.items() if k in names})
        check_kind(TRAJECTORY if kind == "trajectory" else kind, len(checkpoints), plane.directions)
        if kind == "plane" and len(checkpoints) == 1 and plane.directions is None:
            plane = replace(plane, directions=Directions.FILTER)
        _check_plane_options(plane, around=plane.directions is not None)
        given = list(checkpoints) * 2 if len(checkpoints) == 1 else list(checkpoints)
        config = ScanConfig.from_values(given, {k: v for k, v in values.items() if k not in names})
        config = replace(config, options=replace(config.options, bootstrap=0))
        return cls(kind, config, plane, len(checkpoints))


def _check_plane_options(plane: PlaneOptions, *, around: bool) -> None:
    """Options of random directions only with them, and the checkpoints' margin only without them.

    Raises:
        UsageError: an option given a value where it does not apply.
    """
    default = PlaneOptions()
    mine = ("keep_1d", "xy_range", "dims") if not around else ("margin",)
    for name in mine:
        value = getattr(plane, name)
        if value != getattr(default, name):
            where = "random directions around one checkpoint" if not around else "a plane through checkpoints"
            raise UsageError(
                f"{opt(name, value)} applies to {where}, not to this one",
                hint=f"drop {opt(name)}",
            )


def _plane_values(given: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    return {name: given[name] for name in names}


_PLANE_READ = [p.name for p in option_params(ReadOptions)]
_PLANE_OUTPUT = [p.name for p in option_params(OutputOptions)]


def plane(
    model: ModelLike,
    checkpoints: Sequence[StateLike],
    data: DataLike | None = None,
    *,
    grid: int = 21,
    margin: float = 0.2,
    directions: Directions | DirectionsName | None = None,
    keep_1d: bool = False,
    xy_range: AlphaRange = (-1.0, 1.0),
    dims: int = 2,
    splits: str | Sequence[str] | None = None,
    samples: int | str | None = None,
    seed: int = 0,
    loss: str = "cross_entropy",
    bn: BNPolicy | BNPolicyName = BNPolicy.AUTO,
    bn_samples: int = 2048,
    strategy: Strategy | StrategyName = Strategy.AUTO,
    memory_format: MemoryFormat | MemoryFormatName = MemoryFormat.AUTO,
    device: str = "auto",
    batch_size: int | None = None,
    chunk_size: int | None = None,
    dtype: DType | DTypeName = DType.FLOAT32,
    model_args: Mapping[str, Any] | Sequence[str] | None = None,
    key: str | None = None,
    unsafe_pickle: bool = False,
    strict: bool = True,
    trust_recorded_code: bool = False,
    data_root: str | os.PathLike[str] | None = None,
    download: bool = True,
    data_keys: str | Sequence[str] | None = None,
    normalize: str = "auto",
    workers: int | None = None,
    resize: int | None = None,
    crop: int | None = None,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    resume: bool = False,
    html: bool = True,
    calibration: Any = None,
    progress: Progress | bool | None = True,
    log: Log | None = None,
) -> ScanResult:
    """Evaluate ``model`` over a plane of networks: through three checkpoints ``[c0, c1, c2]`` (Garipov et al.:
    x, y in parameter distance along u toward c1 and v toward c2 orthogonal to it), or around one checkpoint
    ``[c]`` along random Gaussian directions (Li et al.: θ + x·d1 + y·d2, filter-normalised by default). The
    result's ``results`` has a row per point and split (x, y, loss, accuracy, anchor, …), ``summary`` each
    checkpoint's loss and the grid's minimum, ``manifest.plane`` the basis, ``directions`` the tensors u and v
    (θ(x, y) = origin + x·u + y·v). Arguments as ``scan``'s; the plane's own:

        grid: points per side (grid × grid). margin: with three checkpoints, their box widened by this share.
        directions: with one checkpoint, filter, layer or none (default filter). keep_1d: give tensors of one
        dimension directions too (default: they stay). xy_range: the directions' coordinates, LO,HI. dims: 1 for
        a random line. seed: of the directions (and of samples and the BN calibration subset).

    Raises:
        InterpscanError: as ``scan``; three checkpoints on one line; directions with three checkpoints.
    """
    given = locals()
    names = [*PLANE_SCAN_OPTIONS, *_PLANE_READ, *_PLANE_OUTPUT, *(p.name for p in option_params(PlaneOptions))]
    values = _plane_values(given, names)
    config = PlaneConfig.from_values("plane", list(checkpoints), values)
    config = replace(config, scan=replace(config.scan, model=model, data=data, calibration=calibration))
    return _watched(progress, log, lambda hooks: run_plane(config, hooks))


def trajectory(
    model: ModelLike,
    checkpoints: Sequence[StateLike],
    data: DataLike | None = None,
    *,
    grid: int = 21,
    margin: float = 0.2,
    splits: str | Sequence[str] | None = None,
    samples: int | str | None = None,
    seed: int = 0,
    loss: str = "cross_entropy",
    bn: BNPolicy | BNPolicyName = BNPolicy.AUTO,
    bn_samples: int = 2048,
    strategy: Strategy | StrategyName = Strategy.AUTO,
    memory_format: MemoryFormat | MemoryFormatName = MemoryFormat.AUTO,
    device: str = "auto",
    batch_size: int | None = None,
    chunk_size: int | None = None,
    dtype: DType | DTypeName = DType.FLOAT32,
    model_args: Mapping[str, Any] | Sequence[str] | None = None,
    key: str | None = None,
    unsafe_pickle: bool = False,
    strict: bool = True,
    trust_recorded_code: bool = False,
    data_root: str | os.PathLike[str] | None = None,
    download: bool = True,
    data_keys: str | Sequence[str] | None = None,
    normalize: str = "auto",
    workers: int | None = None,
    resize: int | None = None,
    crop: int | None = None,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    resume: bool = False,
    html: bool = True,
    calibration: Any = None,
    progress: Progress | bool | None = True,
    log: Log | None = None,
) -> ScanResult:
    """Evaluate ``model`` over the plane of a training trajectory ``[c0, …, cm]`` (four or more checkpoints, Li et
    al.): around cm along the top two principal directions of the centred differences ci − cm, every checkpoint
    projected onto them (``manifest.plane.anchors``, with the explained variance ratio of each direction).
    Arguments as ``plane``'s.

    Raises:
        InterpscanError: as ``scan``; fewer than four checkpoints, or differences spanning fewer than two
            directions.
    """
    given = locals()
    values = _plane_values(given, [*PLANE_SCAN_OPTIONS, *_PLANE_READ, *_PLANE_OUTPUT, *TRAJECTORY_PLANE_OPTIONS])
    config = PlaneConfig.from_values("trajectory", list(checkpoints), values)
    config = replace(config, scan=replace(config.scan, model=model, data=data, calibration=calibration))
    return _watched(progress, log, lambda hooks: run_plane(config, hooks))


def run_plane(config: PlaneConfig, hooks: Hooks | None = None) -> ScanResult:
    """Run the plane or trajectory ``config`` describes: what ``plane``, ``trajectory`` and the commands do,
    with the output directory (its lock, the partial scan an interruption leaves, resume) as ``run_scan``'s."""
    hooks = hooks or Hooks()
    output = config.scan.output
    if output.out is None:
        return _plane_scan(config, hooks)
    from .rundir import RunDirectory

    world = hooks.world
    with RunDirectory(output.out, force=output.force, resume=output.resume, world=world) as run_dir:
        try:
            result = _plane_scan(config, hooks, resume=run_dir.partial, on_batch=run_dir.keep)
        except KeyboardInterrupt:
            if run_dir.flush():
                raise Interrupted(
                    f"interrupted; the finished batches are saved in {run_dir.path}",
                    hint=f"continue with the same command plus {opt('resume', True)}",
                ) from None
            raise Interrupted("interrupted before any batch finished; nothing to save") from None
        files = run_dir.write(result, html=output.html)
    return replace(result, files=files)


def _plane_basis(config: PlaneConfig, plan: _Plan) -> Basis:
    from .planes import checkpoint_basis, direction_basis, trajectory_basis

    k = config.count
    states = [c.tensors for c in plan.weights.path[:k]]
    labels = tuple(f"c{i}" for i in range(k))
    parameters = [n for n, _ in plan.weights.model.model.named_parameters()]
    if config.kind == "trajectory":
        return trajectory_basis(states, parameters, labels)
    if k == 3:
        return checkpoint_basis(states, parameters, labels)
    po = config.plane
    how = po.directions or Directions.FILTER
    seed = config.scan.options.seed
    return direction_basis(states[0], parameters, labels[0], seed=seed, how=how, keep_1d=po.keep_1d, dims=po.dims)


def _plane_scan(
    config: PlaneConfig,
    hooks: Hooks,
    *,
    resume: ScanSnapshot | None = None,
    on_batch: Callable[[ScanSnapshot], None] | None = None,
) -> ScanResult:
    from . import planes
    from .engine import batchnorm_modules

    t_start = time.perf_counter()
    options, read, po = config.scan.options, config.scan.read, config.plane
    plan = _plan(config.scan, hooks, plane=True)
    basis = _plane_basis(config, plan)
    around = basis.kind == planes.DIRECTIONS
    grid = planes.make_grid(basis, po.grid, margin=None if around else po.margin, span=po.xy_range if around else None)
    points = planes.engine_points(basis, grid)
    net = plan.weights.model.model
    variances = (
        [f"{name}.running_var" if name else "running_var" for name, _ in batchnorm_modules(net)]
        if plan.policy.value is BNPolicy.INTERPOLATE
        else []
    )
    clamped = planes.clamped_variances(basis, points, variances)
    grid = replace(grid, clamped=tuple(clamped))
    warnings = list(plan.warnings)
    if any(clamped):
        w = (
            f"warning: at {sum(clamped)} of the plane's {len(points)} points the interpolated BN running variance is "
            f"negative (outside the checkpoints' triangle); it is clamped at 0 there and results.csv marks them "
            f"(bn_clamped): {opt('bn', 'recompute')} re-estimates the statistics instead"
        )
        warnings.append(w)
        hooks.say(w)
    plan = replace(plan, points=points, warnings=warnings)
    shape = f"{po.grid} × {po.grid}" if basis.dims == 2 else f"{po.grid}"
    added = len(grid.points) - po.grid**basis.dims
    hooks.say(
        f"{basis.kind} plane: {shape} points{f' (+ {added} checkpoints off the lattice)' if added else ''}; "
        f"BN policy {plan.policy.value} ({plan.policy.reason}); {plan.strategy.value} on {plan.device}"
    )
    fingerprint = ""
    if resume is not None or on_batch is not None:
        base = _fingerprint(plan, options, read, hooks)
        fingerprint = hashlib.sha256(f"{base} {basis.description} {basis.dims}".encode()).hexdigest()
    if resume is not None and resume.fingerprint != fingerprint:
        raise UsageError(
            "the partial scan saved in the output directory was made with other inputs or options",
            hint=f"resume with exactly the command that was interrupted, or start afresh with {opt('force', True)}",
        )
    stages = _Stages(plan, hooks, fingerprint, 0, resume, on_batch)
    stages.remaining = len(points)
    stages.states = basis.states
    point_results, report = stages.run(1, points)
    report = stages.report(report)
    split_names = [s.name for s in plan.data.splits]
    results = planes.results_frame(grid, point_results, split_names)
    summary = planes.summary_frame(results, basis.anchors)
    counts = {r.split: r.n for r in point_results}
    manifest = _manifest(plan, options, read, report, hooks, counts, time.perf_counter() - t_start)
    k = config.count
    path = manifest.path
    if path is not None:
        labels = [f"c{i}" for i in range(k)]
        path = replace(
            path,
            segments=0,
            checkpoints=tuple(replace(c, label=lab) for c, lab in zip(path.checkpoints, labels, strict=False)),
        )
    manifest = replace(
        manifest,
        grid=mf.Grid(alphas=(), endpoints_added=()),
        bootstrap=None,
        path=path,
        plane=mf.Plane(
            kind=basis.kind,
            basis=basis.description,
            dims=basis.dims,
            anchors=tuple(
                mf.PlaneAnchor(label=a.label, index=a.index, x=a.x, y=a.y, on_plane=a.on_plane) for a in basis.anchors
            ),
            grid=po.grid,
            margin=grid.margin,
            x_range=grid.x_range,
            y_range=grid.y_range,
            seed=basis.seed,
            normalization=basis.normalization,
            keep_1d=basis.keep_1d,
            orthogonalised=basis.kind != planes.DIRECTIONS,
            explained_variance_ratio=basis.explained_variance_ratio,
            bn_clamped_points=sum(clamped),
        ),
    )
    return ScanResult(results, summary, manifest, None, directions=planes.direction_tensors(basis))
