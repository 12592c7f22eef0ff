"""The corpus of bad inputs: every kind of input a careless user or an attacker hands interpscan, by section, with
what the user must see. tests/test_bad_inputs.py runs each case through the real entry point; docs/bad-inputs.md is
the table it renders.

    python tests/make_bad_inputs.py DIR                       # write the corpus into DIR
    python tests/make_bad_inputs.py --table docs/bad-inputs.md  # run every case through the CLI, write the table

A section is a module with ``TITLE``, ``NAMES`` (its cases, in order, so tests can be parametrized before anything is
built) and ``build(root) -> list[Case]``.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType, ModuleType

from . import checkpoints, data, flags, formats, hub, outputs, process, results, runs, streams
from .case import Case

SECTIONS: tuple[ModuleType, ...] = (checkpoints, formats, hub, data, flags, runs, outputs, results, streams, process)
CASE_NAMES: tuple[str, ...] = tuple(name for section in SECTIONS for name in section.NAMES)
TIMEOUT_S = 60  # a case that hangs (a FIFO, a lock never released) fails instead of stalling the suite


def build_corpus(directory: str | Path) -> list[Case]:
    """Write every section's bad inputs under ``directory`` (one folder per section); return the cases in order."""
    root = Path(directory)
    cases: list[Case] = []
    for section in SECTIONS:
        folder = root / section.__name__.rsplit(".", 1)[-1]
        folder.mkdir(parents=True, exist_ok=True)
        built = section.build(folder)
        assert tuple(c.name for c in built) == section.NAMES, f"update {section.__name__}.NAMES to match its cases"
        cases += [replace(c, section=section.TITLE) for c in built]
    assert len({c.name for c in cases}) == len(cases), "case names must be unique"
    return cases


@dataclass(frozen=True)
class Outcome:
    """What the CLI did with one case."""

    exit_code: int
    stderr: str

    @property
    def lines(self) -> list[str]:
        return [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]

    @property
    def first_line(self) -> str:
        """The line a user reads first: the error, else the first warning, else the first line."""
        for prefix in ("error:", "warning:"):
            found = [ln for ln in self.lines if ln.startswith(prefix)]
            if found:
                return found[0]
        return self.lines[0] if self.lines else ""


class _Hung(Exception):
    pass


@contextlib.contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    def expire(signum: int, frame: FrameType | None) -> None:
        raise _Hung(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_case(case: Case, out: Path) -> Outcome:
    """Run one case through the real entry point in-process, capturing stderr (stdout is dropped)."""
    from interpscan.cli import main

    argv, err = sys.argv, io.StringIO()
    sys.argv = ["interpscan", *case.argv(out)]
    os.environ.pop("INTERPSCAN_DEBUG", None)
    code = 0
    try:
        with (
            _environment(dict(case.env)),
            _deadline(TIMEOUT_S),
            contextlib.redirect_stderr(err),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    return Outcome(code, err.getvalue())


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` set in os.environ while the block runs; each variable as it was afterwards."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def shown(outcome: Outcome, roots: Sequence[Path]) -> str:
    """The first line as the table shows it: paths under ``roots`` (the corpus, the outputs) shortened to what
    follows their first folder, process-dependent details elided."""
    seen = outcome.first_line
    for root in roots:
        seen = re.sub(re.escape(str(root)) + r"/[^/\s]+/", "", seen)
    # safetensors checks a header's tensors in hash-map order, so which problem it names varies from process to
    # process; keep the table stable
    seen = re.sub(r"(Error while deserializing header: )[^)]*", r"\1…", seen)
    return re.sub(r"pid \d+", "pid N", seen)


def render_table(rows: Sequence[tuple[Case, Outcome]], roots: Sequence[Path]) -> str:
    """The bad-input tables as Markdown, one per section: case, what is wrong, what the user sees, exit code."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        "# Bad inputs: what the user sees",
        "",
        "Generated by `python tests/make_bad_inputs.py --table docs/bad-inputs.md` from the corpus that",
        "`tests/test_bad_inputs.py` runs through the real entry point; each case is checked for its exit code, a",
        "one-line message (plus at most a hint), no traceback, no output left by a failed run, and nothing the user",
        "had changed. Paths are shortened to the file name. Exit codes: 0 ran, 1 the run failed, 2 bad input.",
        "",
        f"{len(rows)} cases.",
    ]
    section = None
    for case, outcome in rows:
        if case.section != section:
            section = case.section
            count = sum(c.section == section for c, _ in rows)
            lines += ["", f"## {section} ({count})", "", "| case | input | what the user sees (first line) | exit |"]
            lines.append("|---|---|---|---|")
        seen = shown(outcome, roots)
        lines.append(f"| `{case.name}` | {cell(case.description)} | {cell(seen)} | {outcome.exit_code} |")
    return "\n".join(lines) + "\n"
