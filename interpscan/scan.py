"""One scan, end to end as a library call: resolve inputs, evaluate the path, compute metrics.

``run_scan(ScanConfig(...))`` is what ``interpscan run`` does, minus writing files: it returns the tidy
results and summary tables and the manifest (run.json) as plain data.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .checkpoints import Checkpoint, align_to_model, load_checkpoint
from .data import Split, check_normalize, load_split, open_data, parse_normalize
from .decisions import batched_obstacle, choose_bn_policy, choose_strategy
from .download import DownloadProgress
from .engine import EngineOptions, Point, PointResult, Progress, Snapshot, has_running_stats, scan_points
from .errors import ModelError, UsageError
from .groups import Grouping, ModuleTree, resolve_groups
from .metrics import distances, summarize_curve
from .models import (
    CODE_KINDS,
    ModelSpec,
    build_model,
    check_against,
    check_recorded_code,
    match_states,
    model_spec_for,
    resolve_model,
    split_ties,
)
from .objectives import parse_objective
from .options import Hold, ScanOptions

RESULT_COLUMNS = ["curve", "split", "alpha", "loss", "loss_se", "accuracy", "n", "hold", "mode"]
SUMMARY_COLUMNS = [
    "curve",
    "split",
    "loss_start",
    "loss_end",
    "delta",
    "monotone",
    "barrier_linear",
    "barrier_linear_alpha",
    "barrier_max",
    "barrier_max_alpha",
    "error_barrier_linear",
    "error_barrier_max",
    "distance",
    "relative_distance",
    "cosine",
    "hold",
    "mode",
    "plateau_alpha",  # appended, not inserted: column order is part of the contract
    "nonfinite_points",  # grid points whose loss is NaN or ±inf (kept as they are in results.csv)
]
# ---------------------------------------------------------------------------------------------- the config


@dataclass(frozen=True, kw_only=True)
class ScanConfig(ScanOptions):
    """A scan from files: the two checkpoints, the data and the model as the command line names them, how to
    read them, and the ScanOptions. Checked when built, like ScanOptions; paths are as the user gave them."""

    init: Path = field(kw_only=False)
    final: Path = field(kw_only=False)
    data: str = "fashion-mnist-small"
    model: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    data_root: Path | None = None
    splits: tuple[str, ...] | None = ("test",)
    normalize: str = "auto"
    download: bool = True  # fetch a named dataset that is not under data_root (--download/--no-download)
    data_keys: tuple[str, str] | None = None  # --data-keys INPUTS,TARGETS for tensor files and factories
    key: str | None = None  # --key: dotted path to the tensors inside both checkpoint files (e.g. ema weights)
    unsafe_pickle: bool = False  # --unsafe-pickle: allow pickles that run code (whole pickled modules)
    strict: bool = True  # --strict/--no-strict: missing and unexpected tensors are errors, or tolerated
    trust_recorded_code: bool = False  # --trust-recorded-code: build a model whose code a checkpoint names

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "init", Path(self.init))
        object.__setattr__(self, "final", Path(self.final))
        if self.data_root is not None:
            object.__setattr__(self, "data_root", Path(self.data_root))
        check_normalize(self.normalize)


@dataclass(frozen=True)
class ScanResult:
    """The scan's outputs as data: results.csv and summary.csv as DataFrames, run.json as a dict."""

    results: Any  # pandas.DataFrame, RESULT_COLUMNS
    summary: Any  # pandas.DataFrame, SUMMARY_COLUMNS
    manifest: dict[str, Any]


def resolve_device(text: str) -> torch.device:
    """``auto`` picks the first CUDA device when there is one, else the CPU."""
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise UsageError(f"--device {text!r} is not a device", hint="use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {text}: no CUDA device is available", hint="use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise UsageError(f"--device {text}: only cpu and cuda are supported")
    return dev


def _model_spec(config: ScanConfig, final: Checkpoint, init: Checkpoint) -> tuple[ModelSpec, str]:
    """The model to build: ``--model``, else the one a checkpoint records (see models.model_spec_for)."""
    return model_spec_for(config.model, config.model_args, final, init, trust_recorded_code=config.trust_recorded_code)


def default_batch_size(device: torch.device) -> int:
    # CPU: activations of a few hundred examples stay cache- and allocator-friendly (ENGINE-NOTES 2);
    # GPU: large batches keep the device busy.
    return 1024 if device.type == "cuda" else 256


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


def run_scan(
    config: ScanConfig,
    progress: Progress | None = None,
    log: Any = None,
    download_progress: DownloadProgress | None = None,
    resume: Mapping[str, Any] | None = None,
    on_batch: Callable[[dict[str, Any]], None] | None = None,
) -> ScanResult:
    """Run one scan: the whole-network curve and, with ``config.groups``, one curve per group.
    ``on_batch`` receives a resumable snapshot after every finished batch; ``resume`` continues from one
    (it must come from the same scan: same inputs, points and options, checked by fingerprint).
    ``log(str)`` receives progress messages (the CLI prints them to stderr);
    ``download_progress`` is told about a named dataset being downloaded.

    Raises:
        InterpscanError: any problem with the inputs, before compute starts where it can be known.
    """

    say = log or (lambda _msg: None)
    t_start = time.perf_counter()
    grid, added = config.grid
    device = resolve_device(config.device)
    batch_size = config.batch_size or default_batch_size(device)
    splits_wanted = config.splits or ("test",)

    objective = parse_objective(config.loss)

    init = load_checkpoint(config.init, key=config.key, unsafe_pickle=config.unsafe_pickle)
    final = load_checkpoint(config.final, key=config.key, unsafe_pickle=config.unsafe_pickle)
    check_recorded_code(config.model, final, init, trust=config.trust_recorded_code)  # before any data is read
    source = open_data(
        config.data,
        config.data_root,
        download=config.download,
        keys=config.data_keys,
        progress=download_progress,
        log=say,
    )
    normalization = parse_normalize(config.normalize, source)
    targets = objective.classification  # class labels for cross-entropy; any targets for other losses
    splits = [
        load_split(
            source, s, samples=config.samples, seed=config.seed, normalization=normalization, class_targets=targets
        )
        for s in splits_wanted
    ]
    resolved = resolve_model(
        config.model, config.model_args, final, init, trust_recorded_code=config.trust_recorded_code
    )
    spec, spec_origin, model = resolved.spec, resolved.origin, resolved.model
    names = list(model.state_dict())
    init, final = align_to_model(init, names), align_to_model(final, names)
    matched = match_states(model, {"init": init.tensors, "final": final.tensors}, strict=config.strict)
    init, final = replace(init, tensors=matched.states["init"]), replace(final, tensors=matched.states["final"])
    for note in matched.notes():
        say(note)
    warnings = [w for label, c in (("init", init), ("final", final)) if (w := non_finite_warning(label, c.tensors))]
    for w in warnings:
        say(w)
    grouping: Grouping | None = None
    if config.groups:
        grouping = resolve_groups(config.groups, ModuleTree.from_model(model))
        if split := split_ties({g.name: g.tensors for g in grouping.groups}, matched.tied):
            raise UsageError(f"--groups: {split[0]}", hint="put every name of a tied tensor in the same group")
    obstacle = batched_obstacle(model)
    strategy_choice = choose_strategy(config.strategy, device=device, grouped=grouping is not None, model=model)
    strategy = strategy_choice.value
    policy_choice = choose_bn_policy(config.bn, model=model, has_train="train" in source.splits, data_name=source.name)
    policy, policy_reason = policy_choice.value, policy_choice.reason
    calibration: Split | None = None
    calib_idx: Sequence[int] | None = None
    if policy == "recompute" and has_running_stats(model):
        # seed + 1: the calibration subset is drawn independently of an evaluated --samples subset
        calib_split = load_split(
            source,
            "train",
            samples=config.bn_samples,
            seed=config.seed + 1,
            normalization=normalization,
            class_targets=targets,
        )
        calibration = calib_split
        calib_idx = calib_split.indices if calib_split.indices is not None else range(len(calib_split))
    say(
        f"model {spec.text} ({spec_origin}); data {source.name} "
        + ", ".join(f"{s.name}={len(s)}" for s in splits)
        + f"; BN policy {policy} ({policy_reason}); {len(grid)} α"
        + (f" × {len(grouping) + 1} curves (all + {len(grouping)} groups)" if grouping else "")
        + f"; {strategy} on {device}"
    )

    params = [n for n, _ in model.named_parameters()]
    curves = {"all": Curve("all", "", "", frozenset(names), params)}
    if grouping is not None:
        curves.update(group_curves(grouping, names, params, config.hold, config.mode))
    points = [
        Point(c.name, a, None if c.name == "all" else c.moving, Hold(c.hold).coefficient if c.hold else 1.0)
        for c in curves.values()
        for a in grid
    ]
    # everything the numbers depend on: a partial scan resumes only into the scan that saved it
    fingerprint = hashlib.sha256(
        json.dumps(
            {
                "checkpoints": [init.info.sha256, final.info.sha256, config.key],
                "model": spec.to_json(),
                "data": [source.name, normalization, [(s.name, len(s), s.indices) for s in splits]],
                "policy": [policy, list(calib_idx) if calib_idx is not None else None],
                "points": [(p.curve, p.alpha, sorted(p.moving) if p.moving else None, p.hold) for p in points],
                "engine": [str(strategy), batch_size, config.chunk_size, str(config.dtype), config.loss, str(device)],
            },
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()
    if resume is not None and resume.get("fingerprint") != fingerprint:
        raise UsageError(
            "the partial scan saved in the output directory was made with other inputs or options",
            hint="resume with exactly the command that was interrupted, or start afresh with --force",
        )
    engine = EngineOptions(
        policy=policy,
        strategy=strategy,
        device=device,
        batch_size=batch_size,
        chunk_size=config.chunk_size,
        dtype=config.dtype,
    )
    point_results, report = scan_points(
        model,
        init.tensors,
        final.tensors,
        points,
        splits,
        engine,
        calibration=calibration,
        progress=progress,
        objective=objective,
        resume=Snapshot.from_state(resume["engine"]) if resume is not None else None,
        on_batch=None
        if on_batch is None
        else lambda snap: on_batch({"fingerprint": fingerprint, "engine": snap.to_state()}),
    )

    results = results_frame(point_results, [s.name for s in splits], curves)
    summary = summary_frame(results, curves, init.tensors, final.tensors, config.tol)
    manifest = {
        "interpscan": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "argv": list(sys.argv),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "device": str(device),
        "device_name": (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
        ),
        "strategy": report.strategy,
        "strategy_reason": strategy_choice.reason,
        "strategy_note": report.note,
        "checkpoints": {"init": init.info.to_json(), "final": final.info.to_json()},
        "weights": {
            "key": config.key,
            "strict": config.strict,
            "unsafe_pickle": config.unsafe_pickle,
            "batched_obstacle": obstacle,
            **matched.to_json(),
        },
        "model": {
            **spec.to_json(),
            "origin": spec_origin,
            "source": resolved.source,
            # True only when the model's code was imported because a checkpoint named it (--trust-recorded-code)
            "runs_recorded_code": resolved.source == "recorded" and spec.kind in CODE_KINDS,
            "parameters": sum(p.numel() for p in model.parameters()),
            "tensors": len(names),
        },
        "data": {
            "name": source.name,
            "kind": source.kind,
            "location": source.location,
            "normalization": normalization,
            "seed": config.seed,
            "splits": {
                s.name: {"n": len(s), "indices": list(s.indices) if s.indices is not None else "all"} for s in splits
            },
        },
        "bn": {
            "policy": policy,
            "reason": policy_reason,
            "batchnorm_modules": report.bn_modules,
            "calibration_samples": 0 if calibration is None else len(calibration),
            "calibration_indices": [] if calib_idx is None else [int(i) for i in calib_idx],
        },
        "grid": {"alphas": list(grid), "endpoints_added": list(added)},
        "groups": None
        if grouping is None
        else {
            "specs": list(config.groups),
            "hold": str(config.hold),
            "mode": str(config.mode),
            "groups": [{"name": g.name, "source": g.source, "tensors": list(g.tensors)} for g in grouping.groups],
            "rest": list(grouping.rest),
        },
        "tol": config.tol,
        "loss": {"name": objective.name, "accuracy": objective.classification},
        "engine": {
            "batch_size": report.batch_size,
            "chunk_size": report.chunk_size,
            "chunk_shrinks": report.chunk_shrinks,
            "dtype": report.dtype,
            "unique_points": report.unique_points,
            "calibration_batches": report.calibration_batches,
        },
        "warnings": warnings,
        "timings": {
            "calibration_s": round(report.seconds_calibration, 4),
            "evaluation_s": round(report.seconds_evaluation, 4),
            "total_s": round(time.perf_counter() - t_start, 4),
        },
    }
    return ScanResult(results, summary, manifest)


@dataclass(frozen=True)
class Curve:
    """One curve of a scan: its name, labels for the CSVs, the tensors that move and the parameters among them."""

    name: str
    hold: str  # "final", "init", or "" for the whole-network curve
    mode: str  # "only", "all-but", or ""
    moving: frozenset[str]
    parameters: list[str]


def group_curves(
    grouping: Grouping, names: Sequence[str], params: Sequence[str], hold: str, mode: str
) -> dict[str, Curve]:
    """A curve per group: the group's tensors move (``only``) or everything else does (``all-but``)."""
    curves = {}
    for g in grouping.groups:
        members = set(g.tensors)
        moving = frozenset(members if mode == "only" else set(names) - members)
        curves[g.name] = Curve(g.name, str(hold), str(mode), moving, [p for p in params if p in moving])
    return curves


def results_frame(
    point_results: Sequence[PointResult], split_order: Sequence[str], curves: Mapping[str, Curve] | None = None
) -> Any:
    """The tidy results table: one row per (curve, split, alpha), RESULT_COLUMNS, sorted by curve order."""
    import pandas as pd

    rows = [
        {
            "curve": r.point.curve,
            "split": r.split,
            "alpha": r.point.alpha,
            "loss": r.loss,
            "loss_se": r.loss_se,
            "accuracy": r.accuracy,
            "n": r.n,
            "hold": curves[r.point.curve].hold if curves else "",
            "mode": curves[r.point.curve].mode if curves else "",
        }
        for r in point_results
    ]
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    curve_order = list(dict.fromkeys(df["curve"]))
    df["_c"] = df["curve"].map(curve_order.index)
    df["_s"] = df["split"].map(list(split_order).index)
    return df.sort_values(["_c", "_s", "alpha"]).drop(columns=["_c", "_s"]).reset_index(drop=True)


def summary_frame(
    results: Any,
    curves: Mapping[str, Curve],
    init: dict[str, torch.Tensor],
    final: dict[str, torch.Tensor],
    tol: float,
) -> Any:
    """summary.csv: one row per (curve, split), SUMMARY_COLUMNS; distances over the parameters that move."""
    import pandas as pd

    rows = []
    for (curve, split), g in results.groupby(["curve", "split"], sort=False):
        m = summarize_curve(g["alpha"].tolist(), g["loss"].tolist(), g["accuracy"].tolist(), tol=tol)
        c = curves[str(curve)]
        d = distances(init, final, c.parameters)
        rows.append(
            {
                "curve": curve,
                "split": split,
                **m.to_dict(),
                "distance": d.distance,
                "relative_distance": d.relative_distance,
                "cosine": d.cosine,
                "hold": c.hold,
                "mode": c.mode,
                "nonfinite_points": int((~g["loss"].apply(math.isfinite)).sum()),
            }
        )
    df = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    df["monotone"] = df["monotone"].astype("boolean")
    return df


@dataclass(frozen=True)
class LayerReport:
    """What ``interpscan layers`` shows: the resolved groups with sizes and (given FINAL) distances."""

    rows: list[dict[str, Any]]
    grouping: Grouping
    model: str | None  # the model spec whose module tree was used, None for a bare state dict


def layer_report(
    init_path: Path,
    final_path: Path | None,
    groups: Sequence[str],
    model: str | None = None,
    model_args: dict[str, Any] | None = None,
    *,
    trust_recorded_code: bool = False,
) -> LayerReport:
    """Resolve ``groups`` against a checkpoint without touching data: from the model's module tree when a
    model is given or recorded, else from the tensor names' dotted prefixes.

    Raises:
        InterpscanError: unreadable checkpoints, a model that does not match them, or bad patterns.
    """
    from .groups import group_table, parameter_names

    init = load_checkpoint(init_path)
    final = load_checkpoint(final_path) if final_path is not None else None
    reference = final or init
    config = ScanConfig(
        init=init_path,
        final=final_path or init_path,
        model=model,
        model_args=model_args or {},
        trust_recorded_code=trust_recorded_code,
    )
    module = None
    spec_text = None
    if model is not None or reference.model_spec is not None or init.model_spec is not None:
        spec, _ = _model_spec(config, reference, init)
        module = build_model(spec)
        names = list(module.state_dict())
        init = align_to_model(init, names)
        final = align_to_model(final, names) if final is not None else None
        check_against(module, {"init": init.tensors, **({"final": final.tensors} if final is not None else {})})
        tree = ModuleTree.from_model(module)
        spec_text = spec.text
    else:
        if final is not None and set(final.tensors) != set(init.tensors):
            only = sorted(set(init.tensors) ^ set(final.tensors))
            raise ModelError(
                f"the checkpoints hold different tensors ({len(only)} in one only: {', '.join(only[:5])})",
                hint="pass --model so wrapper prefixes can be resolved against the model's names",
            )
        tree = ModuleTree.from_names(init.tensors)
    grouping = resolve_groups(groups, tree)
    rows = group_table(
        grouping,
        init.tensors,
        final.tensors if final is not None else None,
        parameter_names(init.tensors, module),
    )
    return LayerReport(rows, grouping, spec_text)
