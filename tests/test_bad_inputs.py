"""The corpus of bad inputs (tests/bad_inputs/) through the real entry point: each case ends in one error line (and
perhaps a hint) with the right exit code, never a traceback; a failed run leaves no output directory, and nothing
the user had is changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bad_inputs import CASE_NAMES, Case, Outcome, build_corpus, render_table, run_case
from bad_inputs.case import OUT, digest

DOCS_TABLE = Path(__file__).resolve().parent.parent / "docs" / "bad-inputs.md"


@pytest.fixture(scope="session")
def corpus_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bad-inputs")


@pytest.fixture(scope="session")
def corpus(corpus_root: Path) -> dict[str, Case]:
    """Every bad input, built once: name -> case."""
    return {c.name: c for c in build_corpus(corpus_root)}


@pytest.fixture(scope="session")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Outcome]]:
    """Each case's outcome, run once (its output under ROOT/NAME/out): test_bad_input records it, the table reads
    it back (or runs the case, when run alone)."""
    return tmp_path_factory.mktemp("bad-input-runs"), {}


def test_corpus_is_large_enough(corpus: dict[str, Case]) -> None:
    assert len(corpus) >= 40
    assert tuple(corpus) == CASE_NAMES


def check(case: Case, outcome: Outcome, out: Path, before: dict[Path, str]) -> None:
    """Everything a case must show: exit code, one line (+ hint), no traceback, no leftovers, nothing lost."""
    err, lines = outcome.stderr, outcome.lines
    assert "Traceback" not in err, err
    assert outcome.exit_code == case.exit_code, err
    for path in case.must_not_exist:
        assert not path.exists(), f"{case.name}: the input's code ran ({path} exists)"
    for path, was in before.items():
        assert digest(path) == was, f"{case.name}: {path} changed"
    if case.exit_code != 0:
        assert lines, err
        assert lines[0].startswith("error: "), err
        assert case.error in lines[0], err
        assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: ")), err
        if any(OUT in a for a in case.args) and out not in case.keep:
            assert not out.exists(), "a failed run left its output directory behind"
    elif case.warning:
        warnings = [ln for ln in lines if ln.startswith("warning: ")]
        assert warnings, err
        assert case.warning in warnings[0], err
        if (out / "run.json").exists():
            assert warnings[0] in json.loads((out / "run.json").read_text())["warnings"]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input(name: str, corpus: dict[str, Case], outcomes: tuple[Path, dict[str, Outcome]]) -> None:
    case = corpus[name]
    root, seen = outcomes
    out = root / name / "out"
    before = {p: digest(p) for p in case.keep}
    seen[name] = run_case(case, out)
    check(case, seen[name], out, before)


def test_table_shows_what_the_user_sees(
    corpus: dict[str, Case], corpus_root: Path, outcomes: tuple[Path, dict[str, Outcome]]
) -> None:
    """docs/bad-inputs.md is this run's output: regenerate it when a message changes."""
    root, seen = outcomes
    rows = [
        (case, seen[name] if name in seen else run_case(case, root / name / "out")) for name, case in corpus.items()
    ]
    table = render_table(rows, [corpus_root, root])
    assert "| `empty-file` | a file of 0 bytes | error: empty.pt: not a checkpoint" in table
    assert str(root) not in table
    assert str(corpus_root) not in table
    assert DOCS_TABLE.read_text() == table, (
        "docs/bad-inputs.md is out of date: python tests/make_bad_inputs.py --table docs/bad-inputs.md"
    )
