"""One bad input and what the user must see: the unit of the corpus (tests/bad_inputs/), shared by its sections."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

# The fast run most cases go through: a tiny conv net, 16 examples, the two endpoints.
MODEL_ARGS = ("--model", "cnn", "--model-arg", "width=2")
RUN_ARGS = (
    *MODEL_ARGS,
    *("--data", "fashion-mnist-small", "--samples", "16", "--alphas", "2", "--bn", "interpolate", "-q", "--no-html"),
)
OUT = "{out}"  # stands for a fresh path (under the test's temporary folder) in a case's arguments


@dataclass(frozen=True)
class Case:
    """One bad input: the command line to run and what the user must see.

    ``args`` follow ``interpscan``; ``{out}`` in them stands for a fresh output path. A case that fails must
    leave no ``{out}`` behind; every path in ``keep`` must hold the same bytes afterwards (nothing the user had
    is lost), and no path in ``must_not_exist`` may appear (a payload that would have run writes one). ``env``
    holds environment variables the user had set (torchrun's, interpscan's own), set only while the case runs.
    """

    name: str
    description: str  # what is wrong, for the table
    args: tuple[str, ...]
    exit_code: int  # 2 bad input, 1 failed run, 0 ran (perhaps with a warning)
    error: str  # a substring of the first "error: …" line; "" when the command succeeds
    warning: str = ""  # a substring of the first warning line, for inputs that run
    must_not_exist: tuple[Path, ...] = field(default=())
    keep: tuple[Path, ...] = field(default=())
    section: str = ""  # filled in by build_corpus
    env: tuple[tuple[str, str], ...] = field(default=())  # environment variables set while the case runs

    def argv(self, out: Path) -> list[str]:
        return [a.replace(OUT, str(out)) for a in self.args]


def fast_args(*extra: str) -> tuple[str, ...]:
    """RUN_ARGS, then ``extra``; a ``--data`` in ``extra`` takes the place of RUN_ARGS' (``--data`` is repeatable:
    two would be the two sources of one scan)."""
    if "--data" not in extra:
        return (*RUN_ARGS, *extra)
    at = RUN_ARGS.index("--data")
    return (*RUN_ARGS[:at], *RUN_ARGS[at + 2 :], *extra)


def run_args(init: Path | str, final: Path | str, *extra: str, out: Path | str = OUT) -> tuple[str, ...]:
    """`interpscan run INIT FINAL` with the fast settings, writing to ``out`` (a fresh path by default)."""
    return ("run", str(init), str(final), *fast_args(*extra), "--out", str(out))


def good_state(seed: int = 0, width: int = 2) -> dict[str, torch.Tensor]:
    """A valid state dict of ``cnn width=WIDTH`` (1 input channel, 10 classes)."""
    from interpscan.models import CNN

    torch.manual_seed(seed)
    return {k: v.detach().clone() for k, v in CNN(width=width).state_dict().items()}


def digest(path: Path) -> str:
    """The bytes under ``path`` (a file, or every file of a folder by relative name), as one sha256."""
    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(str(p.relative_to(path)).encode() + b"\0" + p.read_bytes())
    elif path.exists():
        h.update(path.read_bytes())
    else:
        h.update(b"<absent>")
    return h.hexdigest()
