"""run.json as typed values: the manifest of one scan, which says how every number was made. ``api`` builds it,
``Manifest.to_json`` is what run.json holds, and ``Manifest.from_json`` reads it back for every reader.

Every attribute is named as its key in run.json and nested as there (``manifest.bn.policy`` is run.json's
``bn.policy``), so docs/outputs.md describes both. Keys that a version of interpscan added after the first have
defaults (what held before the key existed, or None where that is not known): a run.json written by any earlier
version reads back. A key every version wrote that is missing, or a value of the wrong type, is an OutputError
that names the key and what was expected; keys this version does not know are left aside.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from .errors import OutputError
from .values import Normalization

_R = TypeVar("_R", bound="Record")

# A field with this metadata is written only when its value is not empty (an empty tuple, False, None; a number
# always is): keys that run.json has held only when they say something since they were added.
_WHEN_SET = {"when_set": True}


def _when_set(default: Any) -> Any:
    return field(default=default, metadata=_WHEN_SET)


class _Mismatch(Exception):
    """A value of run.json that is not what its key takes (or a key that is missing): ``where`` is its dotted path."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where} {problem}")
        self.where, self.problem = where, problem


@dataclass(frozen=True)
class Record:
    """A part of the manifest: a frozen dataclass whose fields are the keys of one JSON object, in run.json's
    order. ``to_json`` writes it; ``from_json`` reads it, checking each value against the field's type; a field
    with a default is a key older files may lack."""

    def to_json(self) -> dict[str, Any]:
        """This part as run.json holds it: plain dicts, lists, strings, numbers, booleans and None."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("when_set") and (value is None or value is False or value == ()):
                continue  # empty; a number is said even when 0
            out[f.name] = _to_json(value)
        return out

    @classmethod
    def from_json(cls: type[_R], obj: Any, *, source: str = "run.json") -> _R:
        """This part from its JSON object (as ``json.load`` gives it).

        Raises:
            OutputError: a key every version writes is missing, or a value is not of its key's type; the message
                names the key (``bn.policy``) and what it takes, prefixed with ``source``.
        """
        try:
            return cls._read(obj, "")
        except _Mismatch as exc:
            raise OutputError(
                f"{source}: {exc.where} {exc.problem}",
                hint="run.json is the record `interpscan run` writes beside results.csv: restore it from the run, "
                "or remove it to read the tables alone",
            ) from None

    @classmethod
    def _read(cls: type[_R], obj: Any, where: str) -> _R:
        if not isinstance(obj, Mapping):
            raise _Mismatch(where or "the manifest", f"is {_shown(obj)}, expected an object")
        hints = _hints(cls)
        values = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]  # a Record's subclass is a dataclass
            at = f"{where}.{f.name}" if where else f.name
            if f.name in obj:
                values[f.name] = _read(hints[f.name], obj[f.name], at)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise _Mismatch(at, "is missing")
        return cls(**values)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The fields' types of a Record class, evaluated once."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _to_json(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    return value


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= 40 else text[:40] + "…"


def _read(tp: Any, value: Any, where: str) -> Any:
    """``value`` from run.json as type ``tp`` (tuples for lists, Records for objects), or _Mismatch."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return _to_json(value)  # a copy: free-form JSON (a model's arguments)
    if origin in (typing.Union, types.UnionType):
        return _read_union(args, value, where)
    if origin is Literal:
        if value in args:
            return value
        raise _Mismatch(where, f"is {_shown(value)}, expected {_expected(tp)}")
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp._read(value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise _Mismatch(where, f"is {_shown(value)}, expected {_expected(tp)}")
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) != len(value):
            raise _Mismatch(where, f"is {_shown(value)}, expected {_expected(tp)}")
        return tuple(_read(t, v, f"{where}[{i}]") for i, (t, v) in enumerate(zip(items, value, strict=True)))
    if origin is Mapping:
        if not isinstance(value, dict):
            raise _Mismatch(where, f"is {_shown(value)}, expected {_expected(tp)}")
        return {k: _read(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if _is(tp, value):
        return float(value) if tp is float else value
    raise _Mismatch(where, f"is {_shown(value)}, expected {_expected(tp)}")


def _read_union(args: tuple[Any, ...], value: Any, where: str) -> Any:
    if value is None and type(None) in args:
        return None
    options = [a for a in args if a is not type(None)]
    expected = f"is {_shown(value)}, expected {' or '.join(_expected(a) for a in args)}"
    if len(options) == 1:  # T | None: T's own message where something inside the value is wrong
        try:
            return _read(options[0], value, where)
        except _Mismatch as exc:
            raise exc if exc.where != where or exc.problem == "is missing" else _Mismatch(where, expected) from None
    for option in options:
        try:
            return _read(option, value, where)
        except _Mismatch:
            continue
    raise _Mismatch(where, expected)


def _is(tp: Any, value: Any) -> bool:
    """A JSON scalar of type ``tp`` (an int is a float too; a boolean is neither)."""
    if isinstance(value, bool):
        return tp is bool
    if tp is float:
        return isinstance(value, (int, float))
    return tp in (str, int) and isinstance(value, tp)


def _expected(tp: Any) -> str:
    """What a value of type ``tp`` looks like in JSON, for a message."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(a) for a in args)
    if origin is Literal:
        return " or ".join(json.dumps(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        return f"a list of {len(args)} values"
    if origin is Mapping or (isinstance(tp, type) and issubclass(tp, Record)):
        return "an object"
    return {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}.get(tp, str(tp))


def _plural(tp: Any) -> str:
    words = {str: "strings", int: "whole numbers", float: "numbers", bool: "booleans"}
    return words.get(tp, "lists" if typing.get_origin(tp) is tuple else "objects")


def json_safe(obj: Any) -> Any:
    """NaN and infinities are not JSON: write them as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


# --- the parts, in run.json's order ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Checkpoint(Record):
    """One checkpoint as it was read: the file, its format and layout, what was skipped or stripped."""

    label: str | None = _when_set(None)  # in ``path.checkpoints`` only: init, final, c2, …, random-init
    path: str  # the file or folder; "in-memory" for a state dict passed to the library
    size: int  # bytes, all files together for a sharded checkpoint
    sha256: str  # of the file; for several files, of their "sha256  name" lines
    format: str  # torch-zip, safetensors, safetensors-sharded, npz, torchscript, in-memory, …
    layout: str | None = None  # state-dict, nested, lightning, module, program
    container_key: str | None  # the dotted path of the dict the tensors were found in ("state_dict")
    tensor_count: int
    dtypes: Mapping[str, int]  # dtype name -> number of tensors
    ignored_keys: tuple[str, ...]  # entries skipped (optimizer state, epoch, …)
    prefixes_stripped: tuple[str, ...]  # "module.", "_orig_mod.", …
    alternatives: tuple[str, ...] = _when_set(())  # other tensor dicts in the file, reachable with --key
    aliases: tuple[tuple[str, ...], ...] = _when_set(())  # names that share one tensor in the file
    files: tuple[Mapping[str, Any], ...] = _when_set(())  # path, size and sha256 of each file of a sharded one
    averaged: tuple[str, ...] = _when_set(())  # entries that hold averaged (EMA) weights
    weights: str | None = _when_set(None)  # with ``averaged``: "averaged" or "live", which were read

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", tuple(_to_json(f) for f in self.files))  # as it reads back


@dataclass(frozen=True, kw_only=True)
class Checkpoints(Record):
    init: Checkpoint
    final: Checkpoint


@dataclass(frozen=True, kw_only=True)
class CheckpointPath(Record):
    """Every checkpoint of the path in order: segment i runs from checkpoint i − 1 to checkpoint i."""

    segments: int
    checkpoints: tuple[Checkpoint, ...]  # each with its label; init and final are the first two
    random_init: int | None = None  # the seed of a fresh initialization appended to the path


@dataclass(frozen=True, kw_only=True)
class WeightDtypes(Record):
    """The dtype story: each checkpoint's dtypes, the model's, and how the path is computed. In run.json the
    checkpoints' counts sit beside the other keys, under their labels."""

    checkpoints: Mapping[str, Mapping[str, int]]  # label -> dtype name -> number of tensors
    model: Mapping[str, int]  # the model's own tensors, which each point's weights are written into
    interpolated_in: str  # the engine lerps floating tensors in float32 whatever the files hold
    integers_from: str  # integer tensors (num_batches_tracked) come from this checkpoint

    _OWN: ClassVar[tuple[str, ...]] = ("model", "interpolated_in", "integers_from")

    def to_json(self) -> dict[str, Any]:
        return {**_to_json(self.checkpoints), **{k: v for k, v in super().to_json().items() if k in self._OWN}}

    @classmethod
    def _read(cls, obj: Any, where: str) -> WeightDtypes:
        if not isinstance(obj, Mapping):
            raise _Mismatch(where, f"is {_shown(obj)}, expected an object")
        labels = {k: v for k, v in obj.items() if k not in cls._OWN}
        return super()._read({**{k: obj[k] for k in cls._OWN if k in obj}, "checkpoints": labels}, where)


@dataclass(frozen=True, kw_only=True)
class Weights(Record):
    """How the checkpoints' tensors became the model's: the options that chose them, ties, what was filled."""

    key: str | None  # --key: the entry read
    strict: bool
    unsafe_pickle: bool
    batched_obstacle: str | None  # why the batched strategy cannot evaluate this model, if it cannot
    tied: tuple[tuple[str, ...], ...]  # names that share one tensor in the model
    filled: Mapping[str, Mapping[str, str]]  # label -> name -> where its value came from
    ignored: Mapping[str, tuple[str, ...]]  # label -> names the model lacks, dropped (--no-strict)
    dtypes: WeightDtypes


@dataclass(frozen=True, kw_only=True)
class Model(Record):
    spec: str  # as --model takes it: "cnn", "net.py:make", "torchvision:resnet18"
    kind: str  # zoo, file, module, torchvision, timm; or a checkpoint's own forward pass (torchscript, …)
    args: Mapping[str, Any]  # the factory's keyword arguments, as JSON holds them (a tuple is a list)
    origin: str  # how the model was found, in words
    source: str | None = None  # given, --model, checkpoint, recorded or detected
    runs_recorded_code: bool = False  # code imported because a checkpoint named it (--trust-recorded-code)
    parameters: int
    tensors: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "args", _to_json(self.args))  # free-form: as it reads back, so that equal is equal


@dataclass(frozen=True, kw_only=True)
class Transform(Record):
    resize: int | None
    crop: int | None


@dataclass(frozen=True, kw_only=True)
class DataSplit(Record):
    n: int  # examples evaluated (tokens for a causal language model)
    indices: tuple[int, ...] | Literal["all"]  # the subset drawn by --samples, or every example


@dataclass(frozen=True, kw_only=True)
class DataSource(Record):
    given: str  # the data entry as given: SOURCE or NAME=SOURCE
    name: str
    kind: str
    location: str | None
    normalization: Normalization | None
    splits: Mapping[str, str]  # the scan's split -> the source's split it reads


@dataclass(frozen=True, kw_only=True)
class Data(Record):
    name: str
    kind: str | None = None  # named, file, folder, tensors, stream, …; several (sources of different kinds)
    location: str | None
    transform: Transform | None = None
    normalization: Normalization | None  # (mean, std), each one number or one per channel
    seed: int
    splits: Mapping[str, DataSplit]
    sources: tuple[DataSource, ...] = _when_set(())  # data from several places (or one NAME=SOURCE): each


@dataclass(frozen=True, kw_only=True)
class BN(Record):
    policy: str  # recompute, interpolate, batch or train
    reason: str
    batchnorm_modules: int
    calibration_samples: int
    calibration_indices: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class Grid(Record):
    alphas: tuple[float, ...]
    endpoints_added: tuple[float, ...]


@dataclass(frozen=True, kw_only=True)
class Refine(Record):
    points: int  # asked for per curve and segment
    rounds: tuple[int, ...]  # each round's size
    max_rounds: int
    # the points added in all (curves × segments), only when fewer than asked: a flat curve had nothing to resolve
    added: int | None = _when_set(None)


@dataclass(frozen=True, kw_only=True)
class Group(Record):
    name: str
    source: str  # the --groups value it came from
    tensors: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Groups(Record):
    specs: tuple[str, ...]  # the --groups values
    hold: str
    mode: str
    groups: tuple[Group, ...]
    rest: tuple[str, ...]  # tensors in no group, held fixed


@dataclass(frozen=True, kw_only=True)
class Bootstrap(Record):
    replicates: int
    seed: int
    level: float
    unit: str  # what is resampled: example


@dataclass(frozen=True, kw_only=True)
class Loss(Record):
    name: str
    accuracy: bool  # whether accuracy is defined
    per_token: bool = _when_set(False)  # a causal language model: n counts tokens, perplexity is exp(loss)


@dataclass(frozen=True, kw_only=True)
class Engine(Record):
    batch_size: int
    chunk_size: int | None
    chunk_shrinks: int = 0  # times an out-of-memory error halved the chunk
    dtype: str = "float32"
    unique_points: int
    calibration_batches: int
    processes: int = 1  # under torchrun, the processes that shared the scan


@dataclass(frozen=True, kw_only=True)
class Timings(Record):
    calibration_s: float
    evaluation_s: float
    total_s: float


@dataclass(frozen=True, kw_only=True)
class PlaneAnchor(Record):
    label: str
    index: int  # among the checkpoints given
    x: float
    y: float
    on_plane: bool  # its own network lies on the plane (a trajectory's checkpoints before the last are projected)


@dataclass(frozen=True, kw_only=True)
class Plane(Record):
    """How a plane run's surface was made (planes.py): ``x``, ``y`` of results.csv are coordinates in this basis."""

    kind: str  # checkpoints, directions or trajectory
    basis: str  # how it was built, in words
    dims: int  # 2, or 1 for a random line
    anchors: tuple[PlaneAnchor, ...]
    grid: int  # points per side
    margin: float | None  # the checkpoints' box widened by this share per side (checkpoints, trajectory)
    x_range: tuple[float, ...]
    y_range: tuple[float, ...] | None
    seed: int | None  # of the random directions
    normalization: str | None  # filter, layer or none (directions)
    keep_1d: bool | None  # whether tensors of one dimension got directions
    orthogonalised: bool  # whether u and v are orthogonal by construction
    explained_variance_ratio: tuple[float, ...] | None  # trajectory: of u and v
    bn_clamped_points: int  # points whose interpolated BN running variance was clamped at 0


@dataclass(frozen=True, kw_only=True)
class Manifest(Record):
    """run.json: how every number of a run was made. ``to_json()`` is the file's content; ``manifest["bn"]``
    indexes that dict, as code written against run.json's dict does."""

    interpscan: str  # interpscan's version
    torch: str
    python: str
    platform: str
    argv: tuple[str, ...] | None  # the command line; None for a scan made by the library
    created: str  # when, ISO 8601 with the UTC offset
    device: str  # cpu, cuda:0, …
    device_name: str
    strategy: str  # how the points were evaluated
    strategy_reason: str | None = None
    strategy_note: str | None = None  # why the strategy fell back, when it did
    memory_format: str | None = None  # the layout of 4-D tensors
    memory_format_reason: str | None = None
    memory_format_note: str | None = None
    checkpoints: Checkpoints
    path: CheckpointPath | None = None
    weights: Weights | None = None
    model: Model
    data: Data
    bn: BN
    grid: Grid
    refine: Refine | None = None  # None without --refine
    groups: Groups | None = None  # None without --groups
    tol: float
    bootstrap: Bootstrap | None = None  # None with --bootstrap 0
    loss: Loss | None = None
    engine: Engine
    warnings: tuple[str, ...] = ()
    timings: Timings
    outputs: tuple[str, ...] | None = _when_set(None)  # the files written; None until the run is saved
    # a plane or trajectory run (interpscan plane, trajectory); a frozen Record, so a shared default is safe
    plane: Plane | None = _when_set(None)  # noqa: RUF009

    def __getitem__(self, key: str) -> Any:
        return self.to_json()[key]
