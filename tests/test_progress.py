"""Progress where someone watches and nowhere else: a bar in a terminal, nothing but one closing line in a pipe or
a log (also when the console is forced to colour, as notebook front ends do for ``!interpscan``), and the
callback's ``(n, total)`` meaning the increment."""

from __future__ import annotations

import io
import os

import pytest
from conftest import run_cli_output
from rich.console import Console

from interpscan.progress import place, watch


def test_place_is_a_terminal_only_for_a_real_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    master, replica = os.openpty()
    try:
        with open(replica, "w", closefd=False) as tty:
            monkeypatch.setenv("TERM", "xterm")
            assert place(Console(file=tty)) == "terminal"
            monkeypatch.setenv("TERM", "dumb")
            assert place(Console(file=tty)) == "none"
    finally:
        os.close(master)
        os.close(replica)
    # forced colour makes rich call a pipe a terminal; a bar redrawn there floods the log
    forced = Console(file=io.StringIO(), force_terminal=True)
    assert forced.is_terminal
    assert place(forced) == "none"


def test_nowhere_to_watch_counts_and_says_one_line() -> None:
    said: list[str] = []
    with watch("none", done=said.append) as progress:
        assert progress is not None
        for _ in range(5):
            progress(3, 15)
    assert len(said) == 1, said
    assert said[0].startswith("scanning: 15 point×batch evaluations in 0:0"), said
    with watch("none") as progress:
        assert progress is None  # nobody to tell: nothing counted


def test_a_failed_scan_says_no_closing_line() -> None:
    said: list[str] = []

    def failing_scan() -> None:
        with watch("none", done=said.append) as progress:
            assert progress is not None
            progress(1, 2)
            raise RuntimeError("the scan failed")

    with pytest.raises(RuntimeError):
        failing_scan()
    assert said == []


def test_the_cli_never_redraws_a_bar_into_a_pipe(monkeypatch, capsys, ckpts) -> None:  # type: ignore[no-untyped-def]
    import interpscan.cli

    # what FORCE_COLOR=1 (set by notebook front ends for `!interpscan`) makes of stderr: rich's "terminal"
    monkeypatch.setattr(interpscan.cli, "err", Console(stderr=True, force_terminal=True, highlight=False, markup=False))
    args = ["run", *map(str, ckpts), "--data", "fashion-mnist-small", "--model", "cnn", "--model-arg", "width=4"]
    args += ["--samples", "100", "--split", "test", "--alphas", "3", "--bn", "interpolate", "--batch-size", "50"]
    code, _, err = run_cli_output(monkeypatch, capsys, *args, "--no-html", "--out", str(ckpts[0].parent / "o"))
    assert code == 0, err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if "point×batch" in line]
    assert len(lines) == 1, err
    assert lines[0].startswith("scanning: 6 point×batch evaluations in "), err
    code, _, err = run_cli_output(monkeypatch, capsys, *args, "--no-html", "-q", "--out", str(ckpts[0].parent / "q"))
    assert code == 0, err
    assert "point×batch" not in err, err
