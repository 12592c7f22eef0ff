"""The one error hierarchy: every mistake a user can make surfaces as an InterpscanError.

The CLI catches InterpscanError in exactly one place and prints ``message`` plus ``hint`` on one line each.
Anything else that reaches that place is a failure no check foresaw (the system refusing a write, memory running
out) or a bug: it too is one line and a hint, exit code 1, and INTERPSCAN_DEBUG=1 shows its traceback.
"""

from __future__ import annotations


def _one_line(text: str) -> str:
    """``text`` on one line: an error is one line on the terminal, and text quoted from elsewhere (a user's
    value holding a newline, pandas' messages ending in one) must not break it."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


class InterpscanError(Exception):
    """Base class: a problem the user can fix. ``hint`` says how; ``exit_code`` 2 = bad input, 1 = failed run."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        message = _one_line(message)
        super().__init__(message)
        self.message = message
        self.hint = None if hint is None else _one_line(hint)

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
