"""Reading runs back (interpscan/results.py): a whole run comes back with the dtypes it was written with; a partial,
damaged or foreign one is refused in one line that says what and where; plot and compare never write over an
input; and a run whose losses are all NaN is summarized, drawn and compared without a crash."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from bad_inputs.case import good_state
from conftest import run_cli, run_cli_output

import interpscan
from interpscan.errors import OutputError, UsageError
from interpscan.models import CNN
from interpscan.report import run_labels
from interpscan.results import load_run, load_runs, plot_results
from interpscan.schema import RESULT_COLUMNS, RESULT_DTYPES, SUMMARY_DTYPES


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


def damaged(source: Path, tmp_path: Path, name: str, content: str | None) -> Path:
    """A copy of run ``source`` with file ``name`` replaced by ``content`` (None: removed)."""
    target = tmp_path / "damaged"
    shutil.copytree(source, target)
    if content is None:
        (target / name).unlink()
    else:
        (target / name).write_text(content)
    return target


def test_a_run_reads_back_with_the_dtypes_it_was_written_with(saved: tuple[Any, Path, Path]) -> None:
    result, run, _ = saved
    loaded = load_run(run)
    assert list(loaded.results.columns) == RESULT_COLUMNS
    assert {c: str(loaded.results[c].dtype) for c in RESULT_DTYPES} == RESULT_DTYPES
    assert {c: str(loaded.summary[c].dtype) for c in SUMMARY_DTYPES} == SUMMARY_DTYPES
    assert loaded.results["alpha"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert loaded.results["loss"].tolist() == pytest.approx(result.results["loss"].tolist(), rel=1e-9)
    assert loaded.results["n"].tolist() == [8] * 5
    assert loaded.results["hold"].tolist() == [""] * 5  # empty labels stay empty strings, as in memory
    assert loaded.summary["monotone"].tolist() == result.summary["monotone"].tolist()
    # the CSVs hold 10 significant digits; otherwise what comes back is what was scanned, dtypes and all
    pd.testing.assert_frame_equal(loaded.results, result.results, rtol=1e-9)
    pd.testing.assert_frame_equal(loaded.summary, result.summary, rtol=1e-9)
    assert loaded.has_manifest
    assert loaded.manifest["grid"]["alphas"] == [0.0, 0.25, 0.5, 0.75, 1.0]


def _respelled(text: str, numeric: set[str], how: str) -> str:
    """The same table spelled another way: every field quoted, or the numbers padded with spaces."""
    lines = text.splitlines()
    header = lines[0].split(",")
    if how == "quoted":
        return "".join('"' + '","'.join(line.split(",")) + '"\r\n' for line in lines)
    padded = [
        ",".join(f" {f} " if h in numeric else f for h, f in zip(header, line.split(","), strict=True))
        for line in lines[1:]
    ]
    return "\n".join([lines[0], *padded]) + "\n"


@pytest.mark.parametrize("name", ["results.csv", "summary.csv"])
@pytest.mark.parametrize("how", ["quoted", "padded"])
def test_a_table_spelled_another_way_reads_the_same(
    saved: tuple[Any, Path, Path], tmp_path: Path, name: str, how: str
) -> None:
    """A plain file is split on commas and its numbers converted a column at a time; quotes and CRLF line ends
    send it through the csv module, and padded numbers through the cell-by-cell conversion: the same table."""
    dtypes = RESULT_DTYPES if name == "results.csv" else SUMMARY_DTYPES
    numeric = {c for c, d in dtypes.items() if d in ("float64", "int64")}
    for run in saved[1:]:
        plain = load_run(run)
        other = damaged(run, tmp_path / run.name / how, name, _respelled((run / name).read_text(), numeric, how))
        respelled = load_run(other)
        pd.testing.assert_frame_equal(respelled.results, plain.results, check_exact=True)
        pd.testing.assert_frame_equal(respelled.summary, plain.summary, check_exact=True)


def test_a_group_cut_away_at_a_row_end_is_found_without_run_json(saved: tuple[Any, Path, Path], tmp_path: Path) -> None:
    _, _, grouped = saved
    text = (grouped / "results.csv").read_text()
    lines = text.splitlines(keepends=True)
    run = damaged(grouped, tmp_path, "results.csv", "".join(lines[:-2]))  # fc's last two α are gone
    (run / "run.json").unlink()
    (run / "summary.csv").unlink()
    with pytest.raises(OutputError, match=r"curve fc on test has 3 α values, curve all on test 5"):
        load_run(run)


def test_a_group_cut_away_whole_is_found_by_run_json(saved: tuple[Any, Path, Path], tmp_path: Path) -> None:
    _, _, grouped = saved
    lines = (grouped / "results.csv").read_text().splitlines(keepends=True)
    run = damaged(grouped, tmp_path, "results.csv", "".join(line for line in lines if not line.startswith("fc,")))
    (run / "summary.csv").unlink()
    with pytest.raises(OutputError, match=r"no rows for 1 group\(s\) run.json lists \(fc\): the file is incomplete"):
        load_run(run)


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        ("results.csv", lambda t: t.replace("alpha", "alfa"), "not a results.csv: it lacks column(s) alpha"),
        ("results.csv", lambda t: t.replace("loss_se", "loss"), "column 'loss' appears more than once"),
        ("results.csv", lambda t: t.replace(",test,", ",,", 1), "line 2: the split is empty"),
        ("results.csv", lambda t: t.replace(",test,0,", ",test,inf,", 1), "line 2: α must be a finite number"),
        ("results.csv", lambda t: t.replace(",8,", ",-8,", 1), "line 2, column n: '-8' is not a whole number ≥ 0"),
        ("results.csv", lambda t: t.replace(",8,", ",８,", 1), "line 2, column n: '８' is not a number"),
        ("results.csv", lambda t: t.replace("\n", "\n\n"), None),  # blank lines are no rows
        ("results.csv", lambda t: t.replace("\n", "\r\n"), None),  # Windows line ends
        ("summary.csv", lambda t: t + t.splitlines(keepends=True)[1], "curve all on test has more than one row"),
        ("summary.csv", lambda t: t.splitlines(keepends=True)[0], "no row for curve all on test"),
        ("run.json", lambda t: t.replace('"alphas": [', '"alphas": [0.1, ', 1), "where run.json lists 6"),
    ],
)
def test_each_damage_is_named_with_where_it_is(
    saved: tuple[Any, Path, Path], tmp_path: Path, name: str, edit: Any, message: str | None
) -> None:
    _, run, _ = saved
    broken = damaged(run, tmp_path, name, edit((run / name).read_text()))
    if message is None:
        assert load_run(broken).results["loss"].notna().all()
        return
    with pytest.raises(OutputError) as info:
        load_run(broken)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_every_run_file_of_an_input_is_refused_as_the_page_even_with_force(
    saved: tuple[Any, Path, Path], tmp_path: Path
) -> None:
    _, source, grouped = saved
    run = tmp_path / "run"
    shutil.copytree(source, run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    for name in ("results.csv", "summary.csv", "run.json"):
        for given in (run, run / "results.csv"):
            with pytest.raises(OutputError, match=f"is {re.escape(name)} of the input run"):
                plot_results(given, run / name, force=True)
    with pytest.raises(OutputError, match=r"is results\.csv of the input run"):
        plot_results([grouped, run], run / "results.csv", force=True)  # not the first input either
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert plot_results(run, force=True, plotlyjs="cdn") == [run / "results.html"]  # beside the CSV, as before


def test_compare_refuses_an_output_directory_that_holds_a_run(
    saved: tuple[Any, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    _, run, grouped = saved
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    for out in (run, grouped):
        code, err = run_cli(monkeypatch, capsys, "compare", str(run), str(grouped), "--out", str(out), "--force")
        assert code == 2
        assert err.startswith(f"error: --out {out} holds a run (results.csv, summary.csv, run.json)")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert not (grouped / "compare.csv").exists()


@pytest.mark.parametrize("label", ["", "  ", "a\nb", "tab\there", "\u202eevil", "bell\x07"])
def test_labels_are_printable_names(saved: tuple[Any, Path, Path], label: str) -> None:
    _, run, grouped = saved
    with pytest.raises(UsageError, match=r"^label "):
        run_labels(load_runs([run, grouped]), [label, "other"])


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
    args = [
        "--model",
        "cnn",
        "--model-arg",
        "width=2",
        "--data",
        "fashion-mnist-small",
        "--samples",
        "8",
        "--alphas",
        "3",
    ]
    args += ["--bn", "interpolate"]
    code, err = run_cli(
        monkeypatch,
        capsys,
        "run",
        str(init),
        str(tmp_path / "nan.pt"),
        *args,
        "--out",
        str(out),
    )
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


FORMULA_NAMES = ["-2+3", "@SUM(A1)", "+cmd", "'quoted"]  # group names a spreadsheet would run (and the quote)


def test_names_that_read_as_formulas_are_quoted_and_read_back_as_they_were(tmp_path: Path) -> None:
    """Group names (and, alike, split names and compare's labels: anyone's) that start with =, +, -, @ went into
    results.csv as they were, and a spreadsheet ran them. Now such a text cell starts with a single quote, numbers
    never do (α = -0.5 stays a number), and ScanResult.load gives every name back exactly."""
    patterns = ["conv1*", "conv2*", "fc", "bn1*"]
    groups = [f"{name}={pattern}" for name, pattern in zip(FORMULA_NAMES, patterns, strict=True)]
    scan(groups=groups, alpha_range="-0.5,1").save(tmp_path / "run", html=False)
    for table in ("results.csv", "summary.csv"):
        rows = (tmp_path / "run" / table).read_text().splitlines()
        curves = {row.split(",")[0] for row in rows[1:]}
        assert curves == {"all", *(f"'{name}" for name in FORMULA_NAMES)}
    alphas = {row.split(",")[2] for row in (tmp_path / "run" / "results.csv").read_text().splitlines()[1:]}
    assert {"-0.5", "-0.125", "0", "1"} <= alphas
    back = interpscan.ScanResult.load(tmp_path / "run")
    assert set(back.results["curve"]) == {"all", *FORMULA_NAMES}
    assert set(back.summary["curve"]) == {"all", *FORMULA_NAMES}
    assert back.results["alpha"].min() == -0.5
