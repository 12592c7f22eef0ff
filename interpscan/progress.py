"""Showing a scan's progress where someone is watching, and nowhere else.

A scan reports progress as ``(n, total)``: ``n`` more (point, batch) evaluations just finished, of ``total``
(the whole scan's, estimated; None while a stream's length is unknown). ``watch`` turns that into what suits the
place the process runs in:

- a terminal (stderr is a TTY): a rich bar that redraws in place and goes away when the scan ends;
- a Jupyter notebook (an IPython kernel): one HTML line updated in place through a display handle, so the saved
  notebook keeps a single output however long the scan ran (no ipywidgets needed, and nothing left in widget
  state that an exported notebook would drop);
- anywhere else (a pipe, a file, a job log, ``!interpscan`` in a notebook cell): nothing while it runs, one line
  when it ends.
"""

from __future__ import annotations

import html
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from rich.console import Console

Progress = Callable[[int, int | None], None]
Place = Literal["terminal", "notebook", "none"]

_NOTEBOOK_UPDATES = 0.25  # seconds between two redraws of the notebook line: each is a message to the front end


def place(console: Console | None = None) -> Place:
    """Where progress would be seen: an interactive terminal on stderr, a notebook's kernel, or neither.

    A console forced to colour (FORCE_COLOR, as some notebook front ends set for their subprocesses) is not a
    terminal here: only a real TTY is redrawn in place.
    """
    if _in_notebook():
        return "notebook"
    stream = console.file if console is not None else sys.stderr
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        tty = False
    if tty and os.environ.get("TERM") != "dumb":
        return "terminal"
    return "none"


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (ZMQInteractiveShell), without importing IPython where nobody did."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


@contextmanager
def watch(
    where: Place, *, label: str = "scanning", console: Console | None = None, done: Callable[[str], None] | None = None
) -> Iterator[Progress | None]:
    """A progress callback for ``where`` (see ``place``), or None where nothing is shown while it runs.

    ``done`` is told one line when the scan ends (how many evaluations, how long), wherever the bar was not seen
    redrawing: under ``"none"``.
    """
    if where == "terminal":
        with _terminal_bar(label, console) as progress:
            yield progress
    elif where == "notebook":
        with _notebook_bar(label) as progress:
            yield progress
    elif done is None:
        yield None
    else:
        with _counted(label, done) as progress:
            yield progress


@contextmanager
def _terminal_bar(label: str, console: Console | None) -> Iterator[Progress]:
    """A rich bar over (point, batch) evaluations. It starts at the first report, i.e. once the inputs have been
    checked, so an early error prints alone; it is transient (the summary follows where it was)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    bar = Bar(
        TextColumn(label, style="bold"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("point×batch"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=True,
    )
    task = bar.add_task(label, total=None)

    def advance(n: int, total: int | None) -> None:
        if not bar.live.is_started:
            bar.start()
        bar.update(task, advance=n, total=total)

    try:
        yield advance
    finally:
        if bar.live.is_started:
            bar.stop()


class _NotebookLine:
    """One output of a notebook cell, rewritten in place: an HTML <progress> with counts, elapsed time and ETA,
    and the same as text for front ends that show text only."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.done = 0
        self.total: int | None = None
        self.start = time.monotonic()
        self.drawn = 0.0
        self.handle: Any = None

    def advance(self, n: int, total: int | None) -> None:
        self.done += n
        self.total = total
        now = time.monotonic()
        if self.handle is None or now - self.drawn >= _NOTEBOOK_UPDATES:
            self.draw(now)

    def draw(self, now: float, *, final: bool = False) -> None:
        from IPython.display import display

        elapsed = now - self.start
        total = self.total if self.total is not None and self.total >= self.done else None
        if final:
            total = self.done
        count = f"{self.done:,}" if total is None else f"{self.done:,}/{total:,}"
        text = f"{self.label}: {count} point×batch, {_clock(elapsed)}"
        if total and self.done and not final:
            text += f", ETA {_clock(elapsed * (total - self.done) / self.done)}"
        bar = f'<progress value="{self.done}" max="{total}"></progress>' if total else "<progress></progress>"
        # both representations in one output: the HTML where it renders, the text where only text does
        bundle = {"text/plain": text, "text/html": f"<div><code>{bar} {html.escape(text)}</code></div>"}
        if self.handle is None:
            self.handle = display(bundle, raw=True, display_id=True)  # type: ignore[no-untyped-call]
        else:
            self.handle.update(bundle, raw=True)
        self.drawn = now


@contextmanager
def _notebook_bar(label: str) -> Iterator[Progress]:
    line = _NotebookLine(label)
    try:
        yield line.advance
    finally:
        if line.handle is not None:
            line.draw(time.monotonic(), final=True)


@contextmanager
def _counted(label: str, done: Callable[[str], None]) -> Iterator[Progress]:
    """No drawing: the evaluations are counted, and one line says how many and how long at the end."""
    count = [0]
    start = time.monotonic()

    def advance(n: int, total: int | None) -> None:
        count[0] += n

    yield advance
    if count[0]:
        done(f"{label}: {count[0]:,} point×batch evaluations in {_clock(time.monotonic() - start)}")


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
