"""Every option of a scan, defined once: a typed field with its default, its help text and how the command line
spells it. The CLI builds its flags from these fields (cli.py), ``interpscan.scan`` takes them as keyword arguments
of the same names (checked against them by a test), and docs/cli.md is generated from the CLI's help.

Values are checked and normalized when the options are built (strings become enums, ``"train,test"`` a tuple,
the α values a Grid; values.py), so an impossible choice fails before anything is read. Messages name options
with ``errors.opt``: the library's words, or the flags where the CLI renders them (``FLAGS``).

No torch here: the CLI imports this module to build its signatures, and ``interpscan --help`` stays instant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any, Literal, TypeVar, get_type_hints

from .errors import UsageError, opt
from .values import (
    DEFAULT_ALPHAS,
    MAX_ALPHAS,
    Grid,
    check_data,
    check_device,
    check_groups,
    check_key,
    check_loss,
    check_margin,
    check_normalize,
    check_pixels,
    check_seed,
    check_splits,
    check_tol,
    check_workers,
    optional_path,
    optional_whole,
    parse_data_keys,
    parse_grid,
    parse_model_args,
    parse_samples,
    parse_span,
    whole,
)

DEFAULT_BOOTSTRAP = 1000  # resamples: the 2.5th and 97.5th percentiles move by a few % of the interval between seeds
MAX_BOOTSTRAP = 100_000

C = TypeVar("C", bound="Choice")


class Choice(str, Enum):
    """A closed choice: its value is what the command line takes and run.json records."""

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def parse(cls: type[C], value: Any, name: str) -> C:
        """The member whose value is ``value`` (a member or its string, any case); ``name`` is the option's.

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
        first = next(iter(cls)).value
        raise UsageError(f"{opt(name)} {value!r} is not one of {choices}", hint=f"use {opt(name, first)}")


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
    CHANNELS_LAST = "channels-last"  # NHWC: oneDNN's convolutions and max-pooling are faster so on CPU (see benchmarks)


class BNPolicy(Choice):
    """What a point's batch-norm running statistics are (docs/design.md, "Batch norm: the trap")."""

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


class Directions(Choice):
    """How the random directions of a surface around one network are scaled (Li et al. 2018)."""

    FILTER = "filter"  # each slice along the first dimension (a filter, a row) to the norm of the weights' slice
    LAYER = "layer"  # each tensor to the norm of the weights' tensor
    NONE = "none"  # as drawn, N(0, 1) per entry


# The spellings each choice accepts besides its members, for type checkers (a test checks them against the enums).
StrategyName = Literal["auto", "sequential", "batched", "prefix", "prefix-batched"]
MemoryFormatName = Literal["auto", "contiguous", "channels-last"]
BNPolicyName = Literal["auto", "interpolate", "recompute", "batch"]
DTypeName = Literal["float32", "bfloat16", "float16"]
HoldName = Literal["final", "init"]
ModeName = Literal["only", "all-but"]
DirectionsName = Literal["filter", "layer", "none"]
# α: a count of evenly spaced points, their values, or either as the command line's text ("21", "0,0.5,1")
Alphas = int | str | Sequence[float]
AlphaRange = str | Sequence[float]


def check_memory_format(memory_format: MemoryFormat, strategy: Strategy) -> None:
    """Channels-last goes with the strategies that loop over points; vmap's stacked weights have no 4-D layout.

    Raises:
        UsageError: channels-last with ``batched`` or ``prefix-batched``.
    """
    if memory_format is MemoryFormat.CHANNELS_LAST and strategy in (Strategy.BATCHED, Strategy.PREFIX_BATCHED):
        raise UsageError(
            f"{opt('memory_format', memory_format)} applies to the strategies that loop over points, not {strategy}",
            hint=f"use {opt('strategy', 'sequential')} or prefix with it, or {opt('memory_format', 'auto')}",
        )


# ----------------------------------------------------------------------------------------------- the registry

MODEL_PANEL, DATA_PANEL, PATH_PANEL, HOW_PANEL, OUTPUT_PANEL, PLANE_PANEL = (
    "Checkpoints and model",
    "Data",
    "The path",
    "How it runs",
    "Output",
    "The plane",
)


class _Same:
    """The command line's default is the library's."""

    def __repr__(self) -> str:
        return "SAME"


SAME: Any = _Same()


@dataclass(frozen=True)
class Option:
    """What a field of the option classes means and how the command line spells it (its field's metadata).

    ``help`` names other options with ``errors.opt``; the CLI renders them as flags, the library as names."""

    help: str
    panel: str
    convert: Callable[[Any], Any] | None = None  # the value given -> the field's value, checked
    flag: str | None = None  # the command line's name; None: --name-with-dashes
    short: str | None = None
    negatable: bool = False  # a switch with a --no- form (--strict/--no-strict), else one that turns it on
    cli_type: Any = None  # what the command line parses, where that is not the field's type
    cli_default: Any = SAME  # the command line's default where it differs from the library's (declared here)
    default_text: str | None = None  # the default as the help shows it, where the value alone would mislead
    metavar: str | None = None


def option(default: Any = MISSING, *, factory: Callable[[], Any] | None = None, **meta: Any) -> Any:
    """A field of an option class: its default (or ``factory``), and the Option that documents it."""
    metadata = {"interpscan": Option(**meta)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # a frozen dataclass normalizing its own fields in __post_init__


def _convert_fields(obj: Any) -> None:
    """Apply each field's ``convert`` to the value it was given."""
    for f in fields(obj):
        meta = f.metadata.get("interpscan")
        if meta is not None and meta.convert is not None:
            _set(obj, f.name, meta.convert(getattr(obj, f.name)))


def _switch(name: str) -> Callable[[Any], bool]:
    def convert(value: Any) -> bool:
        if not isinstance(value, bool):
            raise UsageError(f"{opt(name)} must be True or False, got {value!r}")
        return value

    return convert


def _choice(cls: type[Choice], name: str) -> Callable[[Any], Any]:
    return lambda value: cls.parse(value, name)


def _alphas(value: Any) -> Any:
    """A count given as text is the count (so "21" and 21 are one default); other values stay as given."""
    if isinstance(value, str) and value.strip().isdigit() and value.strip().isascii():
        return int(value)
    return value


def _count(name: str, high: int, hint: str) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
            raise UsageError(f"{opt(name)} must be a whole number from 0 to {high:,}, got {value!r}", hint=hint)
        return value

    return convert


def _random_init(value: Any) -> int | None:
    return None if value is None else check_seed(value, "random_init")


def _normalize(text: Any) -> str:
    check_normalize(text)  # parsed again against the data, where "auto" is resolved
    return str(text)


@dataclass(frozen=True, kw_only=True)
class Inputs:
    """The model and the data, as the command line names them (the library also takes objects for both)."""

    model: str | None = option(
        None,
        short="-m",
        panel=MODEL_PANEL,
        help="Zoo name (`interpscan models`), path/to/file.py:factory, package.module:factory, torchvision:NAME or "
        "timm:NAME. Optional when the checkpoint records its model, brings its own forward (TorchScript, "
        "torch.export), or matches exactly one zoo model.",
    )
    data: str | tuple[str, ...] | None = option(
        None,
        short="-d",
        panel=DATA_PANEL,
        convert=check_data,
        cli_type=list[str] | None,
        default_text="the dataset the checkpoints record",
        help="A named dataset (cifar10, cifar100, mnist, fashion-mnist; fashion-mnist-small is bundled; imagenet is "
        f"found under {opt('data_root')}, never downloaded), a tensor file (.pt, .npz, .safetensors) with inputs and "
        "targets, a folder of images with one sub-folder per class (needs Pillow), or path/to/file.py:factory / "
        "package.module:factory. Repeatable, for data in several places: SOURCE gives every split it holds, "
        "NAME=SOURCE one split named NAME (the source's split of that name, else its only or its test split): "
        "id=test.pt ood=shifted.pt; a file whose name holds = is given with its folder, ./a=b.pt. Needed unless "
        "the checkpoints record their dataset (as `interpscan demo`'s do).",
    )

    def __post_init__(self) -> None:
        _convert_fields(self)


@dataclass(frozen=True, kw_only=True)
class ReadOptions:
    """How the inputs are read when they are named rather than given: checkpoints, the model and the data."""

    model_args: dict[str, Any] = option(
        factory=dict,
        flag="--model-arg",
        short="-a",
        panel=MODEL_PANEL,
        convert=parse_model_args,
        cli_type=list[str] | None,
        cli_default=None,
        metavar="KEY=VALUE",
        help="Keyword arguments for the model factory: on the command line KEY=VALUE (repeatable; values are Python "
        "literals), in the library a dict.",
    )
    key: str | None = option(
        None,
        panel=MODEL_PANEL,
        convert=check_key,
        default_text="the state dict itself, or under state_dict, model_state_dict, model, module, net",
        help="Dotted path to the weights inside the checkpoint files, e.g. model_ema for averaged weights.",
    )
    unsafe_pickle: bool = option(
        False,
        panel=MODEL_PANEL,
        convert=_switch("unsafe_pickle"),
        help="Load pickles that name Python objects (torch.save(model)). Unpickling runs code the file names: only "
        "for files you trust.",
    )
    strict: bool = option(
        True,
        panel=MODEL_PANEL,
        negatable=True,
        convert=_switch("strict"),
        help=f"Missing and unexpected tensors are errors; {opt('strict', False)} fills and ignores them instead.",
    )
    trust_recorded_code: bool = option(
        False,
        panel=MODEL_PANEL,
        convert=_switch("trust_recorded_code"),
        help="Build the model a checkpoint records even when it names Python code (path.py:factory, "
        "module:factory), which is then imported and called: only for checkpoints you trust. Zoo models need no "
        "flag.",
    )
    data_root: Path | None = option(
        None,
        panel=DATA_PANEL,
        convert=lambda value: optional_path(value, "data_root"),
        default_text="$XDG_CACHE_HOME/interpscan or ~/.cache/interpscan",
        help="Where named datasets live.",
    )
    download: bool = option(
        True,
        panel=DATA_PANEL,
        negatable=True,
        convert=_switch("download"),
        help=f"Download a named dataset into {opt('data_root')} when it is not there (size and md5 checked).",
    )
    data_keys: tuple[str, str] | None = option(
        None,
        panel=DATA_PANEL,
        convert=parse_data_keys,
        cli_type=str | None,
        metavar="INPUTS,TARGETS",
        help="The names of inputs and targets in a tensor file or factory dict.",
    )
    normalize: str = option(
        "auto",
        panel=DATA_PANEL,
        convert=_normalize,
        help="auto (the dataset's standard mean/std), none, or MEAN,STD; per channel, separate values by / "
        "(0.4914/0.4822/0.4465,0.2470/0.2435/0.2616).",
    )
    workers: int | None = option(
        None,
        panel=DATA_PANEL,
        convert=check_workers,
        default_text="the cores less one, at most 8, shared among torchrun's processes on a node",
        help="DataLoader worker processes decoding a streamed image folder.",
    )
    resize: int | None = option(
        None,
        panel=DATA_PANEL,
        convert=lambda value: check_pixels(value, "resize"),
        help=f"Image folders: resize the shorter side to this many pixels, then {opt('crop')}; the folder streams "
        f"({opt('data', 'imagenet')}: 256).",
    )
    crop: int | None = option(
        None,
        panel=DATA_PANEL,
        convert=lambda value: check_pixels(value, "crop"),
        help=f"Image folders: centre crop to N × N pixels ({opt('data', 'imagenet')}: 224).",
    )

    def __post_init__(self) -> None:
        _convert_fields(self)


def _check_refine(points: int, alphas: int) -> None:
    """``refine`` asks for no more than its rounds can add on the grid (else far fewer would be added while the
    run said the number asked for).

    Raises:
        UsageError: more points than ``refine.most_added`` on this grid.
    """
    from .refine import ROUNDS, alphas_for, largest_refine, most_added

    most = most_added(alphas - 1, points)
    if most < points:
        fits = largest_refine(alphas - 1, points)
        raise UsageError(
            f"{opt('refine', points)} would add only {most:,} points per curve on a grid of {alphas} α: each of its "
            f"{ROUNDS} rounds adds at most one point per interval",
            hint=f"ask for {opt('refine', fits)} at most, or give {opt('alphas', alphas_for(points))} or more",
        )


@dataclass(frozen=True, kw_only=True)
class ScanOptions:
    """How a scan runs and what it measures, checked and normalized when built (strings become enums, the α
    values a Grid), so that an impossible choice fails before anything is read.

    Raises (on construction):
        UsageError: an unknown choice, a value out of its range, or options that do not go together.
    """

    splits: tuple[str, ...] | None = option(
        None,
        flag="--split",
        panel=DATA_PANEL,
        convert=check_splits,
        cli_type=str | None,
        default_text="test when the data has it, else every split",
        help="Splits to evaluate, comma-separated: train, test, train,test, or any split the data names.",
    )
    samples: int | None = option(
        None,
        panel=DATA_PANEL,
        convert=parse_samples,
        cli_type=str | None,
        default_text="all",
        help="Evaluate a seeded subset of N examples per split, or all.",
    )
    seed: int = option(
        0,
        panel=DATA_PANEL,
        convert=lambda value: check_seed(value, "seed"),
        help=f"Seed for {opt('samples')}, the BN calibration subset, the bootstrap and a plane's random directions.",
    )
    loss: str = option(
        "cross_entropy",
        panel=DATA_PANEL,
        convert=check_loss,
        help="cross_entropy (with accuracy), mse (regression), next_token (a causal language model, per token; chosen "
        "on its own for a transformers causal LM), or a per-sample loss path/to/file.py:fn or package.module:fn, "
        "fn(outputs, targets) -> (batch,).",
    )
    alphas: Alphas = option(
        DEFAULT_ALPHAS,
        panel=PATH_PANEL,
        convert=_alphas,
        cli_type=str,
        help="Number of evenly spaced points, or an explicit list such as 0,0.5,0.9,1. α=0 and α=1 are always "
        "included.",
    )
    alpha_range: AlphaRange | None = option(
        None,
        panel=PATH_PANEL,
        cli_type=str | None,
        metavar="LO,HI",
        default_text="0,1",
        help="The range a counted grid spans, e.g. -0.5,1.5.",
    )
    refine: int = option(
        0,
        panel=PATH_PANEL,
        convert=_count("refine", MAX_ALPHAS, "e.g. 10: ten more points per curve where it changes fastest"),
        metavar="N",
        help="Add N points per curve (and segment) after the grid, in rounds, where the curve is least resolved: the "
        "largest change between neighbours, around the largest rise, the barrier peak and the plateau's foot. "
        "results.csv marks them (refined); metrics use every point.",
    )
    random_init: int | None = option(
        None,
        panel=PATH_PANEL,
        convert=_random_init,
        metavar="SEED",
        help="Append a fresh initialization of the model (its factory after torch.manual_seed(SEED)) as the path's "
        "last checkpoint: init → final → random init. Needs a model interpscan builds.",
    )
    groups: tuple[str, ...] = option(
        (),
        short="-g",
        panel=PATH_PANEL,
        convert=check_groups,
        cli_type=list[str] | None,
        cli_default=None,
        help="Layer groups (repeatable): a glob such as 'layer*' (one group per matched module), NAME=PAT[,PAT,!PAT] "
        "(one named group), or @top, @leaves, @depth:N. See `interpscan layers`.",
    )
    hold: Hold = option(
        Hold.FINAL,
        panel=PATH_PANEL,
        convert=_choice(Hold, "hold"),
        help=f"With {opt('groups')}: where tensors outside the moving set stay (final: the seed paper).",
    )
    mode: Mode = option(
        Mode.ONLY,
        panel=PATH_PANEL,
        convert=_choice(Mode, "mode"),
        help=f"With {opt('groups')}: only (just the group moves) or all-but (everything except the group).",
    )
    bn: BNPolicy = option(
        BNPolicy.AUTO,
        panel=PATH_PANEL,
        convert=_choice(BNPolicy, "bn"),
        help="Batch-norm policy: interpolate, recompute, batch, or auto (recompute when the model has BN and the data "
        "a train split).",
    )
    bn_samples: int = option(
        2048,
        panel=PATH_PANEL,
        convert=lambda value: whole(value, "bn_samples", hint=f"give {opt('bn_samples')} a whole number ≥ 1"),
        help=f"Training examples used to re-estimate BN statistics per point ({opt('bn', 'recompute')}).",
    )
    tol: float = option(
        0.0, panel=PATH_PANEL, convert=check_tol, help="A path is monotone when its largest rise Δ ≤ tol."
    )
    bootstrap: int = option(
        DEFAULT_BOOTSTRAP,
        panel=PATH_PANEL,
        convert=_count(
            "bootstrap", MAX_BOOTSTRAP, f"{DEFAULT_BOOTSTRAP} resamples give stable 95% intervals; 0 turns them off"
        ),
        help="Resamples of the examples behind each shape metric's 95% interval (summary.csv's *_ci_low, "
        "*_ci_high, rise_significant); 0 skips them.",
    )
    strategy: Strategy = option(
        Strategy.AUTO,
        panel=HOW_PANEL,
        convert=_choice(Strategy, "strategy"),
        help=f"auto (with {opt('groups')}: prefix-batched on CUDA, prefix on CPU; else batched on CUDA, sequential on "
        "CPU), sequential, batched (vmap over chunks of points), prefix (sequential, sharing the forward pass up to "
        "each group), or prefix-batched (that sharing, the rest vmapped over a group's points). Every strategy gives "
        "the same numbers.",
    )
    memory_format: MemoryFormat = option(
        MemoryFormat.AUTO,
        panel=HOW_PANEL,
        convert=_choice(MemoryFormat, "memory_format"),
        help="Layout of 4-D tensors: auto (channels-last for conv nets on CPU, where it is faster: see benchmarks; "
        "else contiguous), contiguous, or channels-last. Both agree to float32 rounding.",
    )
    device: str = option("auto", panel=HOW_PANEL, convert=check_device, help="auto, cpu, cuda or cuda:N.")
    batch_size: int | None = option(
        None,
        panel=HOW_PANEL,
        convert=lambda value: optional_whole(value, "batch_size"),
        default_text="256 on CPU, 1024 on CUDA",
        help="Examples per forward pass.",
    )
    chunk_size: int | None = option(
        None,
        panel=HOW_PANEL,
        convert=lambda value: optional_whole(value, "chunk_size"),
        default_text="from free memory on CUDA, 8 on CPU",
        help="Points per vmap chunk (the batched strategies).",
    )
    dtype: DType = option(
        DType.FLOAT32,
        panel=HOW_PANEL,
        convert=_choice(DType, "dtype"),
        help="Precision of the forward pass (autocast; interpolation and the loss stay float32).",
    )
    per_example: bool = option(
        False,
        flag="--save-per-example",
        panel=OUTPUT_PANEL,
        convert=_switch("per_example"),
        help="Keep every example's loss (and correctness) at every point: ScanResult.examples, and per_example.npz "
        "in the output directory (np.load; keys CURVE/SPLIT/alpha, /loss, /correct), for your own statistics.",
    )
    grid: Grid = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _convert_fields(self)
        _set(self, "grid", parse_grid(self.alphas, self.alpha_range))
        if self.refine:
            _check_refine(self.refine, len(self.grid.alphas))
        check_memory_format(self.memory_format, self.strategy)
        if not self.groups:
            for name, value, default in (("hold", self.hold, Hold.FINAL), ("mode", self.mode, Mode.ONLY)):
                if value is not default:
                    raise UsageError(
                        f"{opt(name, value)} applies to layer groups, and no {opt('groups')} was given",
                        hint=f"add {opt('groups')} (see `interpscan layers`), or drop {opt(name)}",
                    )


@dataclass(frozen=True, kw_only=True)
class OutputOptions:
    """Where a scan's files go. Without ``out`` the library writes nothing and returns the result; with it, the
    scan writes there as ``interpscan run`` does, saves its finished batches as it goes, and an interrupted scan
    continues with ``resume``."""

    out: Path | None = option(
        None,
        short="-o",
        panel=OUTPUT_PANEL,
        convert=lambda value: optional_path(value, "out"),
        cli_type=Path,
        cli_default=Path("interpscan-out"),
        help="Output directory: results.csv, summary.csv, run.json, results.html (the library writes nothing "
        "without it).",
    )
    force: bool = option(
        False,
        panel=OUTPUT_PANEL,
        convert=_switch("force"),
        help="Write into a non-empty output directory, replacing only files interpscan wrote there (never the "
        "user's, never through a link).",
    )
    resume: bool = option(
        False,
        panel=OUTPUT_PANEL,
        convert=_switch("resume"),
        help=f"Finish a scan that was interrupted (Ctrl-C, SIGTERM) in {opt('out')}: the same command, plus "
        f"{opt('resume', True)}.",
    )
    html: bool = option(True, panel=OUTPUT_PANEL, negatable=True, convert=_switch("html"), help="Write results.html.")

    def __post_init__(self) -> None:
        _convert_fields(self)
        if self.resume and self.out is None:
            raise UsageError(
                f"{opt('resume', True)} continues the scan saved in an output directory, and no {opt('out')} was given",
                hint=f"pass the {opt('out')} of the interrupted scan",
            )


def _directions(value: Any) -> Directions | None:
    return None if value is None else Directions.parse(value, "directions")


def _dims(value: Any) -> int:
    if value not in (1, 2) or isinstance(value, bool):
        raise UsageError(f"{opt('dims')} must be 1 or 2, got {value!r}", hint=f"{opt('dims', 1)}: a random line")
    return int(value)


MAX_GRID = 201  # points per side: 201² networks evaluated on every batch is already hours on a CPU


@dataclass(frozen=True, kw_only=True)
class PlaneOptions:
    """What ``interpscan plane`` and ``interpscan trajectory`` add to a scan's options: the grid of points over
    the plane and, around one checkpoint, its random directions (planes.py). Checked when built."""

    grid: int = option(
        21,
        panel=PLANE_PANEL,
        convert=lambda value: whole(value, "grid", low=2, high=MAX_GRID, hint=f"e.g. {opt('grid', 21)}"),
        metavar="N",
        help="N × N points over the plane (N points over the line with one direction); each checkpoint's own "
        "point is added when the lattice misses it.",
    )
    margin: float = option(
        0.2,
        panel=PLANE_PANEL,
        convert=check_margin,
        help="Around checkpoints: their bounding box widened by this share of its size on each side.",
    )
    directions: Directions | None = option(
        None,
        panel=PLANE_PANEL,
        convert=_directions,
        cli_type=str | None,
        default_text="filter, with one checkpoint",
        help="With one checkpoint, random Gaussian directions around it, each scaled per slice along its first "
        "dimension to the weights' slice norm (filter), per tensor (layer), or as drawn (none). Seeded by "
        f"{opt('seed')}.",
    )
    keep_1d: bool = option(
        False,
        flag="--keep-1d",
        panel=PLANE_PANEL,
        convert=_switch("keep_1d"),
        help="Give biases and norm-layer weights (tensors of one dimension) random directions too; by default "
        "they stay at the checkpoint's values (tomgoldstein's --xignore biasbn).",
    )
    xy_range: tuple[float, float] = option(
        (-1.0, 1.0),
        flag="--range",
        panel=PLANE_PANEL,
        convert=lambda value: parse_span(value, "xy_range"),
        cli_type=str,
        cli_default="-1,1",
        metavar="LO,HI",
        help="With directions: the coordinates x (and y) span, in units of the directions.",
    )
    dims: int = option(
        2,
        panel=PLANE_PANEL,
        convert=_dims,
        help="With directions: 2 for a surface, 1 for the random line θ + x·d.",
    )

    def __post_init__(self) -> None:
        _convert_fields(self)


OPTION_CLASSES: tuple[type, ...] = (Inputs, ReadOptions, ScanOptions, OutputOptions)
# the options of planes and trajectories beyond a scan's (not options of `run`)
PLANE_CLASSES: tuple[type, ...] = (PlaneOptions,)


@dataclass(frozen=True)
class Param:
    """One option as the surfaces see it: its name, type, default and Option."""

    name: str
    type: Any  # the field's type, resolved
    default: Any  # the library's default (MISSING for none)
    meta: Option

    @property
    def flag(self) -> str:
        return self.meta.flag or "--" + self.name.replace("_", "-")

    @property
    def cli_default(self) -> Any:
        """The command line's default, as its parser takes it."""
        if self.meta.cli_default is not SAME:
            return self.meta.cli_default
        value = self.default
        if isinstance(value, tuple) and self.meta.cli_type is str | None:
            return ",".join(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and self.meta.cli_type is str:
            return str(value)
        return value


def _default(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def params(cls: type) -> Iterator[Param]:
    """The options of an option class, in declaration order."""
    hints = get_type_hints(cls)
    for f in fields(cls):
        meta = f.metadata.get("interpscan")
        if meta is not None:
            yield Param(f.name, hints[f.name], _default(f), meta)


def all_params() -> dict[str, Param]:
    """Every option of every option class, by name."""
    return {p.name: p for cls in OPTION_CLASSES for p in params(cls)}


def plane_params() -> dict[str, Param]:
    """The options planes and trajectories add, by name."""
    return {p.name: p for cls in PLANE_CLASSES for p in params(cls)}


# The command line's words for the library's: what errors.render needs to speak in flags. The arguments are
# named as `--help` shows them, and the options of commands other than `run` (plot, compare, demo) as their
# flags; every scan option's flag comes from its field.
POSITIONAL = {"init": "INIT", "final": "FINAL", "checkpoints": "CHECKPOINT", "ckpt": "CKPT", "results": "RESULTS"}
COMMAND_FLAGS = {name: f"--{name}" for name in ("label", "split", "format", "plotlyjs", "epochs")}


def flags() -> dict[str, str]:
    """Parameter name -> the command line's spelling, for every option and argument a message may name."""
    known = {**all_params(), **plane_params()}
    return {**POSITIONAL, **COMMAND_FLAGS, **{name: p.flag for name, p in known.items()}}


def split(values: Mapping[str, Any]) -> tuple[Inputs, ReadOptions, ScanOptions, OutputOptions]:
    """Values by option name (any subset; the rest keep their defaults) into the four option objects, each checked.

    Raises:
        UsageError: a name that is no option, or a value any option class refuses.
    """
    known = all_params()
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise UsageError(f"{unknown[0]!r} is not an option of a scan", hint="see help(interpscan.scan)")
    parts = []
    for cls in OPTION_CLASSES:
        mine = {p.name: values[p.name] for p in params(cls) if p.name in values}
        parts.append(cls(**mine))
    inputs, read, scan, output = parts
    return inputs, read, scan, output


def _words(p: Param, value: Any) -> list[str]:
    """The command line's words that give option ``p`` the value ``value``."""
    if isinstance(value, bool):
        if p.meta.negatable:
            return [p.flag if value else f"--no-{p.flag.removeprefix('--')}"]
        return [p.flag] if value else []
    if value is None:
        return []
    if isinstance(value, Mapping):  # model_args: one KEY=VALUE each, values as Python literals
        return [w for k, v in value.items() for w in (p.flag, f"{k}={v!r}")]
    if isinstance(value, (tuple, list)):
        if p.meta.cli_type is str or p.meta.cli_type == (str | None):
            return [p.flag, ",".join(map(str, value))]
        return [w for v in value for w in (p.flag, str(v))]
    return [p.flag, str(value.value if isinstance(value, Enum) else value)]


def command_words(*objects: Any) -> list[str]:
    """The flags that give option objects (Inputs, ReadOptions, ScanOptions, OutputOptions) their values: those
    that differ from the command line's defaults, in declaration order. What ``interpscan run`` needs besides
    its checkpoints to make the same scan."""
    words: list[str] = []
    for obj in objects:
        for p in params(type(obj)):
            value = getattr(obj, p.name)
            if value != p.default and value != p.meta.cli_default:
                words += _words(p, value)
    return words


def describe(*classes: type, indent: str = "        ", width: int = 116) -> str:
    """The options of ``classes`` as a docstring's Args entries (library words), from their help texts."""
    import textwrap

    from .errors import render

    entries = []
    for p in (p for cls in classes for p in params(cls)):
        default = p.meta.default_text or repr(p.default.value if isinstance(p.default, Enum) else p.default)
        text = f"{p.name}: {render(p.meta.help)} Default: {default}."
        entries.append(textwrap.fill(text, width, initial_indent=indent, subsequent_indent=indent + "    "))
    return "\n".join(entries)
