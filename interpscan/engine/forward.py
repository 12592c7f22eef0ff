"""The one place the user's forward pass is called: how inputs are passed, what of the output is scored, and
how its errors reach the user.

Only an exception raised inside the model's forward (a shape that does not fit, an op vmap cannot batch) becomes
a RunError with one line and a hint; anything raised by interpscan's own code keeps its traceback, and running
out of memory is left to the caller (the batched strategy retries with fewer points).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..data.batches import Inputs
from ..errors import DataError, InterpscanError, RunError, opt
from ..usercode import ExitCalled

# Phrases of errors that mean the data does not fit the model, as torch words them.
_SHAPE_WORDS = ("shape", "size mismatch", "channels", "dimension", "must match the size", "Expected", "expected")


def call(model: nn.Module, inputs: Inputs) -> Any:
    """``model(inputs)``, or ``model(**inputs)`` for a mapping of named inputs."""
    return model(**inputs) if isinstance(inputs, Mapping) else model(inputs)


def call_functional(model: nn.Module, state: Mapping[str, torch.Tensor], inputs: Inputs) -> Any:
    """``torch.func.functional_call`` with ``state`` in place of the model's tensors."""
    from torch.func import functional_call

    if isinstance(inputs, Mapping):
        return functional_call(model, dict(state), args=(), kwargs=dict(inputs))
    return functional_call(model, dict(state), (inputs,))


def scores(output: Any) -> torch.Tensor:
    """What of a forward pass's output is scored: the tensor itself, or the ``logits`` of a mapping or an object
    that carries them (a Hugging Face ``ModelOutput``, say).

    Raises:
        DataError: an output with neither.
    """
    if isinstance(output, torch.Tensor):
        return output
    logits = output.get("logits") if isinstance(output, Mapping) else getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    raise DataError(
        f"the model returned a {type(output).__name__}; interpscan scores a tensor of outputs, or the logits of an "
        "output that carries them",
        hint="wrap the model so that forward returns the logits tensor",
    )


def _describe(inputs: Inputs) -> str:
    if isinstance(inputs, torch.Tensor):
        return f"inputs of shape {list(inputs.shape)} ({str(inputs.dtype).removeprefix('torch.')})"
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in inputs.items() if isinstance(v, torch.Tensor))
    return f"inputs {shapes}"


def _integer_inputs(inputs: Inputs) -> bool:
    return isinstance(inputs, torch.Tensor) and not (inputs.is_floating_point() or inputs.is_complex())


class EndOfStatistics(BaseException):
    """Raised by a hook right after the last batch-norm layer of a calibration pass (calibration.py) and caught
    by users_code around the pass: the layers after it change no statistic, so they are not run. A
    BaseException, so that a model's own ``except Exception`` cannot swallow it."""


@contextmanager
def users_code(inputs: Inputs, *, batched: bool = False) -> Iterator[None]:
    """Translate an exception raised by the model's forward pass, or its call of ``sys.exit``, into a RunError
    (one line, a hint, the cause chained). Out-of-memory and interpscan's own errors pass through untouched; a
    calibration pass ended after its last BN layer (EndOfStatistics) ends the block quietly."""
    try:
        yield
    except EndOfStatistics:
        return
    except (torch.OutOfMemoryError, InterpscanError):
        raise
    except (Exception, SystemExit) as raised:
        # sys.exit in a forward pass would end interpscan silently, with the model's exit code
        exc = ExitCalled(raised.code) if isinstance(raised, SystemExit) else raised
        text = str(exc).strip()
        first = text.splitlines()[0] if text else ""
        if batched and ("vmap" in text or "functorch" in text or "functional_call" in text or "stateless" in text):
            hint = (
                f"the model does not run under torch.func's vmap; {opt('strategy', 'sequential')} gives the same "
                "numbers"
            )
        elif _integer_inputs(inputs) and any(w in text for w in ("not implemented for", "scalar type", "dtype")):
            hint = (
                "interpscan passes integer inputs other than uint8 unchanged (as token ids); save images as uint8, "
                "or as floats (x.float())"
            )
        elif any(word in text for word in _SHAPE_WORDS):
            hint = "check that the data fits the model (input shape, in_channels, number of classes)"
        else:
            hint = "INTERPSCAN_DEBUG=1 shows the model's traceback"
        raise RunError(
            f"the model's forward pass failed on {_describe(inputs)}: {type(exc).__name__}: {first}", hint=hint
        ) from raised


def forward_fn(model: nn.Module) -> Callable[[Inputs], torch.Tensor]:
    """The model's forward on inputs, returning the scored tensor (see ``scores``), its errors translated."""

    def run(inputs: Inputs) -> torch.Tensor:
        with users_code(inputs):
            output = call(model, inputs)
        return scores(output)

    return run
