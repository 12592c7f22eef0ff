"""The corpus of bad checkpoints (tests/make_bad_checkpoints.py) through `interpscan run`: each case ends in one
error line (and perhaps a hint) with the right exit code, never a traceback, and leaves no output directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli
from make_bad_checkpoints import CASE_NAMES, Case, build_corpus, cli_args, render_table, run_case

DOCS_TABLE = Path(__file__).resolve().parent.parent / "docs" / "bad-inputs.md"


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    """Every bad input, built once: name -> case."""
    return {c.name: c for c in build_corpus(tmp_path_factory.mktemp("bad-checkpoints"))}


def test_corpus_is_large_enough(corpus: dict[str, Case]) -> None:
    assert len(corpus) >= 30
    assert sum(c.exit_code == 0 for c in corpus.values()) == 2  # only the NaN and Inf weights run


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input(
    name: str,
    corpus: dict[str, Case],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    case = corpus[name]
    out = tmp_path / "out"
    code, err = run_cli(monkeypatch, capsys, *cli_args(case, out))
    assert "Traceback" not in err
    assert code == case.exit_code, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    for path in case.must_not_exist:
        assert not path.exists(), f"{name}: the file's code ran"
    if case.exit_code != 0:
        assert lines[0].startswith("error: "), err
        assert case.error in lines[0]
        assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: ")), err
        assert not out.exists(), "a failed run left its output directory behind"
    else:
        assert [ln for ln in lines if ln.startswith("warning: ")] == [lines[0]]
        assert case.warning in lines[0]
        manifest = json.loads((out / "run.json").read_text())
        assert manifest["warnings"] == [lines[0]]


def test_table_shows_what_the_user_sees(corpus: dict[str, Case], tmp_path: Path) -> None:
    """docs/bad-inputs.md is this run's output: regenerate it when a message changes."""
    rows = [(case, run_case(case, tmp_path / name)) for name, case in corpus.items()]
    table = render_table(rows)
    assert len(table.splitlines()) == 9 + len(corpus)
    assert "| `empty-file` | a file of 0 bytes | error: empty.pt: not a checkpoint" in table
    assert str(tmp_path) not in table
    assert DOCS_TABLE.read_text() == table, (
        "docs/bad-inputs.md is out of date: python tests/make_bad_checkpoints.py --table docs/bad-inputs.md"
    )
