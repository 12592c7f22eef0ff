"""What a scan measures at each point: a per-sample loss and, for classification, accuracy.

An Objective scores a batch of model outputs against targets, one loss value per example, so that means and
standard errors come out of the same numbers. ``check`` validates shapes once, before the scan's loop.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import DataError, RunError, UsageError, opt

IGNORE_INDEX = -100  # cross-entropy's ignore_index: an example with this label is left out of every mean


def _shapes(outputs: torch.Tensor, targets: torch.Tensor) -> str:
    return f"the model's output has shape {list(outputs.shape)} and the targets {list(targets.shape)}"


def _check_classification(outputs: torch.Tensor, targets: torch.Tensor) -> None:
    shapes = _shapes(outputs, targets)
    if outputs.dim() != 2 or outputs.shape[0] != targets.shape[0] or targets.dim() != 1:
        raise DataError(
            f"{shapes}; cross-entropy needs outputs (batch, classes) and integer targets (batch,)",
            hint=f"for regression targets use {opt('loss', 'mse')}",
        )
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise DataError(
            f"{shapes}; cross-entropy needs integer class targets, got {str(targets.dtype).removeprefix('torch.')}",
            hint=f"for regression targets use {opt('loss', 'mse')}",
        )
    _classification_labels(outputs, targets)


def _classification_labels(outputs: torch.Tensor, targets: torch.Tensor) -> int:
    """Every label is a class the model outputs, or IGNORE_INDEX; how many are IGNORE_INDEX."""
    ignored = targets == IGNORE_INDEX
    counted = targets[~ignored]
    if counted.numel():
        low, top = int(counted.min()), int(counted.max())
        if low < 0:
            raise DataError(
                f"{_shapes(outputs, targets)}: targets include class {low}; class labels run from 0 to classes − 1",
                hint=f"only {IGNORE_INDEX} (cross-entropy's ignore_index) may mark an example to leave out",
            )
        if top >= outputs.shape[-1]:
            raise DataError(
                f"{_shapes(outputs, targets)}: targets go up to class {top} but the model outputs "
                f"{outputs.shape[-1]} classes",
                hint=f"check num_classes ({opt('model_args', 'num_classes=...')}) against the dataset",
            )
    return int(ignored.sum())


def _cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs.float(), targets, reduction="none")


def _squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # (B, ...) -> (B,): mean squared error over each example's outputs
    return (outputs.float() - targets.float().view_as(outputs)).pow(2).flatten(1).mean(1)


def _check_regression(outputs: torch.Tensor, targets: torch.Tensor) -> None:
    if outputs.shape[0] != targets.shape[0] or outputs.numel() != targets.numel():
        raise DataError(
            f"the model's output has shape {list(outputs.shape)} but the targets {list(targets.shape)}; "
            "mse needs one target value per output value",
        )


def _no_labels(outputs: torch.Tensor, targets: torch.Tensor) -> int:
    return 0


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def _check_next_token(outputs: torch.Tensor, targets: torch.Tensor) -> None:
    shapes = _shapes(outputs, targets)
    if outputs.dim() != 3 or targets.dim() != 2 or outputs.shape[:2] != targets.shape:
        raise DataError(
            f"{shapes}; next-token cross-entropy needs logits (batch, tokens, vocabulary) and labels (batch, tokens)",
            hint="a causal language model's data holds input_ids, attention_mask and labels (the input_ids, -100 at "
            "padding)",
        )
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise DataError(f"{shapes}; next-token labels are token ids, got {str(targets.dtype).removeprefix('torch.')}")
    _classification_labels(outputs, targets)


def _next_token_outputs(outputs: torch.Tensor) -> torch.Tensor:
    # (P, B, T, V) -> (P, B·(T−1), V): the logits at position t predict token t + 1
    return outputs[:, :, :-1].reshape(outputs.shape[0], -1, outputs.shape[-1])


def _next_token_targets(targets: torch.Tensor) -> torch.Tensor:
    # (B, T) -> (B·(T−1),): the labels shifted left, as transformers' causal-LM loss shifts them
    return targets[:, 1:].reshape(-1)


@dataclass(frozen=True)
class Objective:
    """A per-sample loss ``(outputs (B, …), targets (B, …)) -> (B,)`` and whether accuracy is defined.

    ``check`` validates a split's shapes and dtypes on its first batch; ``labels`` checks the targets of every
    batch (a bad label in the last batch is as wrong as one in the first) and returns how many examples it
    leaves out (cross-entropy's ignore_index: their loss and correctness are 0, so only the count changes).

    ``examples_of_outputs`` (points' outputs (P, B, …)) and ``examples_of_targets`` (B, …) say what one example
    is, when it is not one row of the batch: for ``next_token`` each predicted token is one (so the mean is over
    tokens, as a language model's loss and perplexity are). ``check`` sees the batch as the model gave it, the
    rest the examples.
    """

    name: str
    per_sample: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    classification: bool
    check: Callable[[torch.Tensor, torch.Tensor], None]
    labels: Callable[[torch.Tensor, torch.Tensor], int] = _no_labels
    examples_of_outputs: Callable[[torch.Tensor], torch.Tensor] = _same
    examples_of_targets: Callable[[torch.Tensor], torch.Tensor] = _same

    @property
    def per_token(self) -> bool:
        """Each example is a token of a sequence (targets (N, T) of token ids), not a row of the data."""
        return self.examples_of_targets is not _same


CROSS_ENTROPY = Objective("cross_entropy", _cross_entropy, True, _check_classification, _classification_labels)
MSE = Objective("mse", _squared_error, False, _check_regression)
# A causal language model's loss: cross-entropy of each next token (labels -100 left out), accuracy of its argmax.
NEXT_TOKEN = Objective(
    "next_token",
    _cross_entropy,
    True,
    _check_next_token,
    _classification_labels,
    _next_token_outputs,
    _next_token_targets,
)
OBJECTIVES = {o.name: o for o in (CROSS_ENTROPY, MSE, NEXT_TOKEN)}


def _custom_check(name: str, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[..., None]:
    def check(outputs: torch.Tensor, targets: torch.Tensor) -> None:
        shapes = f"outputs {list(outputs.shape)} and targets {list(targets.shape)}"
        if outputs.shape[0] != targets.shape[0]:
            raise DataError(
                f"{opt('loss', name)}: the model's output has shape {list(outputs.shape)} but the targets "
                f"{list(targets.shape)}; they differ in batch size"
            )
        try:
            losses = fn(outputs, targets)
        except Exception as exc:  # the user's function: any error is about the shapes or dtypes it got
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise DataError(
                f"{opt('loss', name)} raised {type(exc).__name__} on {shapes}" + (f": {msg}" if msg else "")
            ) from exc
        if (
            not isinstance(losses, torch.Tensor)
            or losses.shape != (outputs.shape[0],)
            or not losses.is_floating_point()
        ):
            got = (
                f"shape {list(losses.shape)} {str(losses.dtype).removeprefix('torch.')}"
                if isinstance(losses, torch.Tensor)
                else type(losses).__name__
            )
            raise DataError(
                f"{opt('loss', name)} returned {got} for {shapes}; a per-sample loss returns a float tensor of shape "
                f"[{outputs.shape[0]}] (one value per example)",
                hint="reduce over every dimension but the first, e.g. .flatten(1).mean(1), and do not average "
                "over the batch",
            )

    return check


def parse_objective(text: str) -> Objective:
    """Resolve ``--loss``: ``cross_entropy`` (classification, with accuracy), ``mse`` (regression), ``next_token``
    (a causal language model: per-token cross-entropy over the tokens not labelled -100, with next-token
    accuracy; chosen on its own for a transformers causal LM), or a custom
    per-sample loss ``path/to/file.py:fn`` / ``package.module:fn`` with ``fn(outputs (B, …), targets (B, …)) ->
    (B,)`` (no accuracy).

    Raises:
        UsageError: an unknown name, or a function that cannot be imported.
    """
    name = text.strip().replace("-", "_")
    if name in OBJECTIVES:
        return OBJECTIVES[name]
    from .usercode import is_callable_spec, load_callable

    if not is_callable_spec(text):
        raise UsageError(
            f"{opt('loss')} {text!r} is not a loss",
            hint=f"use {', '.join(OBJECTIVES)}, path/to/file.py:fn or package.module:fn",
        )
    fn = load_callable(text, option="loss", error=UsageError)
    return Objective(text, _guarded(text, fn), False, _custom_check(text, fn))


def _guarded(name: str, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[..., torch.Tensor]:
    """The user's loss, its errors on any batch (not only the first, which ``check`` tries) as one line."""

    @functools.wraps(fn)  # keeps fn as __wrapped__: a resume's fingerprint hashes fn's source file
    def per_sample(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        try:
            return fn(outputs, targets)
        except Exception as exc:  # the user's function
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise RunError(
                f"{opt('loss', name)} raised {type(exc).__name__} on outputs {list(outputs.shape)} and targets "
                f"{list(targets.shape)}" + (f": {msg}" if msg else ""),
                hint="INTERPSCAN_DEBUG=1 shows the traceback",
            ) from exc

    return per_sample
