"""A fuzz run over the command line's flags: odd characters (newlines, tabs, direction marks, other scripts' digits,
very long strings, `--` tricks, empty strings) and extreme numbers (1e309, nan, -0, 2**64, hex, underscores, a
leading +) in every flag of `run`, `layers`, `inspect`, `plot` and `compare`, through the real entry point,
in-process.

Whatever the value, the command ends in exit 0, or in exit 2 with one `error:` line and at most a `hint:` line;
never a traceback, a Python warning, or another exit code. (Exit 1 is a run that failed after its inputs were
accepted, e.g. a forward pass that raised; no flag value here may cause one, so it is not allowed.)

Derandomized, so CI sees the same examples every time; the examples found the bugs listed in the commits that
added this file, each now a case in tests/bad_inputs/flags.py.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from bad_inputs.case import good_state
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

SETTINGS = {
    "derandomize": True,
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "database": None,
}

# Text that breaks naive handling: whitespace and control characters, direction marks (U+202E reverses what a
# terminal shows), other scripts' digits (str.isdigit and float() take them), a long name, flag look-alikes.
HOSTILE_CHARS = "\n\t\r \x0b\x1b\u202e\u200f\u00a0²٣é日🙂,=:/.*@!-_'\"\\"
HOSTILE_TEXT = (
    "",
    " ",
    "\n",
    "\t",
    "a\nb",
    "\u202eevil",
    "\u200f",
    "日本語",
    "🙂",
    "x" * 300,
    "y" * 5000,
    "-",
    "--",
    "--help",
    "-q",
    "=",
    ",",
    ",,,",
    "a,b,c",
    "..",
    "../..",
    "/",
    "@",
    "@depth:-1",
    "*",
    "!x",
)
HOSTILE_NUMBERS = (
    "1e309",
    "-1e309",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "-0",
    "0",
    "-1",
    "1",
    "2",
    "3.0",
    "0.5",
    "-3",
    "1e3",
    "1E-400",
    str(2**63),
    str(2**64),
    str(2**64 + 1),
    str(10**30),
    "0x10",
    "0o7",
    "0b1",
    "1_000",
    "1__0",
    "+5",
    "+-5",
    "²",
    "٣",
    "１",
    " 7 ",
    "7\n",
    "0,0,1",
    "1,0.5,0",
    " 0 , 0.5 , 1 ",
    "1,0",
    "0,0",
    "nan,1",
    "-1e309,1e309",
    "-0.5,1.5",
)
TEXT = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(alphabet=HOSTILE_CHARS, max_size=6))
NUMBER = st.one_of(
    st.sampled_from(HOSTILE_NUMBERS),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats().map(repr),
)
VALUE = st.one_of(TEXT, NUMBER)
MODEL_ARG = st.one_of(
    st.tuples(st.sampled_from(("width", "in_channels", "num_classes", "bn", "dropout")), VALUE).map("=".join),
    st.tuples(TEXT, VALUE).map("=".join),
    TEXT,
    st.sampled_from(("width=10**9", "width=1000000000", "width=(1,)*10**9", "num_classes=10**10", "bn=2")),
)

# Each command's flags and what to throw at them.
RUN_FLAGS = {
    "--alphas": NUMBER,
    "--alpha-range": st.one_of(NUMBER, TEXT),
    "--samples": st.one_of(NUMBER, TEXT),
    "--seed": NUMBER,
    "--batch-size": NUMBER,
    "--bn-samples": NUMBER,
    "--tol": NUMBER,
    "--normalize": st.one_of(NUMBER, TEXT, st.sampled_from(("1,0", "0.5,1e-45", "1/2,3", "nan,1", "0.1,0.2"))),
    "--model-arg": MODEL_ARG,
    "--groups": TEXT,
    "--split": TEXT,
    "--data-keys": TEXT,
    "--key": TEXT,
    "--dtype": VALUE,
    "--device": st.one_of(TEXT, st.sampled_from(("cuda:99999999999999999999", "cuda:-1", "CPU", "meta", "mps"))),
    "--bn": VALUE,
    "--strategy": VALUE,
    "--hold": VALUE,
    "--mode": VALUE,
    "--loss": TEXT,
    # not a directory: reading an image folder walks it whole (a data reader's matter, not a flag's)
    "--data": st.sampled_from(("", "\n", "x" * 300, "\u202e", "cifar10", "nope.py:f", "os:system", "a.pt:b")),
    "--out": TEXT,
}
LAYERS_FLAGS = {"--groups": TEXT, "--model-arg": MODEL_ARG, "--key": TEXT, "--format": VALUE, "--model": TEXT}
INSPECT_FLAGS = {"--key": TEXT, "--format": VALUE}
PLOT_FLAGS = {"--out": TEXT, "--label": TEXT, "--plotlyjs": VALUE}
COMPARE_FLAGS = {"--out": TEXT, "--label": TEXT, "--split": TEXT, "--plotlyjs": VALUE}

FAST_RUN = ["--model", "cnn", "--model-arg", "width=2", "--samples", "8", "--alphas", "2", "--no-html", "-q"]


def flags(table: dict[str, st.SearchStrategy[str]], most: int = 2) -> st.SearchStrategy[list[str]]:
    """One or two (flag, hostile value) pairs from ``table``, as argv."""
    pair = st.sampled_from(sorted(table)).flatmap(lambda flag: st.tuples(st.just(flag), table[flag]))
    return st.lists(pair, min_size=1, max_size=most).map(lambda pairs: [x for p in pairs for x in p])


@contextlib.contextmanager
def _warnings_as_the_cli_shows_them() -> Iterator[None]:
    """Python warnings printed to stderr, as a user sees them (pytest would turn them into exceptions)."""
    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.simplefilter("default")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        yield


def invoke(argv: list[str]) -> tuple[int, str]:
    """``interpscan ARGV`` through the real entry point, in-process: (exit code, stderr). A crash propagates."""
    from interpscan.cli import main

    saved, err = sys.argv, io.StringIO()
    sys.argv = ["interpscan", *argv]
    os.environ.pop("INTERPSCAN_DEBUG", None)
    code = 0
    try:
        with (
            _warnings_as_the_cli_shows_them(),
            contextlib.redirect_stderr(err),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    return code, err.getvalue()


def check(argv: list[str], code: int, stderr: str) -> None:
    """Exit 0, or exit 2 with one `error:` line and at most a `hint:` line; no traceback anywhere."""
    shown = f"interpscan {argv!r}\n{stderr}"
    assert "Traceback" not in stderr, shown
    assert code in (0, 2), shown
    if code == 2:
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert lines, shown
        assert lines[0].startswith("error: "), shown
        assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: ")), shown


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Checkpoints, a finished run and an empty data root; the working directory is a scratch folder, so that
    odd --out values land there."""
    import interpscan
    from interpscan.models import CNN

    root = tmp_path_factory.mktemp("fuzz")
    torch.save(good_state(0), root / "a.pt")
    torch.save(good_state(1), root / "b.pt")
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 1, 28, 28, generator=gen), torch.randint(0, 10, (8,), generator=gen)
    for name, seed in (("run1", 1), ("run2", 2)):
        interpscan.scan(CNN(width=2), good_state(0), good_state(seed), (x, y), alphas=3, bn="interpolate").save(
            root / name, html=False
        )
    (root / "empty").mkdir()
    (root / "cwd").mkdir()
    saved = Path.cwd()
    os.chdir(root / "cwd")
    try:
        yield {"root": root}
    finally:
        os.chdir(saved)


_fresh = itertools.count()


def fresh(place: dict[str, Path]) -> str:
    return str(place["root"] / "out" / str(next(_fresh)))


# @example: each input class that once crashed or printed more than one line, tried before the random ones.
@settings(max_examples=90, **SETTINGS)
@given(extra=flags(RUN_FLAGS))
@example(extra=["--alphas", "²"])  # int() of a digit str.isdigit() accepts: ValueError traceback
@example(extra=["--seed", str(2**70)])  # torch's manual_seed: overflow traceback
@example(extra=["--model-arg", "width=99999999999999999999"])  # torch's message with its C++ stack: many lines
@example(extra=["--model-arg", "width=0"])  # torch's UserWarnings on stderr before the error
@example(extra=["--model-arg", "width=1000000000"])  # tens of GB allocated for the weights
@example(extra=["--model-arg", "bn=2"])  # a number taken for true
@example(extra=["--out", "x" * 300])  # Path.exists(): a too-long name raised
@example(extra=["--data", "x" * 300])
@example(extra=["--data-root", "x" * 300])
def test_run_flags(place: dict[str, Path], extra: list[str]) -> None:
    root = place["root"]
    base = [*FAST_RUN, "--bn", "interpolate", "--no-download", "--data-root", str(root / "empty")]
    out = [] if "--out" in extra else ["--out", fresh(place)]
    argv = ["run", str(root / "a.pt"), str(root / "b.pt"), *base, *extra, *out]
    check(argv, *invoke(argv))


@settings(max_examples=20, **SETTINGS)
@given(extra=flags(LAYERS_FLAGS), final=st.booleans())
@example(extra=["--groups", ""], final=False)  # silently ignored
@example(extra=["--model-arg", "in_channels=0"], final=True)  # torch's UserWarning before the error
def test_layers_flags(place: dict[str, Path], extra: list[str], final: bool) -> None:
    root = place["root"]
    argv = ["layers", str(root / "a.pt"), *([str(root / "b.pt")] if final else []), *extra]
    check(argv, *invoke(argv))


@settings(max_examples=15, **SETTINGS)
@given(extra=flags(INSPECT_FLAGS), path=st.one_of(st.just("a.pt"), TEXT))
@example(extra=["--format", "json"], path="x" * 300)  # a too-long name raised
def test_inspect_flags(place: dict[str, Path], extra: list[str], path: str) -> None:
    argv = ["inspect", str(place["root"] / path), *extra]
    check(argv, *invoke(argv))


@settings(max_examples=20, **SETTINGS)
@given(extra=flags(PLOT_FLAGS), path=st.one_of(st.just("run1"), TEXT))
@example(extra=["--out", "x" * 300], path="run1")  # a too-long name raised
@example(extra=["--label", ""], path="x" * 300)
def test_plot_flags(place: dict[str, Path], extra: list[str], path: str) -> None:
    out = [] if "--out" in extra else ["--out", fresh(place) + ".html"]
    argv = ["plot", str(place["root"] / path), "--plotlyjs", "cdn", *extra, *out]  # a fuzzed --plotlyjs wins
    check(argv, *invoke(argv))


@settings(max_examples=20, **SETTINGS)
@given(extra=flags(COMPARE_FLAGS))
@example(extra=["--split", "\n"])  # the message broke over two lines
@example(extra=["--out", "x" * 300])  # a too-long name raised
def test_compare_flags(place: dict[str, Path], extra: list[str]) -> None:
    root = place["root"]
    out = [] if "--out" in extra else ["--out", fresh(place)]
    argv = ["compare", str(root / "run1"), str(root / "run2"), *extra, *out]
    check(argv, *invoke(argv))
