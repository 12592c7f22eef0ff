"""Numbers that must not move: results.csv and summary.csv of four scans of the demo CNN, each case
`interpscan run init.pt final.pt ARGS` through the real CLI, against what a plain float64 loop computes for the same
ARGS (tests/make_golden.py; tests/golden/README.md says what each case covers).

interpscan computes in float32, in a summation order that depends on the layout (contiguous, and channels-last,
the default on CPU) and on the CPU's instruction set; so every number is compared at a few float32 steps
(tests/floats.py), and a failure names the CPU the goldens were written on and this one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli
from floats import approx32, this_machine

GOLDEN = Path(__file__).parent / "golden"
CASES: dict[str, list[str]] = json.loads((GOLDEN / "cases.json").read_text())
LAYOUTS = ("contiguous", "auto")  # --memory-format: the plain layout, and the default (channels-last on CPU)
TEXT = ("curve", "split", "hold", "mode")
# the standard error is ~100 times smaller than the losses and never near 0: relative alone. Every other column
# gets an absolute floor at the losses' size (1), for the differences of losses (Δ, barriers) that are near 0.
SCALE = {"loss_se": 0.0}


def machines() -> str:
    recorded = json.loads((GOLDEN / "machine.json").read_text())
    return f"goldens computed on {recorded}; this run on {this_machine()}"


def assert_frames_match(got: pd.DataFrame, want: pd.DataFrame, where: str) -> None:
    assert list(got.columns) == list(want.columns), where
    assert len(got) == len(want), where
    for column in want.columns:
        for i, (a, b) in enumerate(zip(got[column], want[column], strict=True)):
            if column in TEXT or isinstance(b, (bool, str)):
                assert str(a) == str(b), f"{where} row {i} {column}: {a!r} != {b!r}"
                continue
            a, b = float(a), float(b)
            if math.isnan(b):
                assert math.isnan(a), f"{where} row {i} {column}: {a} is not NaN"
            else:
                expected = approx32(b, scale=SCALE.get(column, 1.0))
                assert a == expected, f"{where} row {i} {column}: {a!r} != {expected} ({machines()})"


def test_the_goldens_say_where_they_were_computed() -> None:
    recorded = json.loads((GOLDEN / "machine.json").read_text())
    assert set(recorded) == set(this_machine())
    assert all(isinstance(v, str) and v for v in recorded.values()), recorded


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_numbers_match_the_golden_run(
    case: str, layout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / case
    args = [str(GOLDEN / "init.pt"), str(GOLDEN / "final.pt"), *CASES[case], "--memory-format", layout]
    code, err = run_cli(monkeypatch, capsys, "run", *args, "--device", "cpu", "-o", str(out), "-q", "--no-html")
    assert code == 0, err
    for name in ("results.csv", "summary.csv"):
        got = pd.read_csv(out / name, keep_default_na=False, na_values=[""])
        want = pd.read_csv(GOLDEN / case / name, keep_default_na=False, na_values=[""])
        # columns the goldens lack (segments, the bootstrap's intervals) are appended, and tested on their own
        assert list(got.columns[: len(want.columns)]) == list(want.columns), f"{case}/{name}"
        assert_frames_match(got[want.columns], want, f"{case}/{name}")
