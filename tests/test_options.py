"""Typed options: closed choices as enums, the α grid, and every range checked once, when the options are
built — so that from the command line a bad value exits 2 with one line before any file is read."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import run_cli

from interpscan.errors import UsageError
from interpscan.options import (
    BNPolicy,
    DType,
    Hold,
    Mode,
    ScanOptions,
    Strategy,
    flags,
)
from interpscan.values import MAX_ALPHAS, parse_grid


def test_choices_parse_their_values_and_list_them_when_wrong() -> None:
    assert BNPolicy.parse("Recompute", "bn") is BNPolicy.RECOMPUTE
    assert Mode.parse(Mode.ALL_BUT, "mode") is Mode.ALL_BUT
    assert Mode.parse("all-but", "mode") is Mode.ALL_BUT
    assert str(Strategy.PREFIX) == "prefix"
    assert Hold.INIT.coefficient == 0.0
    assert Hold.FINAL.coefficient == 1.0
    with pytest.raises(UsageError) as exc:
        DType.parse("float8", "dtype")
    assert str(exc.value) == "dtype 'float8' is not one of float32, bfloat16, float16"
    assert exc.value.hint == "use dtype='float32'"
    assert exc.value.rendered(flags()) == (
        "--dtype 'float8' is not one of float32, bfloat16, float16",
        "use --dtype float32",
    )


def test_options_normalize_strings_to_enums_and_alphas_to_a_grid() -> None:
    options = ScanOptions(alphas="5", bn="batch", dtype="bfloat16", strategy="prefix", groups=("fc",), hold="init")
    assert options.bn is BNPolicy.BATCH
    assert options.dtype is DType.BFLOAT16
    assert options.strategy is Strategy.PREFIX
    assert options.hold is Hold.INIT
    assert options.grid.alphas == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert ScanOptions(alphas=[0.5, 0.2]).grid == ((0.0, 0.2, 0.5, 1.0), (0.0, 1.0))
    assert ScanOptions(alphas=3, alpha_range=(-1.0, 2.0)).grid.alphas == (-1.0, 0.0, 0.5, 1.0, 2.0)
    assert ScanOptions(groups="layer*").groups == ("layer*",)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "--batch-size must be at least 1, got 0"),
        ({"chunk_size": -2}, "--chunk-size must be at least 1, got -2"),
        ({"bn_samples": 0}, "--bn-samples must be at least 1, got 0"),
        ({"samples": 0}, "--samples must be at least 1, got 0"),
        ({"batch_size": 2.5}, "--batch-size must be a whole number, got 2.5"),
        ({"tol": -1}, "--tol must be a finite number ≥ 0, got -1"),
        ({"tol": math.nan}, "--tol must be a finite number ≥ 0, got nan"),
        ({"hold": "init"}, "--hold init applies to layer groups, and no --groups was given"),
        ({"mode": "all-but"}, "--mode all-but applies to layer groups, and no --groups was given"),
        ({"hold": "nonsense", "groups": ("fc",)}, "--hold 'nonsense' is not one of final, init"),
        ({"splits": ("train", "train")}, "--split train,train: give each split once, e.g. test or train,test"),
        ({"splits": ()}, "--split : give each split once, e.g. test or train,test"),
        ({"device": "tpu"}, "--device 'tpu' is not a device"),
        ({"loss": "hinge"}, "--loss 'hinge' is not a loss"),
        ({"alphas": 100_000_000}, f"--alphas 100000000: at most {MAX_ALPHAS:,} points on a path"),
        ({"alphas": "5", "alpha_range": "-1e308,1e308"}, "--alpha-range '-1e308,1e308': α must lie within ±1e+06"),
        ({"alphas": "0,1e9"}, "α must lie within ±1e+06; got 1e+09"),
        ({"alphas": "0,inf"}, "--alphas '0,inf' must hold finite numbers"),
        ({"alphas": True}, "--alphas True is neither a count nor a list of numbers"),
        ({"groups": ("",)}, "--groups '': each value must be a non-empty pattern"),
        # these ran with no group (or fewer groups) before the check: the empty patterns were dropped
        ({"groups": (",",)}, "--groups ',' holds an empty pattern (between or around its commas)"),
        ({"groups": ("conv*,,fc*",)}, "--groups 'conv*,,fc*' holds an empty pattern (between or around its commas)"),
        ({"groups": ("head=",)}, "--groups 'head=' holds an empty pattern (after '=')"),
        ({"groups": ("=fc*",)}, "--groups '=fc*': the group has no name before '='"),
    ],
)
def test_bad_options_are_refused_when_built(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as exc:
        ScanOptions(**kwargs)  # type: ignore[arg-type]
    assert exc.value.rendered(flags())[0] == message  # what the command line prints
    assert "--" not in str(exc.value)  # the library's own words: its parameters' names


def test_the_grid_is_capped_and_stays_finite() -> None:
    assert len(parse_grid(MAX_ALPHAS).alphas) == MAX_ALPHAS
    grid = parse_grid(7, "-1e6,1e6")
    assert all(math.isfinite(a) for a in grid.alphas)
    assert grid.added == (1.0,)  # 0 is the middle of the 7


# ---------------------------------------------------------------------------- from the command line

LATE = [
    (["--dtype", "float8"], "Invalid value for '--dtype': 'float8' is not one of 'float32', 'bfloat16', 'float16'."),
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--tol", "-1"], "--tol must be a finite number ≥ 0, got -1.0"),
    (["--hold", "nonsense"], "Invalid value for '--hold': 'nonsense' is not one of 'final', 'init'."),
    (["--hold", "init"], "--hold init applies to layer groups, and no --groups was given"),
    (["--alphas", "100000000"], f"--alphas 100000000: at most {MAX_ALPHAS:,} points on a path"),
    (["--alpha-range=-1e308,1e308"], "--alpha-range '-1e308,1e308': α must lie within ±1e+06"),
    (["--split", "test,test"], "--split test,test: give each split once, e.g. test or train,test"),
    (["--device", "gpu"], "--device 'gpu' is not a device"),
    (["--normalize", "0.5"], "--normalize '0.5' is not auto, none or MEAN,STD"),
    (["--samples", "-3"], "--samples must be at least 1, got -3"),
]


@pytest.mark.parametrize(("flags", "message"), LATE)
def test_bad_flags_exit_2_at_once_before_any_file_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    # checkpoints that do not exist and a dataset that would be downloaded: a late check would say so instead
    empty = tmp_path / "EMPTY"
    empty.mkdir()
    args = ["run", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--data", "cifar10", "--data-root", str(empty)]
    code, err = run_cli(monkeypatch, capsys, *args, *flags, "-o", str(tmp_path / "out"))
    assert code == 2
    lines = err.splitlines()
    assert lines[0] == f"error: {message}"
    assert len(lines) == 2
    assert lines[1].startswith("hint: ")
    assert list(empty.iterdir()) == []
    assert not (tmp_path / "out").exists()
