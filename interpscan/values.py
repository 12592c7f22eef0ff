"""What a value given to an option means: each option's text or number parsed and checked on its own, before any
file is read (the α grid, counts, seeds, paths, labels, ``normalize``, ``samples``, ``data_keys``,
``model_args``). options.py applies these to its fields; every message names the option with ``errors.opt``, so
the library says ``batch_size`` where the command line says ``--batch-size``.

No torch here: the CLI imports this module to build its signatures, and ``interpscan --help`` stays instant.
"""

from __future__ import annotations

import ast
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from .errors import UsageError, opt

MAX_ALPHAS = 10_000  # points on one path; far beyond any published grid (hundreds), far below what fills memory
DEFAULT_ALPHAS = 21
MAX_ABS_ALPHA = 1e6  # |α| beyond this makes θ(α) overflow float32 for weights of ordinary size
MAX_SEED = 2**63 - 1  # seeds are int64 (run.json, numpy); the calibration subset uses seed + 1, within torch's uint64
NAME_MAX = 255  # bytes in one file or directory name (Linux, macOS)
PATH_MAX = 4096  # bytes in a whole path (Linux)
MIN_STD = 1e-12  # below this, inputs in [0, 1] divided by std leave float32's range or precision
MAX_PIXELS = 8192  # a side of --resize / --crop; beyond any dataset's evaluation transform
MAX_WORKERS = 256
BUILTIN_LOSSES = ("cross_entropy", "mse", "next_token")

# (mean, std) applied as (x − mean) / std to inputs in [0, 1]: one number each, or one per channel (dim 1).
Normalization = tuple[float | tuple[float, ...], float | tuple[float, ...]]


class Grid(NamedTuple):
    """The α values of a path, sorted, α=0 and α=1 always among them; ``added`` says which endpoints the user's
    values lacked."""

    alphas: tuple[float, ...]
    added: tuple[float, ...]


def number(value: Any) -> float:
    """A number from an option: a real number, or text in ASCII (``float`` would also take other scripts' digits,
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


def _range(alpha_range: str | Sequence[float], name: str = "alpha_range") -> tuple[float, float]:
    try:
        parts = alpha_range.split(",") if isinstance(alpha_range, str) else list(alpha_range)
        lo, hi = (number(v) for v in parts)
    except (TypeError, ValueError):
        raise UsageError(f"{opt(name)} {alpha_range!r} is not LO,HI", hint="e.g. -0.5,1.5") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise UsageError(f"{opt(name)} needs finite LO < HI, got {alpha_range!r}", hint="e.g. -0.5,1.5")
    if max(abs(lo), abs(hi)) > MAX_ABS_ALPHA:
        raise UsageError(
            f"{opt(name)} {alpha_range!r}: {'α' if name == 'alpha_range' else 'coordinates'} must lie within "
            f"±{MAX_ABS_ALPHA:g}",
            hint="beyond that θ(α) overflows float32 for weights of ordinary size",
        )
    return lo, hi


def parse_span(value: str | Sequence[float], name: str) -> tuple[float, float]:
    """LO,HI (text or two numbers): finite, LO < HI, within ±MAX_ABS_ALPHA.

    Raises:
        UsageError: anything else.
    """
    return _range(value, name)


def check_margin(value: Any) -> float:
    """``margin``: a finite number from 0 to 10 (the plane's box widened by that share of its size per side).

    Raises:
        UsageError: anything else.
    """
    try:
        margin = number(value) + 0.0
    except ValueError:
        margin = math.nan
    if not (math.isfinite(margin) and 0 <= margin <= 10):
        raise UsageError(f"{opt('margin')} must be a number from 0 to 10, got {value!r}", hint="e.g. 0.2")
    return margin


def _count_grid(count: int, alpha_range: str | Sequence[float] | None) -> list[float]:
    if count < 2:
        raise UsageError(
            f"{opt('alphas', count)}: need at least 2 points", hint=f"e.g. {opt('alphas', 21)} (the default)"
        )
    if count > MAX_ALPHAS:
        raise UsageError(
            f"{opt('alphas', count)}: at most {MAX_ALPHAS:,} points on a path",
            hint=f"a cliff needs resolution where it is, not everywhere: scan a narrower {opt('alpha_range')}",
        )
    lo, hi = _range(alpha_range) if alpha_range is not None else (0.0, 1.0)
    return [lo + (hi - lo) * i / (count - 1) for i in range(count)]


def _listed_grid(alphas: Any, items: list[Any]) -> list[float]:
    not_numbers = UsageError(
        f"{opt('alphas')} {alphas!r} is neither a count nor a list of numbers",
        hint=f"e.g. {opt('alphas', 51)} or {opt('alphas', '0,0.5,0.9,1')}",
    )
    try:
        values = [
            number(v.strip() if isinstance(v, str) else v) for v in items if not (isinstance(v, str) and not v.strip())
        ]
    except (TypeError, ValueError):
        raise not_numbers from None
    if not values or not all(math.isfinite(v) for v in values):
        raise UsageError(f"{opt('alphas')} {alphas!r} must hold finite numbers", hint="e.g. 0,0.5,0.9,1")
    if len(values) > MAX_ALPHAS:
        raise UsageError(
            f"{opt('alphas')}: {len(values):,} values, at most {MAX_ALPHAS:,} points on a path",
            hint="a cliff needs resolution where it is, not everywhere: list the α you need",
        )
    return values


def parse_grid(
    alphas: int | str | Sequence[float] = DEFAULT_ALPHAS, alpha_range: str | Sequence[float] | None = None
) -> Grid:
    """Resolve ``alphas`` / ``alpha_range`` into a sorted grid that always holds α=0 and α=1.

    ``alphas`` is a count N (N evenly spaced points over the range, default [0, 1]), or explicit values: a
    sequence of numbers or a comma-separated string.

    Raises:
        UsageError: a malformed count, list or range; fewer than 2 or more than MAX_ALPHAS points; a value that
            is not finite or beyond ±MAX_ABS_ALPHA.
    """
    count: int | None = None
    items: list[Any] = []
    if isinstance(alphas, bool):
        raise UsageError(
            f"{opt('alphas')} {alphas!r} is neither a count nor a list of numbers", hint=f"e.g. {opt('alphas', 51)}"
        )
    if isinstance(alphas, int):
        count = alphas
    elif isinstance(alphas, str):
        if _COUNT.fullmatch(alphas):
            count = int(alphas)
        elif _NEGATIVE_COUNT.fullmatch(alphas):
            raise UsageError(
                f"{opt('alphas', alphas.strip())}: a count of points must be at least 2",
                hint=f"e.g. {opt('alphas', 21)}; for α below 0, list the values ({opt('alphas', '-1,-0.5,0,0.5,1')}) "
                f"or use {opt('alpha_range')}",
            )
        items = alphas.split(",")
    else:
        try:
            items = list(alphas)
        except TypeError:
            raise UsageError(
                f"{opt('alphas')} {alphas!r} is neither a count nor a list of numbers",
                hint=f"e.g. {opt('alphas', 51)}",
            ) from None
    if count is not None:
        values = _count_grid(count, alpha_range)
    else:
        if alpha_range is not None:
            raise UsageError(
                f"{opt('alpha_range')} applies to a count of points, not to an explicit {opt('alphas')} list",
                hint=f"give {opt('alphas')} a count (e.g. 51), or list every α yourself",
            )
        values = _listed_grid(alphas, items)
    if any(abs(v) > MAX_ABS_ALPHA for v in values):
        raise UsageError(
            f"α must lie within ±{MAX_ABS_ALPHA:g}; got {max(values, key=abs):g}",
            hint="beyond that θ(α) overflows float32 for weights of ordinary size",
        )
    grid = sorted({round(v, 12) + 0.0 for v in values})
    if count is not None and len(grid) < count:
        raise UsageError(
            f"{opt('alphas', count)} {opt('alpha_range', alpha_range)}: the range is too narrow for {count} distinct "
            "points",
            hint="α is resolved to 12 decimals: widen the range or ask for fewer points",
        )
    added = [e for e in (0.0, 1.0) if e not in grid]
    return Grid(tuple(sorted(grid + added)), tuple(added))


def text_list(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """A list option given as one comma-separated text (the command line's ``train,test``), or as a sequence;
    None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(s.strip() for s in value.split(",") if s.strip())
    return tuple(value)


def check_groups(groups: str | Sequence[str] | None) -> tuple[str, ...]:
    """``groups`` values (``run`` and ``layers`` alike): each a ``NAME=PATTERN,…`` group or a comma-separated list
    of patterns, with no empty pattern among them (``,`` or ``a,,b`` would otherwise scan with fewer groups than
    were written, or with none at all).

    Raises:
        UsageError: an empty or blank value, an empty pattern between or around commas, a group with no name
            before ``=`` or no pattern after it, or a value that is not text.
    """
    values = (groups,) if isinstance(groups, str) else tuple(groups or ())
    hint = "patterns are separated by commas, e.g. 'layer1*,layer2*' or 'head=fc*,!fc.bias' (see `interpscan layers`)"
    for value in values:
        if not isinstance(value, str) or not value.strip():
            raise UsageError(f"{opt('groups')} {shown(str(value))}: each value must be a non-empty pattern", hint=hint)
        named = "=" in value.split(",")[0]
        name, _, body = value.partition("=") if named else ("", "", value)
        if named and not name.strip():
            raise UsageError(f"{opt('groups')} {shown(value)}: the group has no name before '='", hint=hint)
        if any(not piece.strip() for piece in body.split(",")):
            where = "after '='" if named and not body.strip() else "between or around its commas"
            raise UsageError(f"{opt('groups')} {shown(value)} holds an empty pattern ({where})", hint=hint)
    return values


def env_number(
    name: str,
    default: float,
    *,
    whole: bool = False,
    low: float = 0.0,
    hint: str | None = None,
    env: Mapping[str, str] | None = None,
) -> float:
    """A number from the environment variable ``name`` (unset or blank: ``default``): finite, at least ``low``,
    and whole with ``whole`` (then an int). A variable is a value the user gave as surely as a flag: a malformed
    one is their mistake, said in one line, never a ValueError from deep inside.

    Raises:
        UsageError: the variable is set to anything else.
    """
    text = (os.environ if env is None else env).get(name)
    if text is None or not text.strip():
        return default
    try:
        value: float = int(text, 10) if whole else number(text.strip())
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= low):
        kind = "a whole number" if whole else "a number"
        raise UsageError(
            f"the environment variable {name}={shown(text)} is not {kind} ≥ {low:g}",
            hint=hint or f"set {name} to such a number, or unset it (default {default:g})",
        )
    return value


def check_splits(splits: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``splits``: the names of the splits to evaluate, each once; None: the data's default.

    Raises:
        UsageError: an empty list, an empty name, or a name given twice.
    """
    values = text_list(splits)
    if values is None:
        return None
    if not values or not all(isinstance(s, str) and s for s in values) or len(set(values)) != len(values):
        raise UsageError(
            f"{opt('splits')} {','.join(map(str, values))}: give each split once, e.g. test or train,test",
            hint="the splits are the data's: train, test, or those a tensor file or factory names",
        )
    return values


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device(device: Any) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``, in lower case.

    Raises:
        UsageError: anything else.
    """
    text = str(device).strip().lower()
    if not _DEVICE.fullmatch(text):
        raise UsageError(f"{opt('device')} {device!r} is not a device", hint="use auto, cpu, cuda or cuda:N")
    return text


def whole(value: Any, name: str, *, low: int = 1, high: int | None = None, hint: str | None = None) -> int:
    """A whole number from ``low`` to ``high`` (no upper bound: None).

    Raises:
        UsageError: not a whole number (booleans are not), or out of the range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{opt(name)} must be a whole number, got {value!r}", hint=hint)
    if value < low:
        raise UsageError(f"{opt(name)} must be at least {low}, got {value}", hint=hint)
    if high is not None and value > high:
        raise UsageError(f"{opt(name)} must be at most {high:,}, got {value}", hint=hint)
    return value


def optional_whole(value: Any, name: str, *, low: int = 1, high: int | None = None) -> int | None:
    """None, or a whole number as ``whole`` checks it."""
    hint = f"give {opt(name)} a whole number ≥ {low}, or leave it out for its default"
    return None if value is None else whole(value, name, low=low, high=high, hint=hint)


def check_seed(value: Any, name: str) -> int:
    """A seed: a whole number from 0 to 2**63 − 1.

    Raises:
        UsageError: anything else.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        got = value if isinstance(value, int) and not isinstance(value, bool) else repr(value)
        raise UsageError(
            f"{opt(name)} must be from 0 to 2**63 − 1, got {got}", hint=f"a seed is a whole number, e.g. {opt(name, 0)}"
        )
    return value


def check_tol(value: Any) -> float:
    """``tol``: a finite number ≥ 0 (−0 is 0).

    Raises:
        UsageError: anything else.
    """
    try:
        tol = number(value) + 0.0
    except ValueError:
        tol = math.nan
    if not (math.isfinite(tol) and tol >= 0):
        raise UsageError(
            f"{opt('tol')} must be a finite number ≥ 0, got {value}",
            hint="Δ ≥ 0 always; a negative tolerance would call a flat path non-monotone",
        )
    return tol


def parse_samples(value: int | str | None) -> int | None:
    """``samples``: a positive count, or ``all`` (and None) for every example.

    Raises:
        UsageError: anything else.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == "all"):
        return None
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise UsageError(
                f"{opt('samples')} {value!r} is not a count or all", hint=f"e.g. {opt('samples', 2000)}"
            ) from None
    return optional_whole(value, "samples")


def parse_data_keys(value: str | Sequence[str] | None) -> tuple[str, str] | None:
    """``data_keys`` INPUTS,TARGETS: the names of the inputs and targets in a tensor file or factory dict.

    Raises:
        UsageError: anything but two non-empty names.
    """
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",")] if isinstance(value, str) else [str(p).strip() for p in value]
    if len(parts) != 2 or not all(parts):
        raise UsageError(
            f"{opt('data_keys')} {value!r} is not INPUTS,TARGETS", hint=f"e.g. {opt('data_keys', 'images,labels')}"
        )
    return parts[0], parts[1]


def _floats(text: str, what: str, original: str) -> float | tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split("/"))
    except ValueError:
        raise UsageError(
            f"{opt('normalize')} {original!r}: {what} {text.strip()!r} is not a number or a /-separated list",
            hint="e.g. 0.286,0.353 or per channel 0.4914/0.4822/0.4465,0.2470/0.2435/0.2616",
        ) from None
    if not all(math.isfinite(v) for v in values):
        raise UsageError(f"{opt('normalize')} {original!r}: mean and std must be finite numbers")
    return values[0] if len(values) == 1 else values


def check_normalize(text: str) -> Normalization | None:
    """``normalize`` checked without data: None for ``auto`` (resolved against the data later) and ``none``, else
    the (mean, std) it gives: each a number or a per-channel list separated by ``/``.

    Raises:
        UsageError: anything else, a non-positive std, or per-channel lists of different lengths.
    """
    if not isinstance(text, str):
        raise UsageError(f"{opt('normalize')} {text!r} is not auto, none or MEAN,STD", hint="e.g. 0.286,0.353")
    if text in ("auto", "none"):
        return None
    parts = text.split(",")
    if len(parts) != 2:
        raise UsageError(
            f"{opt('normalize')} {text!r} is not auto, none or MEAN,STD",
            hint="e.g. 0.286,0.353 or per channel 0.4914/0.4822/0.4465,0.2470/0.2435/0.2616",
        )
    mean, std = _floats(parts[0], "mean", text), _floats(parts[1], "std", text)
    stds = std if isinstance(std, tuple) else (std,)
    if any(s <= 0 for s in stds):
        raise UsageError(f"{opt('normalize')} std must be positive, got {parts[1].strip()}")
    if any(s < MIN_STD for s in stds):
        raise UsageError(
            f"{opt('normalize')} std {parts[1].strip()} is below {MIN_STD:g}: (x − mean) / std would overflow float32 "
            "or lose every input's precision",
            hint="a standard deviation of inputs in [0, 1] lies between about 0.01 and 1",
        )
    if isinstance(mean, tuple) and isinstance(std, tuple) and len(mean) != len(std):
        raise UsageError(f"{opt('normalize')} {text!r}: {len(mean)} means but {len(std)} stds")
    return mean, std


def parse_value(text: str) -> Any:
    """A ``model_args`` value given as text: a Python literal (``3``, ``0.5``, ``(1, 28, 28)``), true/false, none,
    or else the string itself."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):  # TypeError: e.g. {[]: 1}
        return text


def parse_model_args(value: Mapping[str, Any] | Sequence[str] | None) -> dict[str, Any]:
    """``model_args``: a mapping of keyword arguments for the model factory, or ``["width=32", "bn=false"]`` (the
    command line's KEY=VALUE texts) read into ``{"width": 32, "bn": False}``.

    Raises:
        UsageError: a text that is not KEY=VALUE, or a key that is not a Python name.
    """
    if value is None:
        return {}
    if isinstance(value, Mapping):
        bad = [k for k in value if not (isinstance(k, str) and k.isidentifier())]
        if bad:
            raise UsageError(f"{opt('model_args')}: {bad[0]!r} is not a keyword argument's name")
        return dict(value)
    pairs = [value] if isinstance(value, str) else list(value)
    args: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = str(pair).partition("=")
        if not sep or not key.strip().isidentifier():
            raise UsageError(
                f"{opt('model_args')} {pair!r} is not KEY=VALUE", hint=f"e.g. {opt('model_args', 'width=32')}"
            )
        args[key.strip()] = parse_value(text)
    return args


def check_pixels(value: Any, name: str) -> int | None:
    """``resize`` / ``crop``: None, or a whole number of pixels from 1 to MAX_PIXELS.

    Raises:
        UsageError: anything else.
    """
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PIXELS):
        raise UsageError(f"{opt(name)} must be a whole number of pixels from 1 to {MAX_PIXELS}, got {value!r}")
    return value


def check_workers(value: Any) -> int | None:
    """``workers``: None (from the cores), or a whole number from 0 to MAX_WORKERS.

    Raises:
        UsageError: anything else.
    """
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_WORKERS):
        raise UsageError(f"{opt('workers')} must be a whole number from 0 to {MAX_WORKERS}, got {value!r}")
    return value


def check_key(value: Any) -> str | None:
    """``key``: None, or a dotted path naming an entry.

    Raises:
        UsageError: an empty path.
    """
    if value is not None and not (isinstance(value, str) and value.strip(". ")):
        raise UsageError(
            f"{opt('key')} {value!r} names no entry",
            hint=f"give a dotted path such as model_ema, or leave {opt('key')} out",
        )
    return value


def check_loss(text: Any) -> str:
    """A built-in loss, or something shaped like ``path/to/file.py:fn`` / ``package.module:fn`` (imported later,
    with the other inputs).

    Raises:
        UsageError: anything else.
    """
    from .usercode import is_callable_spec

    if isinstance(text, str) and (text.strip().replace("-", "_") in BUILTIN_LOSSES or is_callable_spec(text)):
        return text
    raise UsageError(
        f"{opt('loss')} {text!r} is not a loss",
        hint=f"use {', '.join(BUILTIN_LOSSES)}, path/to/file.py:fn or package.module:fn",
    )


def shown(text: str, limit: int = 60) -> str:
    """``text`` for a message: repr'd (control and direction characters escaped), long ones cut in the middle."""
    if len(text) > limit:
        text = f"{text[: limit // 2]}…{text[-limit // 4 :]}"
    return repr(text)


def check_path(path: str | os.PathLike[str], name: str) -> Path:
    """A path as given to an option (``name``) or the library, checked to be one a file system can hold, before
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
        raise UsageError(f"{opt(name)} {path!r} is not a path", hint="give a file or directory name") from None
    if "\0" in text:
        raise UsageError(f"{opt(name)} {shown(text)} holds a NUL byte, which no path may", hint="check the name")
    longest = max(Path(text).parts, key=lambda part: len(os.fsencode(part)), default="")
    if len(os.fsencode(longest)) > NAME_MAX:
        raise UsageError(
            f"{opt(name)}: the name {shown(longest)} is {len(os.fsencode(longest)):,} bytes long, where file systems "
            f"allow {NAME_MAX}",
            hint="choose a shorter name",
        )
    if len(encoded) >= PATH_MAX:
        raise UsageError(
            f"{opt(name)}: the path {shown(text)} is {len(encoded):,} bytes long, where the system allows "
            f"{PATH_MAX - 1:,}",
            hint="choose a shorter path",
        )
    return Path(text)


def optional_path(path: str | os.PathLike[str] | None, name: str) -> Path | None:
    """None, or a path as ``check_path`` checks it."""
    return None if path is None else check_path(path, name)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def check_label(text: Any, name: str) -> str:
    """A name the user gives for something shown in tables and pages (a run's label, a split): non-empty, with
    no control characters (a newline would break the one-line tables) and no bidirectional overrides (which
    make a label read as something else).

    Raises:
        UsageError: an empty label, or one holding such characters.
    """
    value = str(text)
    if not value.strip():
        raise UsageError(f"{opt(name)} {value!r} is empty", hint=f"give {opt(name)} a name")
    bad = _CONTROL.search(value)
    if bad:
        raise UsageError(
            f"{opt(name)} {shown(value)} holds the control character {bad.group()!r}",
            hint=f"give {opt(name)} a name of printable characters",
        )
    return value


# A split's name in ``data``'s NAME=SOURCE: no path separator, so a path holding "=" is given with its folder.
_SPLIT_NAME = re.compile(r"[\w.-]+")


def data_entry(text: str) -> tuple[str | None, str]:
    """One ``data`` entry: ``NAME=SOURCE`` -> (NAME, SOURCE), the source's split read as NAME; anything else ->
    (None, text), every split of the source under its own name. The text before the first ``=`` is a name only
    when it is one (letters, digits, ``_``, ``.``, ``-``; never a ``/``): a file whose name holds ``=`` is given
    with its folder, ``./a=b.pt``."""
    head, eq, rest = text.partition("=")
    if eq and _SPLIT_NAME.fullmatch(head):
        return head, rest
    return None, text


def check_data(value: Any) -> str | tuple[str, ...] | None:
    """``data`` as the command line gives it (repeatable): None, one source (its text), or several, each
    ``SOURCE`` or ``NAME=SOURCE`` (see data_entry); the sources are checked as paths (check_path).

    Raises:
        UsageError: an entry that is not text or is empty, NAME= without a source, or a name given twice.
    """
    if value is None:
        return None
    entries = (value,) if isinstance(value, str) else tuple(value)
    if not entries:
        return None
    names: list[str] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise UsageError(f"{opt('data')} {entry!r} is not text", hint="give a dataset name, a file or a folder")
        name, source = data_entry(entry)
        if not source.strip():
            raise UsageError(
                f"{opt('data')} {shown(entry)} names the split {name!r} of no source"
                if name
                else f"{opt('data')} is empty",
                hint="name a dataset (e.g. fashion-mnist-small), a tensor file, a folder or a factory"
                + (", e.g. ood=shifted.pt" if name else ""),
            )
        check_path(source, "data")
        if name is not None:
            if name in names:
                raise UsageError(
                    f"{opt('data')}: the split {name!r} is named twice", hint="give each source its own split name"
                )
            names.append(name)
    return entries[0] if len(entries) == 1 else entries
