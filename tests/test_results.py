"""Reading runs back (interpscan/results.py): a run whose losses are all NaN is summarized, drawn and compared
without a crash."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from bad_inputs.case import good_state
from conftest import run_cli, run_cli_output

import interpscan
from interpscan.models import CNN
from interpscan.report import plot_results
from interpscan.results import load_run


def scan(final: dict[str, torch.Tensor] | None = None, **options: Any) -> Any:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 1, 28, 28, generator=gen), torch.randint(0, 10, (8,), generator=gen)
    final = good_state(1) if final is None else final
    return interpscan.scan(CNN(width=2), good_state(0), final, (x, y), alphas=5, bn="interpolate", **options)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, Path]:
    """A scan, and where it was saved: a whole-network run and a run with two groups."""
    root = tmp_path_factory.mktemp("runs")
    result = scan()
    result.save(root / "run", html=False)
    scan(groups=["conv*", "fc"]).save(root / "grouped", html=False)
    return result, root / "run", root / "grouped"


# --- a run whose every loss is NaN ---------------------------------------------------------------------------


def test_a_nan_run_is_summarized_drawn_and_compared(
    saved: tuple[Any, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    _, run, _ = saved
    final = good_state(1)
    final["fc.weight"][:] = float("nan")
    init = tmp_path / "init.pt"
    torch.save(good_state(0), init)
    torch.save(final, tmp_path / "nan.pt")
    out = tmp_path / "nan-run"
    args = ["--model", "cnn", "--model-arg", "width=2", "--samples", "8", "--alphas", "3", "--bn", "interpolate"]
    code, err = run_cli(monkeypatch, capsys, "run", str(init), str(tmp_path / "nan.pt"), *args, "--out", str(out))
    assert code == 0, err
    assert "Traceback" not in err
    row = next(line for line in err.splitlines() if line.startswith("│ all"))
    assert [cell.strip() for cell in row.strip("│").split("│")] == ["all", "test", "nan", "nan", "nan", "—"] + [
        "nan @nan"
    ] * 2
    assert "warning: all on test has 3 point(s) with a non-finite loss" in err
    assert "<!DOCTYPE html>" in (out / "results.html").read_text(encoding="utf-8")
    summary = load_run(out).summary
    assert summary["monotone"].isna().all()
    assert math.isnan(summary["delta"].iloc[0])

    page = tmp_path / "again.html"
    assert plot_results(out, page, plotlyjs="cdn") == [page]
    assert '<td data-value=""></td>' in page.read_text(encoding="utf-8")  # NaN and NA cells are blank

    code, stdout, err = run_cli_output(
        monkeypatch, capsys, "compare", str(run), str(out), "-l", "good", "-l", "nan", "--out", str(tmp_path / "cmp")
    )
    assert code == 0, err
    nan_row = next(line for line in stdout.splitlines() if line.startswith("│ nan"))
    assert "—" in nan_row
    assert "nan" in nan_row
    table = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    assert table["final_loss"].isna().tolist() == [False, True]
    assert json.loads((out / "run.json").read_text())["warnings"]
