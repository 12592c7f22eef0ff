"""The one error hierarchy: every mistake a user can make surfaces as an InterpscanError.

The CLI catches InterpscanError in exactly one place and prints ``message`` plus ``hint`` on one line each.
Anything else that reaches that place is a failure no check foresaw (the system refusing a write, memory running
out) or a bug: it too is one line and a hint, exit code 1, and INTERPSCAN_DEBUG=1 shows its traceback.

A message names an option with ``opt("batch_size")`` (or ``opt("batch_size", 0)`` with the value given): the
library's own words (``batch_size``, ``batch_size=0``) wherever the message is read, and the command line's
(``--batch-size``, ``--batch-size 0``) where the CLI renders it with its table of flags (``render``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from enum import Enum
from typing import Any

# An option named in a message: private-use characters no message of ours holds around a JSON payload
_OPEN, _CLOSE = "\ue000", "\ue001"
_NAMED = re.compile(f"{_OPEN}(.*?){_CLOSE}", re.DOTALL)
_NO_VALUE = object()


def opt(name: str, value: Any = _NO_VALUE) -> str:
    """An option's name, and optionally the value it was given, for a message: rendered as ``name`` /
    ``name=value`` by the library and as ``--flag`` / ``--flag value`` by the command line (``render``)."""
    value = getattr(value, "value", value) if isinstance(value, Enum) else value  # a choice: its text
    if value is _NO_VALUE:
        payload: list[Any] = [name]
    elif isinstance(value, bool) or value is None:
        payload = [name, value]
    else:
        shown = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
        payload = [name, _clean(shown), _clean(repr(value))]
    return f"{_OPEN}{json.dumps(payload, ensure_ascii=False)}{_CLOSE}"


def _clean(text: str) -> str:
    """A value's text without the characters that mark an option (a user's value may hold anything)."""
    return text.replace(_OPEN, "\ufffd").replace(_CLOSE, "\ufffd")


def _option(payload: list[Any], flags: Mapping[str, str] | None) -> str:
    name = str(payload[0])
    if flags is None:  # the library's words: the parameter, as Python would write it
        if len(payload) == 1:
            return name
        return f"{name}={payload[1]!r}" if len(payload) == 2 else f"{name}={payload[2]}"
    flag = flags.get(name, name)  # a name the table lacks is said as it is
    if len(payload) == 1:
        return flag
    if len(payload) == 2:  # a switch: --strict / --no-strict; None: the flag left out
        value = payload[1]
        return f"{flag}" if value else f"no {flag}" if value is None else f"--no-{flag.removeprefix('--')}"
    return f"{flag} {payload[1]}"


def render(text: str, flags: Mapping[str, str] | None = None) -> str:
    """``text`` with every option named by ``opt`` in the library's words (``flags`` None) or as the command line
    spells it (``flags``: parameter name -> flag; a name not in it is said as it is)."""

    def one(match: re.Match[str]) -> str:
        try:
            payload = json.loads(match.group(1))
        except ValueError:  # not ours after all: leave the text as it is
            return match.group(0)
        return _option(payload, flags) if isinstance(payload, list) and payload else match.group(0)

    return _NAMED.sub(one, text) if _OPEN in text else text


LONG_WORD = 400  # characters of one word (a value, a path) an error shows whole; a path rarely needs more
_LONG = re.compile(rf"\S{{{LONG_WORD + 1},}}")


def _cut(match: re.Match[str]) -> str:
    word = match.group()
    return f"{word[: LONG_WORD // 2]}…{word[-LONG_WORD // 4 :]} ({len(word):,} characters)"


def _one_line(text: str) -> str:
    """``text`` on one line: an error is one line on the terminal, and text quoted from elsewhere (a user's
    value holding a newline, pandas' messages ending in one) must not break it."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _shown(text: str) -> str:
    """A rendered message on one line, each word longer than LONG_WORD (a user's 100 KB pattern, echoed) cut in
    the middle with its length said: the one place every echo of a user's value passes."""
    line = _one_line(text)
    return _LONG.sub(_cut, line) if len(line) > LONG_WORD else line


class InterpscanError(Exception):
    """Base class: a problem the user can fix. ``hint`` says how; ``exit_code`` 2 = bad input, 1 = failed run."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.text = _one_line(message)  # with the options named by ``opt`` still marked
        self.hint_text = None if hint is None else _one_line(hint)
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The message in the library's words."""
        return _shown(render(self.text))

    @property
    def hint(self) -> str | None:
        """How to fix it, in the library's words."""
        return None if self.hint_text is None else _shown(render(self.hint_text))

    def rendered(self, flags: Mapping[str, str]) -> tuple[str, str | None]:
        """(message, hint) as the command line says them: options named by their flags. One line each: a value
        the command line shows as given (``--key 'a<newline>b'``) may hold a line break the marks kept."""
        hint = None if self.hint_text is None else _shown(render(self.hint_text, flags))
        return _shown(render(self.text, flags)), hint

    def __str__(self) -> str:
        return self.message


class UsageError(InterpscanError, ValueError):
    """Flags that cannot be combined, or a value outside its range."""


class CheckpointError(InterpscanError, ValueError):
    """A checkpoint file that cannot be read, or whose contents are not a set of named tensors."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint path that does not exist."""


class ModelError(InterpscanError, ValueError):
    """A model spec that cannot be resolved, or a model that does not match the checkpoints."""


class DataError(InterpscanError, ValueError):
    """A dataset that cannot be found, read, or used with the model."""


class OutputError(InterpscanError, OSError):
    """An output location that cannot be written without losing something the user had."""


class RunError(InterpscanError, RuntimeError):
    """The scan itself failed (e.g. the model raised during its forward pass)."""

    exit_code = 1


class LostContact(RunError):
    """A process of a distributed scan (torchrun) lost its peers: one died, or a collective timed out. Whatever
    each process had finished stays saved for --resume."""


class Stopped(RunError):
    """A process of a distributed scan stopped because another one failed, which reports the cause: this one
    says nothing more."""


class Interrupted(InterpscanError):
    """The user stopped the run (Ctrl-C, SIGTERM); what was finished is saved. Exit code 130, as for SIGINT."""

    exit_code = 130
