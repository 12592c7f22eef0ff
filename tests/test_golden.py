"""Numbers that must not move: results.csv and summary.csv of four scans of the demo CNN, written by interpscan
before the core was redesigned (tests/golden/README.md), and matched by every version since to 1e-7 in the
layout they were made in (contiguous). The default on CPU, channels-last, computes the same numbers in another
order: it matches them to 1e-6.

The checkpoints are the demo's own (`interpscan demo`: cnn, width 16, 6 epochs on the bundled subset); each
case is `interpscan run init.pt final.pt ARGS` on the bundled Fashion-MNIST subset, through the real CLI.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli

GOLDEN = Path(__file__).parent / "golden"
CASES: dict[str, list[str]] = json.loads((GOLDEN / "cases.json").read_text())
RTOL = {"contiguous": 1e-7, "auto": 1e-6}  # --memory-format: the golden run's layout, and the default
TEXT = ("curve", "split", "hold", "mode")


def assert_frames_match(got: pd.DataFrame, want: pd.DataFrame, where: str, rtol: float = RTOL["contiguous"]) -> None:
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
                assert a == pytest.approx(b, rel=rtol, abs=1e-12), f"{where} row {i} {column}: {a} != {b}"


@pytest.mark.parametrize("layout", sorted(RTOL))
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
        # columns added since the golden run (the bootstrap's intervals) are appended, and tested on their own
        assert list(got.columns[: len(want.columns)]) == list(want.columns), f"{case}/{name}"
        assert_frames_match(got[want.columns], want, f"{case}/{name}", RTOL[layout])
