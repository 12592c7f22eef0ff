"""A scan's options as types: the closed choices as enums (the CLI's signatures list them in ``--help``, the
library takes them or their strings), the α grid, and every range check, made once, when the options are
built: before any file is read or any byte downloaded. Also the checks every command shares for the paths and
names its flags give (``check_path``, ``check_label``, ``check_groups``).

No torch here: the CLI imports this module to build its signatures, and ``interpscan --help`` stays instant.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from .errors import UsageError

MAX_ALPHAS = 10_000  # points on one path; far beyond any published grid (hundreds), far below what fills memory
DEFAULT_BOOTSTRAP = 1000  # resamples: the 2.5th and 97.5th percentiles move by a few % of the interval between seeds
MAX_BOOTSTRAP = 100_000
MAX_ABS_ALPHA = 1e6  # |α| beyond this makes θ(α) overflow float32 for weights of ordinary size
MAX_SEED = 2**63 - 1  # seeds are int64 (run.json, numpy); the calibration subset uses seed + 1, within torch's uint64
NAME_MAX = 255  # bytes in one file or directory name (Linux, macOS)
PATH_MAX = 4096  # bytes in a whole path (Linux)
DEFAULT_ALPHAS = 21

C = TypeVar("C", bound="Choice")


class Choice(str, Enum):
    """A closed choice: its value is what the command line takes and run.json records."""

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def parse(cls: type[C], value: Any, flag: str) -> C:
        """The member whose value is ``value`` (a member or its string, any case).

        Raises:
            UsageError: no member has that value; the message lists the values.
        """
        if isinstance(value, cls):
            return value
        text = str(value.value if isinstance(value, Enum) else value).strip().lower()
        for member in cls:
            if member.value == text:
                return member
        choices = ", ".join(m.value for m in cls)
        raise UsageError(f"{flag} {value!r} is not one of {choices}", hint=f"use {flag} {next(iter(cls)).value}")


class Strategy(Choice):
    """How the points are evaluated; every strategy gives the same numbers."""

    AUTO = "auto"
    SEQUENTIAL = "sequential"  # one working model, each point's weights written into it in place
    BATCHED = "batched"  # torch.func.functional_call under vmap, over chunks of points
    PREFIX = "prefix"  # sequential, sharing the forward pass up to each group's first tensor
    PREFIX_BATCHED = "prefix-batched"  # prefix sharing, and the rest of the graph vmapped over a group's points


class MemoryFormat(Choice):
    """How the engine lays out 4-D tensors (conv weights and the activations they make); both layouts give the
    same numbers to float32 rounding."""

    AUTO = "auto"
    CONTIGUOUS = "contiguous"  # NCHW, PyTorch's default
    CHANNELS_LAST = "channels-last"  # NHWC: on CPU, oneDNN's convolutions and max-pooling run 1.3–2.8× faster


def check_memory_format(memory_format: MemoryFormat, strategy: Strategy) -> None:
    """Channels-last goes with the strategies that loop over points; vmap's stacked weights have no 4-D layout.

    Raises:
        UsageError: channels-last with ``batched`` or ``prefix-batched``.
    """
    if memory_format is MemoryFormat.CHANNELS_LAST and strategy in (Strategy.BATCHED, Strategy.PREFIX_BATCHED):
        raise UsageError(
            f"--memory-format channels-last applies to the strategies that loop over points, not {strategy}",
            hint="use --strategy sequential or prefix with it, or --memory-format auto",
        )


class BNPolicy(Choice):
    """What a point's batch-norm running statistics are (DOMAIN.md, "the trap")."""

    AUTO = "auto"
    INTERPOLATE = "interpolate"  # interpolated like parameters
    RECOMPUTE = "recompute"  # re-estimated per point from training batches (cumulative average)
    BATCH = "batch"  # each batch normalized with its own statistics


class DType(Choice):
    """Precision of the forward pass (autocast); interpolation and the loss stay float32."""

    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"


class Hold(Choice):
    """Where the tensors that do not move stay in a group's curve."""

    FINAL = "final"  # the seed paper's layer-wise scan: everything else at θ_final
    INIT = "init"

    @property
    def coefficient(self) -> float:
        """The interpolation coefficient of the tensors that do not move."""
        return 1.0 if self is Hold.FINAL else 0.0


class Mode(Choice):
    """Which tensors a group's curve moves."""

    ONLY = "only"  # the group's tensors
    ALL_BUT = "all-but"  # every tensor but the group's


class Grid(NamedTuple):
    """The α values of a path, sorted, α=0 and α=1 always among them; ``added`` says which endpoints the user's
    values lacked."""

    alphas: tuple[float, ...]
    added: tuple[float, ...]


def _float(value: Any) -> float:
    """A number from a flag: a real number, or text in ASCII (``float`` would also take other scripts' digits,
    so that '٣' would silently be 3).

    Raises:
        ValueError: anything else.
    """
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, str):
        if not value.isascii():
            raise ValueError(value)
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    raise ValueError(value)


# A count of points: a whole number written in ASCII digits, perhaps with a + and Python's _ separators.
_COUNT = re.compile(r"\s*\+?\d+(_\d+)*\s*", re.ASCII)
_NEGATIVE_COUNT = re.compile(r"\s*-\d+(_\d+)*\s*", re.ASCII)


def _range(alpha_range: str | Sequence[float]) -> tuple[float, float]:
    try:
        parts = alpha_range.split(",") if isinstance(alpha_range, str) else list(alpha_range)
        lo, hi = (_float(v) for v in parts)
    except (TypeError, ValueError):
        raise UsageError(f"--alpha-range {alpha_range!r} is not LO,HI", hint="e.g. -0.5,1.5") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise UsageError(f"--alpha-range needs finite LO < HI, got {alpha_range!r}", hint="e.g. -0.5,1.5")
    if max(abs(lo), abs(hi)) > MAX_ABS_ALPHA:
        raise UsageError(
            f"--alpha-range {alpha_range!r}: α must lie within ±{MAX_ABS_ALPHA:g}",
            hint="beyond that θ(α) overflows float32 for weights of ordinary size",
        )
    return lo, hi


def parse_grid(
    alphas: int | str | Sequence[float] = DEFAULT_ALPHAS, alpha_range: str | Sequence[float] | None = None
) -> Grid:
    """Resolve ``--alphas`` / ``--alpha-range`` into a sorted grid that always holds α=0 and α=1.

    ``alphas`` is a count N (N evenly spaced points over the range, default [0, 1]), or explicit values: a
    sequence of numbers or a comma-separated string.

    Raises:
        UsageError: a malformed count, list or range; fewer than 2 or more than MAX_ALPHAS points; a value that
            is not finite or beyond ±MAX_ABS_ALPHA.
    """
    count: int | None = None
    items: list[Any] = []
    if isinstance(alphas, bool):
        raise UsageError(f"--alphas {alphas!r} is neither a count nor a list of numbers", hint="e.g. --alphas 51")
    if isinstance(alphas, int):
        count = alphas
    elif isinstance(alphas, str):
        if _COUNT.fullmatch(alphas):
            count = int(alphas)
        elif _NEGATIVE_COUNT.fullmatch(alphas):
            raise UsageError(
                f"--alphas {alphas.strip()}: a count of points must be at least 2",
                hint="e.g. --alphas 21; for α below 0, list the values (--alphas -1,-0.5,0,0.5,1) or use --alpha-range",
            )
        items = alphas.split(",")
    else:
        try:
            items = list(alphas)
        except TypeError:
            raise UsageError(
                f"--alphas {alphas!r} is neither a count nor a list of numbers", hint="e.g. --alphas 51"
            ) from None
    if count is not None:
        if count < 2:
            raise UsageError(f"--alphas {count}: need at least 2 points", hint="e.g. --alphas 21 (the default)")
        if count > MAX_ALPHAS:
            raise UsageError(
                f"--alphas {count}: at most {MAX_ALPHAS:,} points on a path",
                hint="a cliff needs resolution where it is, not everywhere: scan a narrower --alpha-range",
            )
        lo, hi = _range(alpha_range) if alpha_range is not None else (0.0, 1.0)
        values = [lo + (hi - lo) * i / (count - 1) for i in range(count)]
    else:
        if alpha_range is not None:
            raise UsageError(
                "--alpha-range applies to a count of points, not to an explicit --alphas list",
                hint="give --alphas a count (e.g. 51), or list every α yourself",
            )
        try:
            values = [
                _float(v.strip() if isinstance(v, str) else v)
                for v in items
                if not (isinstance(v, str) and not v.strip())
            ]
        except (TypeError, ValueError):
            raise UsageError(
                f"--alphas {alphas!r} is neither a count nor a list of numbers",
                hint="e.g. --alphas 51 or --alphas 0,0.5,0.9,1",
            ) from None
        if not values or not all(math.isfinite(v) for v in values):
            raise UsageError(f"--alphas {alphas!r} must hold finite numbers", hint="e.g. --alphas 0,0.5,0.9,1")
        if len(values) > MAX_ALPHAS:
            raise UsageError(
                f"--alphas: {len(values):,} values, at most {MAX_ALPHAS:,} points on a path",
                hint="a cliff needs resolution where it is, not everywhere: list the α you need",
            )
    if any(abs(v) > MAX_ABS_ALPHA for v in values):
        raise UsageError(
            f"α must lie within ±{MAX_ABS_ALPHA:g}; got {max(values, key=abs):g}",
            hint="beyond that θ(α) overflows float32 for weights of ordinary size",
        )
    grid = sorted({round(v, 12) + 0.0 for v in values})
    if count is not None and len(grid) < count:
        raise UsageError(
            f"--alphas {count} --alpha-range {alpha_range}: the range is too narrow for {count} distinct points",
            hint="α is resolved to 12 decimals: widen the range or ask for fewer points",
        )
    added = [e for e in (0.0, 1.0) if e not in grid]
    return Grid(tuple(sorted(grid + added)), tuple(added))


def check_groups(groups: str | Sequence[str] | None) -> tuple[str, ...]:
    """``--groups`` values (``run`` and ``layers`` alike): each a non-empty pattern.

    Raises:
        UsageError: an empty or blank value, or one that is not text.
    """
    values = (groups,) if isinstance(groups, str) else tuple(groups or ())
    if not all(isinstance(g, str) and g.strip() for g in values):
        raise UsageError(
            f"--groups {list(values)!r}: each value must be a non-empty pattern",
            hint="e.g. --groups 'layer*' (see `interpscan layers`)",
        )
    return values


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
BUILTIN_LOSSES = ("cross_entropy", "mse", "next_token")


def _positive(value: int | None, flag: str, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    hint = f"give {flag} a whole number ≥ 1" + (", or leave it out for its default" if optional else "")
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{flag} must be a whole number, got {value!r}", hint=hint)
    if value < 1:
        raise UsageError(f"{flag} must be at least 1, got {value}", hint=hint)


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # a frozen dataclass normalizing its own fields in __post_init__


@dataclass(frozen=True, kw_only=True)
class ScanOptions:
    """How a scan runs and what it measures, checked and normalized when built (strings become enums, the
    α values a Grid), so that an impossible choice fails before anything is read.

    Raises (on construction):
        UsageError: an unknown choice, a value out of its range, or options that do not go together.
    """

    alphas: int | str | Sequence[float] = DEFAULT_ALPHAS  # a count, or the α values (``grid`` has the result)
    alpha_range: str | Sequence[float] | None = None  # (LO, HI) for a count, default (0, 1)
    groups: tuple[str, ...] = ()  # --groups values; empty: the whole-network curve alone
    hold: Hold = Hold.FINAL  # where tensors outside the moving set stay (groups only)
    mode: Mode = Mode.ONLY  # which tensors a group's curve moves (groups only)
    bn: BNPolicy = BNPolicy.AUTO
    bn_samples: int = 2048  # training examples that re-estimate the statistics under recompute
    splits: tuple[str, ...] | None = None  # None: test when the data has it, else every split
    samples: int | None = None  # a seeded subset of N examples per split; None: all
    seed: int = 0  # of --samples and of the calibration subset (seed + 1)
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    batch_size: int | None = None  # examples per forward pass; None: 256 on CPU, 1024 on CUDA
    chunk_size: int | None = None  # points per vmap chunk (batched); None: from free memory on CUDA, 8 on CPU
    dtype: DType = DType.FLOAT32
    strategy: Strategy = Strategy.AUTO
    memory_format: MemoryFormat = MemoryFormat.AUTO
    loss: str = "cross_entropy"  # cross_entropy, mse, or path/to/file.py:fn / package.module:fn
    tol: float = 0.0  # a path is monotone when its largest rise Δ ≤ tol
    bootstrap: int = DEFAULT_BOOTSTRAP  # resamples of the examples for the metrics' 95% intervals; 0: none
    per_example: bool = False  # keep every example's loss at every point (ScanResult.examples, per_example.npz)
    random_init: int | None = None  # seed of a fresh initialization appended as the path's last checkpoint
    refine: int = 0  # points added per curve and segment after the grid, where the curve is least resolved
    grid: Grid = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _set(self, "grid", parse_grid(self.alphas, self.alpha_range))
        _set(self, "hold", Hold.parse(self.hold, "--hold"))
        _set(self, "mode", Mode.parse(self.mode, "--mode"))
        _set(self, "bn", BNPolicy.parse(self.bn, "--bn"))
        _set(self, "dtype", DType.parse(self.dtype, "--dtype"))
        _set(self, "strategy", Strategy.parse(self.strategy, "--strategy"))
        _set(self, "memory_format", MemoryFormat.parse(self.memory_format, "--memory-format"))
        check_memory_format(self.memory_format, self.strategy)
        groups = check_groups(self.groups)
        _set(self, "groups", groups)
        if not groups:
            for flag, value, default in (("--hold", self.hold, Hold.FINAL), ("--mode", self.mode, Mode.ONLY)):
                if value is not default:
                    raise UsageError(
                        f"{flag} {value} applies to layer groups, and no --groups was given",
                        hint=f"add --groups (see `interpscan layers`), or drop {flag}",
                    )
        if self.splits is not None:
            splits = (self.splits,) if isinstance(self.splits, str) else tuple(self.splits)
            if not splits or not all(isinstance(s, str) and s for s in splits) or len(set(splits)) != len(splits):
                raise UsageError(
                    f"--split {','.join(map(str, splits))}: give each split once, e.g. test or train,test",
                    hint="the splits are the data's: train, test, or those a tensor file or factory names",
                )
            _set(self, "splits", splits)
        _positive(self.bn_samples, "--bn-samples", optional=False)
        _positive(self.samples, "--samples")
        _positive(self.batch_size, "--batch-size")
        _positive(self.chunk_size, "--chunk-size")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise UsageError(f"--seed must be a whole number, got {self.seed!r}", hint="e.g. --seed 0")
        if not 0 <= self.seed <= MAX_SEED:
            raise UsageError(f"--seed must be from 0 to 2**63 − 1, got {self.seed}", hint="e.g. --seed 0")
        if self.random_init is not None and (
            isinstance(self.random_init, bool)
            or not isinstance(self.random_init, int)
            or not 0 <= self.random_init <= MAX_SEED
        ):
            raise UsageError(
                f"--random-init must be a seed from 0 to 2**63 − 1, got {self.random_init!r}",
                hint="e.g. --random-init 0",
            )
        device = str(self.device).strip().lower()
        if not _DEVICE.fullmatch(device):
            raise UsageError(f"--device {self.device!r} is not a device", hint="use auto, cpu, cuda or cuda:N")
        _set(self, "device", device)
        try:
            tol = _float(self.tol) + 0.0  # + 0.0: -0 is 0
        except ValueError:
            tol = math.nan
        if not (math.isfinite(tol) and tol >= 0):
            raise UsageError(
                f"--tol must be a finite number ≥ 0, got {self.tol}",
                hint="Δ ≥ 0 always; a negative tolerance would call a flat path non-monotone",
            )
        _set(self, "tol", tol)
        if (
            isinstance(self.bootstrap, bool)
            or not isinstance(self.bootstrap, int)
            or not 0 <= self.bootstrap <= MAX_BOOTSTRAP
        ):
            raise UsageError(
                f"--bootstrap must be a whole number from 0 to {MAX_BOOTSTRAP:,}, got {self.bootstrap!r}",
                hint=f"{DEFAULT_BOOTSTRAP} resamples give stable 95% intervals; 0 turns them off",
            )
        if isinstance(self.refine, bool) or not isinstance(self.refine, int) or not 0 <= self.refine <= MAX_ALPHAS:
            raise UsageError(
                f"--refine must be a whole number from 0 to {MAX_ALPHAS:,}, got {self.refine!r}",
                hint="e.g. --refine 10: ten more points per curve where it changes fastest",
            )
        _check_loss(self.loss)


@dataclass(frozen=True, kw_only=True)
class ReadOptions:
    """How the inputs are read when they are named rather than given: the command line's ``--model-arg``,
    ``--key``, ``--unsafe-pickle``, ``--strict``, ``--trust-recorded-code``, ``--data-root``, ``--download``,
    ``--data-keys``, ``--normalize``, and how image folders stream: ``--workers``, ``--resize``, ``--crop``."""

    model_args: Mapping[str, Any] = field(default_factory=dict)
    key: str | None = None  # dotted path to the tensors inside both checkpoint files (e.g. EMA weights)
    unsafe_pickle: bool = False  # allow pickles that run code (whole pickled modules)
    strict: bool = True  # missing and unexpected tensors are errors, or tolerated and recorded
    trust_recorded_code: bool = False  # build a model whose code a checkpoint names
    data_root: Path | None = None
    download: bool = True  # fetch a named dataset that is not under data_root
    data_keys: tuple[str, str] | None = None  # INPUTS,TARGETS for tensor files and factories
    normalize: str = "auto"
    workers: int | None = None  # DataLoader worker processes of a streamed image folder (None: from the cores)
    resize: int | None = None  # the evaluation transform of image folders: shorter side, then centre crop
    crop: int | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and (
            isinstance(self.workers, bool) or not isinstance(self.workers, int) or not 0 <= self.workers <= 256
        ):
            raise UsageError(f"--workers must be a whole number from 0 to 256, got {self.workers!r}")
        if self.key is not None and not (isinstance(self.key, str) and self.key.strip(". ")):
            raise UsageError(
                f"--key {self.key!r} names no entry", hint="give a dotted path such as model_ema, or leave --key out"
            )


def _check_loss(text: str) -> None:
    """A built-in loss, or something shaped like ``path/to/file.py:fn`` / ``package.module:fn`` (imported
    later, with the other inputs)."""
    from .usercode import is_callable_spec

    if text.strip().replace("-", "_") in BUILTIN_LOSSES or is_callable_spec(text):
        return
    raise UsageError(
        f"--loss {text!r} is not a loss",
        hint=f"use {', '.join(BUILTIN_LOSSES)}, path/to/file.py:fn or package.module:fn",
    )


def _shown(text: str, limit: int = 60) -> str:
    """``text`` for a message: repr'd (control and direction characters escaped), long ones cut in the middle."""
    if len(text) > limit:
        text = f"{text[: limit // 2]}…{text[-limit // 4 :]}"
    return repr(text)


def check_path(path: str | os.PathLike[str], flag: str) -> Path:
    """A path as given on the command line or to the library, checked to be one a file system can hold, before
    any call that would fail on it with a traceback (Python's ``exists()`` raises for a too-long name).

    Raises:
        UsageError: a NUL byte, a name longer than NAME_MAX bytes or a path longer than PATH_MAX bytes, or a
            path that is not text.
    """
    try:
        text = os.fspath(path)
        if not isinstance(text, str):
            text = os.fsdecode(text)
        encoded = os.fsencode(text)
    except (TypeError, UnicodeError):
        raise UsageError(f"{flag} {path!r} is not a path", hint="give a file or directory name") from None
    if "\0" in text:
        raise UsageError(f"{flag} {_shown(text)} holds a NUL byte, which no path may", hint="check the name")
    longest = max(Path(text).parts, key=lambda part: len(os.fsencode(part)), default="")
    if len(os.fsencode(longest)) > NAME_MAX:
        raise UsageError(
            f"{flag}: the name {_shown(longest)} is {len(os.fsencode(longest)):,} bytes long, where file systems "
            f"allow {NAME_MAX}",
            hint="choose a shorter name",
        )
    if len(encoded) >= PATH_MAX:
        raise UsageError(
            f"{flag}: the path {_shown(text)} is {len(encoded):,} bytes long, where the system allows {PATH_MAX - 1:,}",
            hint="choose a shorter path",
        )
    return Path(text)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def check_label(text: Any, flag: str) -> str:
    """A name the user gives for something shown in tables and pages (a run's label, a split): non-empty, with
    no control characters (a newline would break the one-line tables) and no bidirectional overrides (which
    make a label read as something else).

    Raises:
        UsageError: an empty label, or one holding such characters.
    """
    value = str(text)
    if not value.strip():
        raise UsageError(f"{flag} {value!r} is empty", hint=f"give {flag} a name")
    bad = _CONTROL.search(value)
    if bad:
        raise UsageError(
            f"{flag} {_shown(value)} holds the control character {bad.group()!r}",
            hint=f"give {flag} a name of printable characters",
        )
    return value
