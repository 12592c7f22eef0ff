"""Speed of a scan against the hardware floor and the naive per-point loop (issue 6), in one run on one machine.

Run from the repository root: ``python benchmarks/bench.py [--device cuda] [--quick]``; ``--help`` lists the
options and benchmarks/README.md says what each column means.
"""

from __future__ import annotations

import argparse
import copy
import csv
import gc
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader, TensorDataset

from interpscan.allocator import tune_allocator
from interpscan.data import Split
from interpscan.decisions import batch_statistics, choose_memory_format
from interpscan.engine import EngineOptions, Point, scan_points
from interpscan.errors import InterpscanError
from interpscan.groups import ModuleTree, resolve_groups
from interpscan.models import MLP, resnet18, resnet20
from interpscan.options import BNPolicy, DType, Hold, MemoryFormat, Strategy
from interpscan.tables import group_curves
from interpscan.values import parse_grid

HERE = Path(__file__).resolve().parent
# benchmarked when interpscan.options.Strategy has them
ENGINE_STRATEGIES = ("sequential", "batched", "prefix", "prefix-batched")
STRATEGIES = tuple(s.value for s in Strategy)
DTYPES = tuple(d.value for d in DType)
SCANS = ("whole", "groups", "paper")  # paper: the whole network and every group, as in the seed paper's figure
COLUMNS = ["model", "scan", "strategy", "points", "seconds", "vs_floor", "speedup_vs_naive", "max_rel_diff", "note"]
CONTEXT = [
    "device",
    "device_name",
    "threads",
    "torch",
    "samples",
    "batch_size",
    "alphas",
    "repeat",
    "tf32",
    "dtype",
    "bn",
    "calibration",
]

# A runner does one timed evaluation of all its points and returns (mean loss per point, a note for the table).
Runner = Callable[[], tuple[list[float], str]]


# ------------------------------------------------------------------------------------------- the workloads


WIDTH = [64]  # resnet18's base width, set by --width before any model is built


@dataclass(frozen=True)
class Workload:
    """A model, the shape of one input example, and the ``--groups`` values of its per-group scan."""

    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    classes: int
    groups: tuple[str, ...]


WORKLOADS = {
    "resnet20": Workload("resnet20", resnet20, (3, 32, 32), 10, ("layer*",)),  # CIFAR-shaped
    "mlp": Workload("mlp", MLP, (1, 28, 28), 10, ("features.*,fc",)),  # 784 → 256 → 256 → 10
    # the seed paper's figure: CIFAR ResNet-18, its four stages and the classifier (``scan paper`` adds vary-all);
    # --width scales it (64 is the paper's)
    "resnet18": Workload("resnet18", lambda: resnet18(width=WIDTH[0]), (3, 32, 32), 10, ("layer*", "fc")),
}


def random_state(workload: Workload, seed: int) -> dict[str, torch.Tensor]:
    """A random state of the model: its default initialization under ``seed``, and for batch norm non-trivial
    affine parameters and running statistics (so that interpolating them changes the network)."""
    torch.manual_seed(seed)
    model = workload.build()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm) and m.running_mean is not None and m.running_var is not None:
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def random_data(workload: Workload, samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, *input_shape) standard-normal inputs and (N,) uniform class labels, on the CPU."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, *workload.input_shape, generator=gen)
    y = torch.randint(0, workload.classes, (samples,), generator=gen)
    return x, y


def paper_points(model: nn.Module, specs: Sequence[str], alphas: Sequence[float]) -> tuple[list[Point], int]:
    """The seed paper's figure: the whole network ("vary all") and each group (the rest held at θ_final)."""
    points, g = group_points(model, specs, alphas)
    return whole_points(alphas) + points, g + 1


def whole_points(alphas: Sequence[float]) -> list[Point]:
    return [Point("all", a) for a in alphas]


def group_points(model: nn.Module, specs: Sequence[str], alphas: Sequence[float]) -> tuple[list[Point], int]:
    """G groups × K points, built as ``interpscan run --groups SPECS --hold final --mode only`` builds them.

    Returns the points (group-major) and G."""
    grouping = resolve_groups(specs, ModuleTree.from_model(model))
    names = list(model.state_dict())
    params = [n for n, _ in model.named_parameters()]
    curves = group_curves(grouping, names, params, "final", "only")
    points = [Point(c.name, a, c.moving, Hold.FINAL.coefficient) for c in curves.values() for a in alphas]
    return points, len(curves)


def point_state(start: dict[str, torch.Tensor], end: dict[str, torch.Tensor], point: Point) -> dict[str, torch.Tensor]:
    """The point's full state dict, built by hand: floating tensors interpolated, the others from the final state."""
    state = {}
    for name, s in start.items():
        e = end[name]
        state[name] = torch.lerp(s, e, point.coefficient(name)) if s.is_floating_point() else e.clone()
    return state


# ------------------------------------------------------------------------------------------- the methods


@dataclass(frozen=True)
class Problem:
    """What every method evaluates: the same model, states, points and data. The data is held twice: in CPU memory
    (``x``, ``y``: the naive loop's DataLoader reads it there) and on the device (``x_dev``, ``y_dev``: one copy,
    shared by the floor and interpscan; the same tensors as ``x``, ``y`` on the CPU)."""

    model: nn.Module
    start: dict[str, torch.Tensor]
    end: dict[str, torch.Tensor]
    points: list[Point]
    x: torch.Tensor
    y: torch.Tensor
    batch_size: int
    device: torch.device
    x_dev: torch.Tensor
    y_dev: torch.Tensor
    dtype: str = "float32"  # of the forward pass (autocast); interpolation and losses stay float32
    # under "recompute" every point's BN statistics are re-estimated from ``calib`` (inputs, CPU) first
    bn: str = "interpolate"
    calib: torch.Tensor | None = None
    calib_dev: torch.Tensor | None = None

    @classmethod
    def make(
        cls,
        model: nn.Module,
        start: dict[str, torch.Tensor],
        end: dict[str, torch.Tensor],
        points: list[Point],
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        device: torch.device,
        dtype: str = "float32",
        bn: str = "interpolate",
        calib: torch.Tensor | None = None,
    ) -> Problem:
        calib_dev = calib.to(device) if calib is not None else None
        x_dev, y_dev = x.to(device), y.to(device)
        return cls(model, start, end, points, x, y, batch_size, device, x_dev, y_dev, dtype, bn, calib, calib_dev)

    def subset(self, points: list[Point], n: int) -> Problem:
        return Problem(
            self.model,
            self.start,
            self.end,
            points,
            self.x[:n],
            self.y[:n],
            self.batch_size,
            self.device,
            self.x_dev[:n],
            self.y_dev[:n],
            self.dtype,
            self.bn,
            None if self.calib is None else self.calib[:n],
            None if self.calib_dev is None else self.calib_dev[:n],
        )


def recalibrate(net: nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """BN re-estimation done the plain way: reset, cumulative average (momentum None), BN layers alone in train
    mode over the calibration batches, then eval mode."""
    bns = [m for m in net.modules() if isinstance(m, _BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    with torch.no_grad():
        for xb in batches:
            net(xb)
    net.eval()


def floor_runner(p: Problem) -> Runner:
    """The hardware floor: one plain forward pass per point over data already on the device.

    Every point's network is built before timing (one eval-mode copy of the model per point), so what is timed is
    the forward passes under ``torch.inference_mode`` and a per-sample loss summed on the device, nothing else.
    """
    nets = []
    for point in p.points:
        net = copy.deepcopy(p.model)
        net.load_state_dict(point_state(p.start, p.end, point))
        nets.append(net.to(p.device).eval())
    x, y = p.x_dev, p.y_dev

    def run() -> tuple[list[float], str]:
        if p.bn == "recompute" and p.calib_dev is not None:
            calib = p.calib_dev
            for net in nets:
                with precision(p.device, p.dtype):
                    recalibrate(net, (calib[lo : lo + p.batch_size] for lo in range(0, len(calib), p.batch_size)))
        with torch.inference_mode(), precision(p.device, p.dtype):
            sums: list[torch.Tensor] = [torch.zeros((), dtype=torch.float64, device=p.device) for _ in nets]
            for lo in range(0, len(x), p.batch_size):
                xb, yb = x[lo : lo + p.batch_size], y[lo : lo + p.batch_size]
                for i, net in enumerate(nets):
                    sums[i] += F.cross_entropy(net(xb).float(), yb, reduction="none").double().sum()
            means = (torch.stack(sums) / len(x)).tolist()
        return means, ""

    return run


def naive_runner(p: Problem) -> Runner:
    """What peer tools do per point: build the state dict, ``load_state_dict``, then read the data afresh through a
    ``DataLoader`` over a ``TensorDataset`` in CPU memory, moving each batch to the device."""
    net = copy.deepcopy(p.model).to(p.device)
    loader = DataLoader(TensorDataset(p.x, p.y), batch_size=p.batch_size)

    def run() -> tuple[list[float], str]:
        means = []
        for point in p.points:
            net.load_state_dict(point_state(p.start, p.end, point))
            net.eval()
            if p.bn == "recompute" and p.calib is not None:
                calib = DataLoader(TensorDataset(p.calib), batch_size=p.batch_size)
                with precision(p.device, p.dtype):
                    recalibrate(net, (xb.to(p.device) for (xb,) in calib))
            total = 0.0
            with torch.no_grad(), precision(p.device, p.dtype):
                for xb, yb in loader:
                    xb, yb = xb.to(p.device), yb.to(p.device)
                    total += float(F.cross_entropy(net(xb).float(), yb, reduction="none").double().sum())
            means.append(total / len(p.x))
        return means, ""

    return run


def interpscan_runner(
    strategy: str, chunk_size: int | None, memory_format: str = "auto"
) -> Callable[[Problem], Runner]:
    """``scan_points`` with one strategy, the problem's BN policy, and ``memory_format`` (``auto``: what the CLI
    would choose for this strategy, device and model); the data is already on the device, as the floor's is
    (``scan_points`` then moves nothing)."""

    def make(p: Problem) -> Runner:
        split = Split("bench", p.x_dev, p.y_dev, None)
        calib = p.calib_dev if p.bn == "recompute" else None

        def run() -> tuple[list[float], str]:
            concrete = Strategy.parse(strategy, "--strategies")
            layout = choose_memory_format(
                MemoryFormat.parse(memory_format, "--memory-format"),
                device=p.device,
                strategy=concrete,
                model=p.model,
                batch_stats=batch_statistics(p.model, BNPolicy.parse(p.bn, "--bn")),
            ).value
            results, report = scan_points(
                p.model,
                p.start,
                p.end,
                p.points,
                [split],
                EngineOptions(
                    policy=BNPolicy.parse(p.bn, "--bn"),
                    strategy=concrete,
                    memory_format=layout,
                    device=p.device,
                    batch_size=p.batch_size,
                    chunk_size=chunk_size,
                    dtype=DType(p.dtype),
                ),
                calibration=calib,
            )
            notes = [f"{report.unique_points} distinct"] if report.unique_points != len(p.points) else []
            notes += [report.memory_format] if report.memory_format != "contiguous" else []
            return [r.loss for r in results], "; ".join(notes)

        return run

    return make


def methods(
    strategies: Sequence[str], chunk_size: int | None, memory_format: str = "auto"
) -> dict[str, Callable[[Problem], Runner]]:
    return {
        "floor": floor_runner,
        "naive": naive_runner,
        **{s: interpscan_runner(s, chunk_size, memory_format) for s in strategies},
    }


# ------------------------------------------------------------------------------------------- measuring


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def set_tf32(device: torch.device, allow: bool) -> None:
    """The same TF32 setting for every method, set again before each timing. The flags are the ones the engine
    sets (mixing them with ``torch.backends.*.fp32_precision`` makes torch refuse to read either back); note
    that the engine allows TF32 for the duration of its scan whatever this says."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = allow
        torch.backends.cudnn.allow_tf32 = allow


def time_once(run: Runner, device: torch.device, tf32: bool) -> tuple[float, list[float], str]:
    gc.collect()
    set_tf32(device, tf32)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    synchronize(device)
    t0 = time.perf_counter()
    losses, note = run()
    synchronize(device)
    return time.perf_counter() - t0, losses, note


@contextmanager
def precision(device: torch.device, dtype: str) -> Iterator[None]:
    """The floor's and the naive loop's forward passes under the same autocast as interpscan's ``--dtype``."""
    if dtype == "float32":
        yield
    else:
        with torch.autocast(device_type=device.type, dtype=getattr(torch, dtype)):
            yield


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:160]


def spread(points: Sequence[Point]) -> list[Point]:
    """Up to three points spread over the list (first, middle, last): enough to warm up every code path."""
    return [points[i] for i in sorted({0, len(points) // 2, len(points) - 1})]


@dataclass
class Row:
    model: str
    scan: str
    strategy: str
    points: int
    seconds: float = math.nan
    vs_floor: float = math.nan
    speedup_vs_naive: float = math.nan
    max_rel_diff: float = math.nan
    note: str = ""
    losses: list[float] = field(default_factory=list, repr=False)


def measure(
    model_name: str,
    scan: str,
    problem: Problem,
    makers: dict[str, Callable[[Problem], Runner]],
    repeat: int,
    tf32: bool,
    log: Callable[[str], None],
) -> list[Row]:
    """Warm each method up once on one batch and a few points, then time it on the whole problem ``repeat``
    times, the methods interleaved (so that a slow spell of a loaded machine hits them alike); keep the best."""
    dev = problem.device
    rows = {name: Row(model_name, scan, name, len(problem.points)) for name in makers}
    runners: dict[str, Runner] = {}
    warm = problem.subset(spread(problem.points), problem.batch_size)
    for name, make in makers.items():
        try:
            make(warm)()
            runners[name] = make(problem)
        except (InterpscanError, RuntimeError) as exc:  # a strategy that refuses, or runs out of memory
            rows[name].note = f"failed: {first_line(exc)}"
            log(f"  {name}: {rows[name].note}")
    for r in range(repeat):
        for name, run in list(runners.items()):
            log(f"  {model_name} {scan} {name} ({r + 1}/{repeat}) …")
            try:
                seconds, losses, note = time_once(run, dev, tf32)
            except (InterpscanError, RuntimeError) as exc:
                rows[name].note = f"failed: {first_line(exc)}"
                log(f"  {name}: {rows[name].note}")
                del runners[name]
                continue
            row = rows[name]
            row.seconds = min(row.seconds, seconds) if not math.isnan(row.seconds) else seconds
            row.losses, row.note = losses, note
    del runners
    floor, naive = rows["floor"], rows["naive"]
    for row in rows.values():
        if math.isnan(row.seconds):
            continue
        row.vs_floor = row.seconds / floor.seconds if not math.isnan(floor.seconds) else math.nan
        row.speedup_vs_naive = naive.seconds / row.seconds if not math.isnan(naive.seconds) else math.nan
        if floor.losses:
            row.max_rel_diff = max(
                abs(a - b) / max(abs(b), 1e-12) for a, b in zip(row.losses, floor.losses, strict=True)
            )
    return list(rows.values())


# ------------------------------------------------------------------------------------------- reporting


def sig(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, without an exponent for ordinary magnitudes."""
    if math.isnan(value):
        return ""
    if value == 0:
        return "0"
    if abs(value) < 1e-3 or abs(value) >= 1e6:
        return f"{value:.{digits - 1}e}"
    return f"{float(f'{value:.{digits}g}'):g}"


def cells(row: Row) -> list[str]:
    return [
        row.model,
        row.scan,
        row.strategy,
        str(row.points),
        sig(row.seconds),
        sig(row.vs_floor),
        sig(row.speedup_vs_naive),
        f"{row.max_rel_diff:.1e}" if not math.isnan(row.max_rel_diff) else "",
        row.note,
    ]


def table(rows: Sequence[Row]) -> str:
    body = [COLUMNS, *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in body) for i in range(len(COLUMNS))]
    numeric = {3, 4, 5, 6, 7}
    lines = []
    for line in body:
        parts = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def write_csv(path: Path, rows: Sequence[Row], context: dict[str, dict[str, str]]) -> None:
    """One row per (model, scan, strategy), the table's cells then the run's context; written to a temp sibling
    and renamed, so that a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(COLUMNS + CONTEXT)
            for row in rows:
                ctx = context[row.model]
                writer.writerow(cells(row) + [ctx[c] for c in CONTEXT])
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load() -> str:
    """The machine's load, for the record: timings from a loaded machine are not measurements."""
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


# ------------------------------------------------------------------------------------------- the command

# Defaults per device; --quick replaces them with tiny sizes. CPU: about 1–2 minutes on a quiet 2-core machine.
DEFAULTS = {
    "cpu": {"samples": 512, "mlp_samples": 8192, "batch_size": 256, "alphas": 11, "calibration": 512},
    "cuda": {"samples": 10240, "mlp_samples": 32768, "batch_size": 1024, "alphas": 11, "calibration": 2048},
    "quick": {"samples": 32, "mlp_samples": 128, "batch_size": 16, "alphas": 3, "calibration": 16},
}
# --preset paper: the seed paper's figure (ResNet-18, vary-all + 5 groups, 21 α, recompute); on CPU at width 16,
# 256 test and 256 calibration images so that it runs in minutes, on CUDA at full size (width 64, 10,000 test
# and 2,048 calibration images)
PRESETS = {
    "paper": {
        "models": ["resnet18"],
        "scans": ["paper"],
        "bn": "recompute",
        "alphas": 21,
        "cpu": {"width": 16, "samples": 256, "calibration": 256, "batch_size": 128},
        "cuda": {"width": 64, "samples": 10000, "calibration": 2048, "batch_size": 1024},
    }
}


def csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="bench.py",
        description="Time interpscan's scan against the hardware floor (plain forward passes) and the naive "
        "per-point loop (load_state_dict + DataLoader), whole path and per group, on resnet20 and a small MLP.",
        epilog="Sizes: CPU defaults 512 resnet20 / 8192 MLP samples, batch 256; CUDA 10240 / 32768, batch 1024; "
        "--quick 32 / 128, batch 16, 3 alphas. Explicit options override these.",
    )
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--preset", choices=list(PRESETS), help="a named workload: paper (see benchmarks/README.md)")
    ap.add_argument(
        "--models", type=csv_list, default=None, help="comma-separated: resnet20,mlp,resnet18 (default resnet20,mlp)"
    )
    ap.add_argument(
        "--scans", type=csv_list, default=None, help="comma-separated: whole,groups,paper (default whole,groups)"
    )
    ap.add_argument(
        "--bn",
        choices=["interpolate", "recompute"],
        default=None,
        help="BN policy for every method; recompute re-estimates each point's statistics first (default interpolate)",
    )
    ap.add_argument("--calibration", type=int, default=None, help="calibration examples under --bn recompute")
    ap.add_argument("--width", type=int, default=None, help="resnet18's base width (default 64, the paper's)")
    ap.add_argument(
        "--strategies",
        type=csv_list,
        default=None,
        help="interpscan strategies to time (default: those of sequential,batched,prefix,prefix-batched the engine "
        "has)",
    )
    ap.add_argument("--samples", type=int, default=None, help="resnet20 / resnet18 examples (3×32×32)")
    ap.add_argument("--mlp-samples", type=int, default=None, help="MLP examples (1×28×28)")
    ap.add_argument("--batch-size", type=int, default=None, help="examples per forward pass, for every method")
    ap.add_argument("--alphas", type=int, default=None, help="K: evenly spaced α in [0, 1] (default 11; paper 21)")
    ap.add_argument("--chunk-size", type=int, default=None, help="points per vmap chunk (default: the engine's)")
    ap.add_argument(
        "--memory-format",
        choices=[m.value for m in MemoryFormat],
        default="auto",
        help="interpscan's layout of 4-D tensors (default auto: as the CLI chooses; the floor and the naive loop "
        "stay contiguous, as a plain script is)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="time each method R times, keep the best (default 1)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument(
        "--raw-malloc",
        action="store_true",
        help="leave glibc's malloc thresholds alone (the CLI raises them: interpscan/allocator.py)",
    )
    ap.add_argument(
        "--tf32",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="CUDA: allow TF32 for the floor and the naive loop too (the engine allows it for its scans either way, "
        "so only --tf32 compares like with like)",
    )
    ap.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="forward-pass dtype (autocast) for every method; interpolation and losses stay float32",
    )
    ap.add_argument(
        "--rtol",
        type=float,
        default=None,
        help="exit 1 when a loss differs from the floor's by more, relatively "
        "(default 1e-4; 5e-3 on CUDA with TF32; 5e-2 under --dtype bfloat16/float16)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", type=Path, default=None, help="default benchmarks/results-<device>.csv")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs, measures nothing")
    return ap


def log(message: str) -> None:
    """Progress and problems go to stderr; the table goes to stdout."""
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        log("error: --device cuda, but torch sees no CUDA device")
        return 2
    preset: dict[str, Any] = PRESETS[args.preset] if args.preset else {}
    sized = {} if args.quick else preset.get(args.device, {})
    defaults = {
        "models": list(WORKLOADS)[:2],
        "scans": list(SCANS)[:2],
        "bn": "interpolate",
        "width": 64,
        **DEFAULTS["quick" if args.quick else args.device],
        **{k: v for k, v in preset.items() if k not in ("cpu", "cuda")},
        **sized,
        **({"alphas": 3, "width": 8} if args.quick else {}),
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    WIDTH[0] = args.width
    unknown = [m for m in args.models if m not in WORKLOADS] + [s for s in args.scans if s not in SCANS]
    if unknown:
        log(
            f"error: unknown model or scan {', '.join(unknown)}; models: {', '.join(WORKLOADS)}; "
            f"scans: {', '.join(SCANS)}"
        )
        return 2
    if min(args.samples, args.mlp_samples, args.batch_size, args.repeat, args.calibration, args.width) <= 0 or (
        args.alphas < 2
    ):
        log(
            "error: --samples, --mlp-samples, --batch-size, --repeat, --calibration and --width must be positive, "
            "--alphas at least 2"
        )
        return 2
    available = [s for s in ENGINE_STRATEGIES if s in STRATEGIES]
    strategies = available if args.strategies is None else args.strategies
    for s in [s for s in strategies if s not in STRATEGIES or s == "auto"]:
        log(f"note: strategy {s!r} is not in this engine ({', '.join(STRATEGIES)}); skipped")
    strategies = [s for s in strategies if s in STRATEGIES and s != "auto"]
    if args.threads:
        torch.set_num_threads(args.threads)
    # the allocator setting the CLI makes (interpscan/allocator.py), for every method alike; --raw-malloc skips it
    tuned = False if args.raw_malloc else tune_allocator()
    log(f"# glibc malloc thresholds raised as the CLI does: {'yes' if tuned else 'no'}")
    if args.rtol is not None:
        rtol = args.rtol
    elif args.dtype != "float32":
        rtol = 5e-2
    else:
        rtol = 5e-3 if device.type == "cuda" else 1e-4  # TF32: the engine allows it on CUDA whatever --tf32 says
    alphas, _ = parse_grid(str(args.alphas))
    csv_path: Path = args.csv or HERE / f"results-{device.type}.csv"

    name = device_name(device)
    threads = torch.get_num_threads()
    print(f"# interpscan benchmark{' (--quick: a smoke run, not a measurement)' if args.quick else ''}")
    print(f"# torch {torch.__version__}, Python {platform.python_version()}")
    print(f"# device {device.type}: {name}; {threads} CPU threads; {load()}")
    print(
        f"# samples cifar-shaped={args.samples} mlp={args.mlp_samples}; batch {args.batch_size}; "
        + (f"resnet18 width {args.width}; " if "resnet18" in args.models else "")
        + f"BN {args.bn}"
        + (f" from {args.calibration} calibration examples; " if args.bn == "recompute" else "; ")
        + f"K={len(alphas)} α; best of {args.repeat}"
        + (f"; TF32 {'on' if args.tf32 else 'off'}" if device.type == "cuda" else "")
        + f"; dtype {args.dtype}"
        + f"; strategies {','.join(strategies) or 'none'}",
        flush=True,
    )

    rows: list[Row] = []
    context: dict[str, dict[str, str]] = {}
    makers = methods(strategies, args.chunk_size, args.memory_format)
    for model_name in args.models:
        workload = WORKLOADS[model_name]
        samples = args.samples if workload.input_shape == (3, 32, 32) else args.mlp_samples
        context[model_name] = {
            "device": device.type,
            "device_name": name,
            "threads": str(threads),
            "torch": torch.__version__,
            "samples": str(samples),
            "batch_size": str(args.batch_size),
            "alphas": str(len(alphas)),
            "repeat": str(args.repeat),
            "tf32": str(args.tf32 if device.type == "cuda" else ""),
            "dtype": args.dtype,
            "bn": args.bn,
            "calibration": str(args.calibration if args.bn == "recompute" else ""),
        }
        model = workload.build().eval()
        start, end = random_state(workload, args.seed + 1), random_state(workload, args.seed + 2)
        x, y = random_data(workload, samples, args.seed)
        calib = None
        if args.bn == "recompute":  # shifted and scaled: statistics unlike the running ones the states hold
            calib = random_data(workload, args.calibration, args.seed + 3)[0] * 1.5 + 0.2
        for scan in args.scans:
            if scan == "whole":
                points = whole_points(alphas)
            elif scan == "paper":
                points, g = paper_points(model, workload.groups, alphas)
                log(f"{model_name}: the whole network + {g - 1} groups from {','.join(workload.groups)!r}")
            else:
                points, g = group_points(model, workload.groups, alphas)
                log(f"{model_name}: {g} groups from {','.join(workload.groups)!r}")
            problem = Problem.make(model, start, end, points, x, y, args.batch_size, device, args.dtype, args.bn, calib)
            rows += measure(model_name, scan, problem, makers, args.repeat, args.tf32, log)

    print(table(rows))
    print(f"# after: {load()}")
    write_csv(csv_path, rows, context)
    log(f"wrote {csv_path}")
    bad = [r for r in rows if r.note.startswith("failed") or r.max_rel_diff > rtol]
    for r in bad:
        log(
            f"check: {r.model} {r.scan} {r.strategy}: "
            + (r.note or f"losses differ from the floor's by {r.max_rel_diff:.1e}")
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
