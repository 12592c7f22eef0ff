"""Which model a scan evaluates: the ``--model`` grammar (a zoo name, ``path/to/file.py:factory``,
``package.module:factory``, ``torchvision:NAME`` / ``timm:NAME``), building it, and choosing it when no
``--model`` is given (the forward a file brings, the spec a checkpoint records, or zoo detection).

A checkpoint is data: a spec it records that names Python code is built only when the user names it or trusts it.
``--model-arg key=value`` values are Python literals where they parse as one.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import functools
import importlib
import importlib.util
import inspect
import math
import os
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import ModelError, UsageError, opt
from ..optional import broken_dependency, import_optional
from ..usercode import load_callable
from .hubs import hub_args, suggestions, torchvision_model
from .zoo import ZOO, ZooCandidate, detect_zoo_model, infer_zoo_args, on_meta, zoo_candidates

if TYPE_CHECKING:
    from ..checkpoints import Checkpoint

HUBS = ("torchvision", "timm")
# Kinds of ModelSpec that name Python code to import and call. A checkpoint is data: a spec it records of one of
# these kinds is built only when the user names it with --model or passes --trust-recorded-code.
CODE_KINDS = ("file", "module")
# run.json's model.source for a model the caller named: a value the output contract documents (docs/outputs.md),
# written the command line's way in both voices, not a message
NAMED = "--model"
# Kinds of ModelSpec for a checkpoint that brings its own forward pass (never parsed from user input).
OWN_FORWARD = {
    "torchscript": "TorchScript archive",
    "torch-export": "torch.export program",
    "pickle": "pickled module",
    "transformers": "transformers model built from config.json",
}


@dataclass(frozen=True)
class ModelSpec:
    """A parsed ``--model`` value: where the factory lives and the arguments it gets."""

    kind: str  # "zoo", "file", "module", "torchvision", "timm"; or an OWN_FORWARD kind
    target: str  # zoo name, file path, module path or package; the checkpoint's path for OWN_FORWARD kinds
    factory: str | None  # attribute name for "file" / "module", model name for the packages
    args: Mapping[str, Any]

    @property
    def text(self) -> str:
        return self.target if self.factory is None else f"{self.target}:{self.factory}"

    def to_json(self) -> dict[str, Any]:
        return {"spec": self.text, "kind": self.kind, "args": dict(self.args)}


def parse_model_spec(text: str, args: Mapping[str, Any] | None = None) -> ModelSpec:
    """Parse a ``--model`` value (see module docstring).

    Raises:
        ModelError: an unknown zoo name (with the closest names) or a malformed spec.
    """
    args = dict(args or {})
    if ":" in text:
        target, _, factory = text.rpartition(":")
        if target in HUBS:
            if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*", factory):
                raise ModelError(f"model spec {text!r} is not {target}:NAME", hint=f"e.g. {target}:resnet18")
            return ModelSpec(target, target, factory, args)
        if not target or not factory.isidentifier():
            raise ModelError(f"model spec {text!r} is not PATH.py:FACTORY or MODULE:FACTORY")
        kind = "file" if target.endswith(".py") or "/" in target or "\\" in target else "module"
        return ModelSpec(kind, target, factory, args)
    if text in ZOO:
        return ModelSpec("zoo", text, None, args)
    close = difflib.get_close_matches(text, ZOO, n=3, cutoff=0.4)
    raise ModelError(
        f"unknown model {text!r}" + (f"; closest: {', '.join(close)}" if close else ""),
        hint=f"zoo models: {', '.join(ZOO)} (`interpscan models`); or pass path/to/file.py:factory, "
        "package.module:factory, torchvision:NAME or timm:NAME",
    )


def _hub_factory(spec: ModelSpec) -> Callable[..., Any]:
    """torchvision's ``get_model(NAME, weights=None)`` or timm's ``create_model(NAME, pretrained=False)``:
    the architecture with fresh weights, which the checkpoints then replace."""
    assert spec.factory is not None
    package = spec.kind
    module = import_optional(
        "torchvision.models" if package == "torchvision" else "timm", purpose=f"model {spec.text!r}", error=ModelError
    )
    names = [str(n) for n in module.list_models()]
    if spec.factory.split(".")[0] not in names:  # timm names may carry a ".tag" for pretrained variants
        close = difflib.get_close_matches(spec.factory, names, n=3, cutoff=0.5)
        raise ModelError(
            f"{package} has no model {spec.factory!r}" + (f"; closest: {', '.join(close)}" if close else ""),
            hint=f"{package}'s list_models() names them",
        )
    if package == "torchvision":
        return functools.partial(torchvision_model, module.get_model, spec.factory)
    return functools.partial(module.create_model, spec.factory, pretrained=False)


def _resolve_factory(spec: ModelSpec) -> Callable[..., Any]:
    if spec.kind == "zoo":
        return ZOO[spec.target].factory
    if spec.kind in HUBS:
        return _hub_factory(spec)
    if spec.kind in OWN_FORWARD:
        raise ModelError(f"{spec.text} brings its own forward pass; there is no factory to call")
    return load_callable(spec.text, option="model", error=ModelError)


def factory_parameters(spec: ModelSpec) -> set[str]:
    """Names of the keyword arguments the spec's factory accepts (empty when it takes **kwargs only)."""
    try:
        sig = inspect.signature(_resolve_factory(spec))
    except (TypeError, ValueError):
        return set()
    return {n for n, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def build_model(spec: ModelSpec) -> nn.Module:
    """Call the spec's factory with its arguments and return the module in eval mode.

    Raises:
        ModelError: the factory is missing, raises, or returns something that is not an nn.Module.
    """
    factory = _resolve_factory(spec)
    if spec.kind == "zoo":
        _check_zoo_args(spec, factory)
    if spec.kind in ("zoo", *HUBS):
        _check_size(spec, factory)
    try:
        model = factory(**spec.args)
    except Exception as exc:
        broken = broken_dependency(exc, spec.kind, f"model {spec.text!r}", ModelError) if spec.kind in HUBS else None
        raise (broken or _build_failed(spec, exc)) from exc
    if not isinstance(model, nn.Module):
        raise ModelError(f"model factory {spec.text!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def _build_failed(spec: ModelSpec, exc: Exception) -> ModelError:
    """The factory's own error, on one line: torch's messages can carry a C++ stack trace after the first."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    if isinstance(exc, TypeError):
        return ModelError(f"model {spec.text!r} rejected its arguments: {text}", hint=f"check {opt('model_args')}")
    return ModelError(f"building model {spec.text!r} failed: {type(exc).__name__}: {text}")


def _args_text(spec: ModelSpec) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(spec.args.items())) or "its default arguments"


def _check_zoo_args(spec: ModelSpec, factory: Callable[..., Any]) -> None:
    """A zoo model's ``--model-arg`` values against the types its signature declares: a whole number where it
    takes one (``width=10**9`` is the text '10**9', not a number), a finite number, true or false.

    Raises:
        ModelError: a value of the wrong type.
    """
    try:
        parameters = inspect.signature(factory, eval_str=True).parameters
    except Exception:  # an annotation that does not resolve: the factory checks its own arguments
        return
    for key, value in spec.args.items():
        want = parameters[key].annotation if key in parameters else None
        if want is bool:
            ok, what = isinstance(value, bool), "true or false"
        elif want is int:
            ok, what = isinstance(value, int) and not isinstance(value, bool), "a whole number"
        elif want is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            what = "a finite number"
        else:
            continue
        if not ok:
            raise ModelError(
                f"{opt('model_args')} {key}={value!r}: {spec.text}'s {key} takes {what}",
                hint=f"values are Python literals, e.g. {opt('model_args', 'width=32')} or "
                f"{opt('model_args', 'bn=false')}",
            )


def _memory_bytes() -> int | None:
    """This machine's physical memory, or None where the system does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def _check_size(spec: ModelSpec, factory: Callable[..., Any]) -> None:
    """Build the model on the meta device first (shapes, no memory), and refuse one that cannot be built here:
    an empty tensor (a size of 0), or weights larger than the machine's memory (``width=10**9``), which would
    otherwise exhaust the memory, or be killed, while it is being allocated.

    Raises:
        ModelError: such a model; or, for a zoo model, the factory's own error with these arguments.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about zero-element tensors: reported below instead
            model = on_meta(factory, spec.args)
    except Exception as exc:
        if spec.kind == "zoo":  # pure code: the real build would fail the same way, after allocating
            raise _build_failed(spec, exc) from exc
        return  # a package's model that cannot be built on meta: the real build reports its problems
    if not isinstance(model, nn.Module):
        return
    tensors = model.state_dict()
    empty = [(n, list(t.shape)) for n, t in tensors.items() if t.numel() == 0]
    if empty:
        shown = "; ".join(f"{n} {shape}" for n, shape in empty[:3]) + ("; …" if len(empty) > 3 else "")
        raise ModelError(
            f"model {spec.text!r} with {_args_text(spec)} has empty tensors ({shown})",
            hint=f"check {opt('model_args')}: every size must be at least 1",
        )
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    memory = _memory_bytes()
    if memory is not None and size > memory:
        raise ModelError(
            f"model {spec.text!r} with {_args_text(spec)} would need {size / 2**30:,.1f} GiB for its weights, "
            f"more than this machine's {memory / 2**30:,.1f} GiB of memory",
            hint=f"check {opt('model_args')}: the checkpoints' shapes give the model's size (`interpscan inspect`)",
        )


# ------------------------------------------------------------------------------------ which model to use


def inferred_args(spec: ModelSpec, tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Architecture arguments a checkpoint's shapes imply for ``spec``: all of a zoo model's (widths, input
    channels, class count), the class count and input channels for torchvision and timm models (hubs.hub_args),
    nothing for user factories."""
    if spec.kind == "zoo":
        return infer_zoo_args(spec.target, tensors)
    if spec.kind not in HUBS:
        return {}
    try:
        model = on_meta(_hub_factory(spec), {})
    except ModelError:
        raise
    except Exception:  # the factory itself reports its problems when the model is built for real
        return {}
    return hub_args(spec.kind, model, tensors)


def _same_model(given: ModelSpec, recorded: ModelSpec) -> bool:
    """``--model`` names the model a checkpoint records (a file counts as the same by name, as it may move)."""
    if (given.kind, given.factory) != (recorded.kind, recorded.factory):
        return False
    if given.kind == "file":
        return Path(given.target).name == Path(recorded.target).name
    return given.target == recorded.target


def _recorded(ckpt: Checkpoint) -> ModelSpec | None:
    rec = ckpt.model_spec
    if rec is None:
        return None
    try:
        return parse_model_spec(str(rec["model"]), dict(rec.get("model_args") or {}))
    except ModelError as exc:
        raise ModelError(
            f"{ckpt.info.path} records model {rec['model']!r}, which interpscan cannot use: {exc.text}",
            hint=f"pass {opt('model')}",
        ) from exc


def recorded_code(final: Checkpoint, init: Checkpoint) -> tuple[Checkpoint, ModelSpec] | None:
    """The checkpoint whose recorded model would be built (the final one's first) and that spec, when the spec
    names Python code to import (a file or ``module:factory``); None when it names the zoo, a package's model
    registry, or nothing. Raises nothing it would not raise anyway: a malformed record is left to the caller."""
    rec_ckpt = next((c for c in (final, init) if c.model_spec is not None), None)
    if rec_ckpt is None:
        return None
    try:
        spec = _recorded(rec_ckpt)
    except ModelError:
        return None
    return (rec_ckpt, spec) if spec is not None and spec.kind in CODE_KINDS else None


def check_recorded_code(model: str | None, final: Checkpoint, init: Checkpoint, *, trust: bool) -> None:
    """Refuse to build a model whose code a checkpoint names, unless the user named it (``--model``) or said
    they trust it (``--trust-recorded-code``). A checkpoint is data: a spec such as ``os:system`` recorded in it
    must never make interpscan import and call anything.

    Raises:
        ModelError: no ``--model``, no trust, and the recorded spec names a file or a module.
    """
    found = None if model is not None or trust else recorded_code(final, init)
    if found is None:
        return
    ckpt, spec = found
    what = "a Python file" if spec.kind == "file" else "a Python module"
    raise ModelError(
        f"{ckpt.info.path} records model {spec.text!r}, {what} to import and call; interpscan does not run code "
        "that a checkpoint names",
        hint=f"if you trust this checkpoint, pass {opt('model', spec.text)} (it keeps the recorded {opt('model_args')} "
        f"values) or {opt('trust_recorded_code', True)}; `interpscan inspect` shows what a checkpoint records",
    )


def _locate_recorded_file(spec: ModelSpec, ckpt: Checkpoint) -> ModelSpec:
    """A recorded model file: absolute as written since 0.1, else relative to the working directory or to the
    checkpoint's directory (older checkpoints recorded the path as typed where training ran)."""
    target = Path(spec.target)
    where = Path(ckpt.info.path)
    base = where if where.is_dir() else where.parent
    candidates = [target] if target.is_absolute() else [target, base / target]
    for candidate in candidates:
        if candidate.is_file():
            return ModelSpec(spec.kind, str(candidate), spec.factory, spec.args)
    looked = "" if target.is_absolute() else f" (looked in {Path.cwd()} and {base})"
    args = ", ".join(f"{k}={v!r}" for k, v in sorted(spec.args.items()))
    raise ModelError(
        f"the model file {spec.target} recorded in {ckpt.info.path} was not found{looked}",
        hint=f"pass {opt('model', f'path/to/{target.name}:{spec.factory}')}"
        + (f"; the recorded arguments ({args}) are kept" if args else ""),
    )


def model_spec_for(
    model: str | None,
    model_args: Mapping[str, Any],
    final: Checkpoint,
    init: Checkpoint,
    *,
    trust_recorded_code: bool = False,
) -> tuple[ModelSpec, str]:
    """The model to build from ``--model`` or, without it, from the spec a checkpoint records; and a line on
    where it came from. A recorded spec that names code (a file or a module) is used only with
    ``trust_recorded_code`` (see check_recorded_code); the zoo and package registries need no trust.

    Arguments, later winning: those read off the final checkpoint's shapes (zoo and package models), those the
    checkpoint records when ``--model`` names the recorded model, then ``--model-arg``.

    Raises:
        ModelError: no ``--model`` and nothing recorded, recorded code without trust, a recorded file that
            cannot be found, a bad spec.
    """
    check_recorded_code(model, final, init, trust=trust_recorded_code)
    rec_ckpt = next((c for c in (final, init) if c.model_spec is not None), None)
    if model is not None:
        spec = parse_model_spec(model, model_args)
        recorded: ModelSpec | None = None
        if rec_ckpt is not None:
            with contextlib.suppress(ModelError):  # --model replaces a recorded spec interpscan cannot use
                recorded = _recorded(rec_ckpt)
        kept = dict(recorded.args) if recorded is not None and _same_model(spec, recorded) else {}
        inferred = inferred_args(spec, final.tensors)
        args = {**inferred, **kept, **model_args}
        origin = opt("model")
        if set(kept) - set(model_args):
            origin += f", {', '.join(sorted(set(kept) - set(model_args)))} recorded in {rec_ckpt.info.path}"  # type: ignore[union-attr]
        if set(inferred) - set(kept) - set(model_args):
            origin += f", {', '.join(sorted(set(inferred) - set(kept) - set(model_args)))} from the checkpoint"
        return ModelSpec(spec.kind, spec.target, spec.factory, args), origin
    if rec_ckpt is not None:
        rec_spec = _recorded(rec_ckpt)
        assert rec_spec is not None
        if rec_spec.kind == "file":
            rec_spec = _locate_recorded_file(rec_spec, rec_ckpt)
        args = {**rec_spec.args, **model_args}
        origin = f"recorded in {rec_ckpt.info.path}"
        if rec_spec.kind in CODE_KINDS:
            origin += f", code trusted with {opt('trust_recorded_code', True)}"
        return ModelSpec(rec_spec.kind, rec_spec.target, rec_spec.factory, args), origin
    raise ModelError(
        f"no {opt('model')} given, and the checkpoints do not record which model they hold",
        hint=f"pass {opt('model', 'NAME')} (a zoo model), {opt('model', 'path/to/file.py:factory')} or "
        f"{opt('model', 'package.module:factory')}",
    )


@dataclass(frozen=True)
class ResolvedModel:
    """The model a scan evaluates, the spec that describes it, and how it was chosen."""

    model: nn.Module
    spec: ModelSpec
    origin: str  # for the log line and run.json, e.g. "recorded in final.pt"
    source: str  # "--model", "recorded", "checkpoint" (it brings its own forward) or "detected"


def resolve_model(
    model: str | None,
    model_args: Mapping[str, Any],
    final: Checkpoint,
    init: Checkpoint,
    *,
    trust_recorded_code: bool = False,
) -> ResolvedModel:
    """Pick the model, in order: ``--model``; the forward a checkpoint brings (TorchScript, torch.export, a
    pickled module; the final one's first); the spec a checkpoint records (code only with
    ``trust_recorded_code``); the one zoo model whose names and shapes equal the final checkpoint's.

    Raises:
        ModelError: nothing applies (with the closest zoo models), recorded code without trust, or the chosen
            model cannot be built.
        UsageError: ``--model-arg`` for a checkpoint that brings its own forward.
    """
    if model is not None:
        spec, origin = model_spec_for(model, model_args, final, init)
        return ResolvedModel(build_model(spec), spec, origin, NAMED)
    for ckpt in (final, init):
        if ckpt.module is not None:
            kind = ckpt.info.format if ckpt.info.format in OWN_FORWARD else "pickle"
            if model_args:
                raise UsageError(
                    f"{opt('model_args')} configures a model interpscan builds; {ckpt.info.path} is a "
                    f"{OWN_FORWARD[kind]} that brings its own",
                    hint=f"leave out {opt('model_args')}, or pass {opt('model')} to evaluate another model with these "
                    "weights",
                )
            module = ckpt.module
            if any(t.is_floating_point() and t.dtype != torch.float32 for t in module.state_dict().values()):
                module = copy.deepcopy(module).float()  # evaluated in float32, like every other model
            spec = ModelSpec(kind, ckpt.info.path, None, {})
            origin = f"the forward the {OWN_FORWARD[kind]} carries"
            if kind == "transformers":
                architecture = ckpt.info.metadata[kind]["architecture"]
                origin = f"transformers' {architecture}, built from {ckpt.info.path}'s config.json"
            return ResolvedModel(module.eval(), spec, origin, "checkpoint")
    if final.model_spec is not None or init.model_spec is not None:
        spec, origin = model_spec_for(None, model_args, final, init, trust_recorded_code=trust_recorded_code)
        return ResolvedModel(build_model(spec), spec, origin, "recorded")
    if not any(c.exact for c in zoo_candidates(final.tensors)):
        _refuse_with_suggestion(final)
    match = detect_zoo_model(final.tensors, f"the final checkpoint {final.info.path}")
    return _detected(match, model_args)


def _refuse_with_suggestion(ckpt: Checkpoint) -> None:
    """No zoo model fits: name the timm or torchvision model the checkpoint is, when one is (hubs.suggestions).

    Raises:
        ModelError: with ``--model timm:ARCH`` / ``torchvision:NAME`` as the hint, when there is a suggestion.
    """
    found = suggestions(ckpt.tensors, ckpt.info.metadata)
    if not found:
        return
    why = "records timm's architecture" if found[0].startswith("timm:") else "has exactly the layout of"
    raise ModelError(
        f"no {opt('model')} given; the final checkpoint {ckpt.info.path} {why} {found[0].partition(':')[2]}",
        hint=f"pass {opt('model', found[0])}"
        + (f" (or {', '.join(found[1:])})" if found[1:] else "")
        + "; classes and input channels are read off the checkpoint",
    )


def _detected(match: ZooCandidate, model_args: Mapping[str, Any]) -> ResolvedModel:
    spec = ModelSpec("zoo", match.name, None, {**match.args, **model_args})
    args = ", ".join(f"{k}={v}" for k, v in sorted(match.args.items()))
    origin = f"detected: the only zoo model with the final checkpoint's {match.total} names and shapes; {args}"
    return ResolvedModel(build_model(spec), spec, origin, "detected")


def find_model(
    model: str | None,
    model_args: Mapping[str, Any],
    final: Checkpoint,
    init: Checkpoint,
    *,
    trust_recorded_code: bool = False,
) -> ResolvedModel | None:
    """``resolve_model``, but None instead of an error when there is no model to be had: no ``--model``, no
    forward brought, nothing recorded, and not exactly one zoo model matching (``layers`` then groups the
    tensor names themselves).

    Raises:
        ModelError, UsageError: as resolve_model, for a model that is named, brought or recorded but fails.
    """
    if model is not None or final.module is not None or init.module is not None:
        return resolve_model(model, model_args, final, init, trust_recorded_code=trust_recorded_code)
    if final.model_spec is not None or init.model_spec is not None:
        return resolve_model(None, model_args, final, init, trust_recorded_code=trust_recorded_code)
    exact = [c for c in zoo_candidates(final.tensors) if c.exact]
    return _detected(exact[0], model_args) if len(exact) == 1 else None


def identify(ckpt: Checkpoint) -> dict[str, Any]:
    """What ``interpscan inspect`` says about the model: the forward the file brings, the spec it records, or
    the zoo model its names and shapes match (else the closest ones). Never raises."""
    if ckpt.module is not None:
        kind = ckpt.info.format if ckpt.info.format in OWN_FORWARD else "pickle"
        return {"source": "checkpoint", "model": OWN_FORWARD[kind], "args": {}, "code": False}
    if ckpt.model_spec is not None:
        rec = ckpt.model_spec
        code = recorded_code(ckpt, ckpt) is not None
        return {
            "source": "recorded",
            "model": str(rec["model"]),
            "args": dict(rec.get("model_args") or {}),
            "code": code,  # names Python code: built only with --model or --trust-recorded-code
        }
    candidates = zoo_candidates(ckpt.tensors)
    exact = [c for c in candidates if c.exact]
    if len(exact) == 1:
        return {"source": "detected", "model": exact[0].name, "args": exact[0].args, "code": False}
    return {
        "source": "none",
        "model": None,
        "args": {},
        "code": False,
        "closest": [c.describe() for c in candidates[:3] if c.matching],
        "suggested": suggestions(ckpt.tensors, ckpt.info.metadata),  # --model values: timm:ARCH, torchvision:NAME
    }


def optional_packages() -> dict[str, bool]:
    """Whether the packages behind ``torchvision:NAME`` and ``timm:NAME`` are installed."""
    return {pkg: importlib.util.find_spec(pkg) is not None for pkg in HUBS}
