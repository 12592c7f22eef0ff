"""Models: the built-in zoo, the ``--model`` spec grammar, which model a scan uses, and the check of a model
against two checkpoints.

A spec is a zoo name (``resnet20``), a file and factory (``path/to/net.py:make``), a module and factory
(``package.module:make``), or ``torchvision:NAME`` / ``timm:NAME`` when those packages are installed.
``--model-arg key=value`` values are Python literals where they parse as one.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import difflib
import functools
import importlib
import importlib.util
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .errors import ModelError, UsageError
from .usercode import load_callable

if TYPE_CHECKING:
    from .checkpoints import Checkpoint

# ----------------------------------------------------------------------------------------------- the zoo


def _norm(bn: bool, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if bn else nn.Identity()


class MLP(nn.Module):
    """Fully connected net: flatten, ``depth`` hidden layers of ``width`` ReLU units, linear classifier."""

    def __init__(
        self,
        in_features: int = 784,
        num_classes: int = 10,
        width: int = 256,
        depth: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_features
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            d = width
        self.flatten = nn.Flatten()
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(d, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(self.flatten(x)))  # type: ignore[no-any-return]


class CNN(nn.Module):
    """Small conv net: two conv-BN-ReLU-pool stages, a 4×4 adaptive pool and a linear classifier."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        width: int = 16,
        bn: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=not bn)
        self.bn1 = _norm(bn, width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1, bias=not bn)
        self.bn2 = _norm(bn, 2 * width)
        self.pool = nn.MaxPool2d(2)
        self.head_pool = nn.AdaptiveAvgPool2d(4)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * width * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        x = self.dropout(torch.flatten(self.head_pool(x), 1))
        return self.fc(x)  # type: ignore[no-any-return]


class BasicBlock(nn.Module):
    """The ResNet basic block (two 3×3 convs); a 1×1 conv shortcut where the shape changes."""

    expansion = 1

    def __init__(self, c_in: int, c_out: int, stride: int, bn: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=not bn)
        self.bn1 = _norm(bn, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=not bn)
        self.bn2 = _norm(bn, c_out)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=not bn), _norm(bn, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """The ResNet-50 block: 1×1 reduce, 3×3 (carrying the stride), 1×1 expand to 4× ``planes`` channels."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int, bn: bool) -> None:
        super().__init__()
        c_out = planes * self.expansion
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=not bn)
        self.bn1 = _norm(bn, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=not bn)
        self.bn2 = _norm(bn, planes)
        self.conv3 = nn.Conv2d(planes, c_out, 1, bias=not bn)
        self.bn3 = _norm(bn, c_out)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=not bn), _norm(bn, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet: 3×3 stem without max-pool, stages ``layer1``.., global average pool, ``fc``."""

    def __init__(
        self,
        blocks: Sequence[int],
        widths: Sequence[int],
        in_channels: int = 3,
        num_classes: int = 10,
        bn: bool = True,
        block: type[BasicBlock] | type[Bottleneck] = BasicBlock,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=not bn)
        self.bn1 = _norm(bn, widths[0])
        c = widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths, strict=True)):
            stride = 1 if i == 0 else 2
            stage = []
            for j in range(n):
                stage.append(block(c, w, stride if j == 0 else 1, bn))
                c = w * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
        self.num_stages = len(blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))  # type: ignore[no-any-return]


def resnet20(in_channels: int = 3, num_classes: int = 10, width: int = 16, bn: bool = True) -> ResNet:
    """ResNet-20 for CIFAR (He et al. 2016): three stages of three blocks, widths 16/32/64 (×width/16)."""
    return ResNet([3, 3, 3], [width, 2 * width, 4 * width], in_channels, num_classes, bn)


def resnet18(in_channels: int = 3, num_classes: int = 10, width: int = 64, bn: bool = True) -> ResNet:
    """ResNet-18, CIFAR variant (the seed paper's network): stages layer1..layer4 of two blocks, then fc."""
    return ResNet([2, 2, 2, 2], [width, 2 * width, 4 * width, 8 * width], in_channels, num_classes, bn)


def resnet34(in_channels: int = 3, num_classes: int = 10, width: int = 64, bn: bool = True) -> ResNet:
    """ResNet-34, CIFAR variant: basic blocks, stages of 3, 4, 6 and 3."""
    return ResNet([3, 4, 6, 3], [width, 2 * width, 4 * width, 8 * width], in_channels, num_classes, bn)


def resnet50(in_channels: int = 3, num_classes: int = 10, width: int = 64, bn: bool = True) -> ResNet:
    """ResNet-50, CIFAR variant: bottleneck blocks, stages of 3, 4, 6 and 3, 2048 features at the head."""
    widths = [width, 2 * width, 4 * width, 8 * width]
    return ResNet([3, 4, 6, 3], widths, in_channels, num_classes, bn, block=Bottleneck)


# VGG stages in units of ``width`` channels; "M" is a 2×2 max-pool.
VGG_LAYERS: dict[str, list[int | str]] = {
    "vgg11": [1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"],
    "vgg16": [1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M"],
}


class VGG(nn.Module):
    """CIFAR-style VGG: ``features`` (conv-[BN]-ReLU and max-pools), global average pool, linear ``classifier``.

    Pools round up (``ceil_mode``), so 28×28 inputs work as well as 32×32 ones.
    """

    def __init__(
        self,
        layers: Sequence[int | str],
        in_channels: int = 3,
        num_classes: int = 10,
        width: int = 64,
        bn: bool = True,
    ) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        c = in_channels
        for v in layers:
            if v == "M":
                modules.append(nn.MaxPool2d(2, ceil_mode=True))
                continue
            w = int(v) * width
            modules.append(nn.Conv2d(c, w, 3, padding=1, bias=not bn))
            if bn:
                modules.append(nn.BatchNorm2d(w))
            modules.append(nn.ReLU())
            c = w
        self.features = nn.Sequential(*modules)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))  # type: ignore[no-any-return]


def vgg11(in_channels: int = 3, num_classes: int = 10, width: int = 64, bn: bool = True) -> VGG:
    """VGG-11 (8 convs, 64…512 channels × width/64), CIFAR variant with one linear classifier."""
    return VGG(VGG_LAYERS["vgg11"], in_channels, num_classes, width, bn)


def vgg16(in_channels: int = 3, num_classes: int = 10, width: int = 64, bn: bool = True) -> VGG:
    """VGG-16 (13 convs, 64…512 channels × width/64), CIFAR variant with one linear classifier."""
    return VGG(VGG_LAYERS["vgg16"], in_channels, num_classes, width, bn)


def _find(tensors: Mapping[str, torch.Tensor], name: str) -> torch.Tensor | None:
    """The tensor called ``name``, also under wrapper prefixes (``module.``, ``model.``, ``_orig_mod.``)."""
    from .checkpoints import WRAPPER_PREFIXES

    for key, value in tensors.items():
        while key != name and key.startswith(WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        if key == name:
            return value
    return None


def _infer_conv(tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if (conv := _find(tensors, "conv1.weight")) is not None and conv.dim() == 4:
        args.update(width=int(conv.shape[0]), in_channels=int(conv.shape[1]))
        args["bn"] = _find(tensors, "bn1.weight") is not None
    if (fc := _find(tensors, "fc.weight")) is not None and fc.dim() == 2:
        args["num_classes"] = int(fc.shape[0])
    return args


def _infer_resnet(tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    # every ResNet's base width is that of its stem, which layer1 keeps (or, for bottlenecks, reduces to)
    return _infer_conv(tensors)


def _infer_vgg(tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if (conv := _find(tensors, "features.0.weight")) is not None and conv.dim() == 4:
        args.update(width=int(conv.shape[0]), in_channels=int(conv.shape[1]))
        args["bn"] = _find(tensors, "features.1.running_mean") is not None
    if (fc := _find(tensors, "classifier.weight")) is not None and fc.dim() == 2:
        args["num_classes"] = int(fc.shape[0])
    return args


def _infer_mlp(tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    hidden = [t for i in range(64) if (t := _find(tensors, f"features.{i}.weight")) is not None and t.dim() == 2]
    if hidden:
        args.update(in_features=int(hidden[0].shape[1]), width=int(hidden[0].shape[0]), depth=len(hidden))
    if (fc := _find(tensors, "fc.weight")) is not None and fc.dim() == 2:
        args["num_classes"] = int(fc.shape[0])
        if not hidden:
            args.update(in_features=int(fc.shape[1]), depth=0)
    return args


@dataclass(frozen=True)
class ZooEntry:
    factory: Callable[..., nn.Module]
    description: str
    # reads the architecture's arguments (widths, class count, ...) off a checkpoint's shapes
    infer: Callable[[Mapping[str, torch.Tensor]], dict[str, Any]]
    input: str  # the input its default arguments expect, for `interpscan models`


ZOO: dict[str, ZooEntry] = {
    "mlp": ZooEntry(MLP, "fully connected ReLU net (width, depth, dropout)", _infer_mlp, "784 features, or 1×28×28"),
    "cnn": ZooEntry(
        CNN, "two conv-BN-ReLU stages and a linear head (width, bn, dropout)", _infer_conv, "1×H×W, any size"
    ),
    "resnet20": ZooEntry(resnet20, "CIFAR ResNet-20 with batch norm (width, bn)", _infer_resnet, "3×32×32"),
    "resnet18": ZooEntry(
        resnet18,
        "CIFAR ResNet-18 with batch norm, stages layer1..layer4 and fc (width, bn)",
        _infer_resnet,
        "3×32×32",
    ),
    "resnet34": ZooEntry(resnet34, "CIFAR ResNet-34, basic blocks 3-4-6-3 (width, bn)", _infer_resnet, "3×32×32"),
    "resnet50": ZooEntry(resnet50, "CIFAR ResNet-50, bottleneck blocks 3-4-6-3 (width, bn)", _infer_resnet, "3×32×32"),
    "vgg11": ZooEntry(vgg11, "CIFAR VGG-11, features and a linear classifier (width, bn)", _infer_vgg, "3×32×32"),
    "vgg16": ZooEntry(vgg16, "CIFAR VGG-16, features and a linear classifier (width, bn)", _infer_vgg, "3×32×32"),
}


def infer_zoo_args(name: str, tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Arguments of zoo model ``name`` implied by a checkpoint's shapes (empty for unknown names).

    Lets ``--model resnet18`` load a 100-class or single-channel checkpoint without ``--model-arg``;
    arguments the user passes override these.
    """
    entry = ZOO.get(name)
    return entry.infer(tensors) if entry else {}


def _on_meta(factory: Callable[..., Any], args: Mapping[str, Any]) -> Any:
    """Build a model without allocating its weights (shapes and names only)."""
    with torch.device("meta"):
        return factory(**args)


def zoo_table(pattern: str | None = None) -> list[dict[str, Any]]:
    """What ``interpscan models`` lists: one row per zoo model whose name matches ``pattern`` (a glob, or a
    substring when it has no ``*?[``), with the parameter count at its default arguments."""
    from fnmatch import fnmatchcase

    rows = []
    for name, entry in ZOO.items():
        if pattern and not (fnmatchcase(name, pattern) if any(c in pattern for c in "*?[") else pattern in name):
            continue
        model = _on_meta(entry.factory, {})
        rows.append(
            {
                "name": name,
                "parameters": sum(p.numel() for p in model.parameters()),
                "input": entry.input,
                "description": entry.description,
            }
        )
    return rows


def optional_packages() -> dict[str, bool]:
    """Whether the packages behind ``torchvision:NAME`` and ``timm:NAME`` are installed."""
    return {pkg: importlib.util.find_spec(pkg) is not None for pkg in HUBS}


@dataclass(frozen=True)
class ZooCandidate:
    """How well one zoo model, with arguments read off a checkpoint, fits that checkpoint's tensors."""

    name: str
    args: dict[str, Any]
    matching: int  # checkpoint tensors whose name and shape the model has
    total: int  # names in either
    exact: bool

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in sorted(self.args.items()))
        return f"{self.name} ({self.matching} of {self.total} tensors match{'; ' + args if args else ''})"


def zoo_candidates(tensors: Mapping[str, torch.Tensor]) -> list[ZooCandidate]:
    """Every zoo model scored against a state dict, best first. Built on the meta device: no weights allocated."""
    from .checkpoints import strip_prefixes

    out = []
    for name, entry in ZOO.items():
        try:
            args = entry.infer(tensors)
            expected = {k: tuple(v.shape) for k, v in _on_meta(entry.factory, args).state_dict().items()}
        except Exception:  # arguments read off an unrelated checkpoint may not build: not a candidate
            continue
        mapping, _ = strip_prefixes(tensors, set(expected))
        got = {mapping[k]: tuple(v.shape) for k, v in tensors.items()}
        matching = sum(1 for k, shape in got.items() if expected.get(k) == shape)
        total = len(set(got) | set(expected))
        out.append(ZooCandidate(name, args, matching, total, got == expected))
    return sorted(out, key=lambda c: (-c.matching / max(c.total, 1), list(ZOO).index(c.name)))


def detect_zoo_model(tensors: Mapping[str, torch.Tensor], source: str = "the checkpoint") -> ZooCandidate:
    """The one zoo model whose names and shapes equal a state dict's, with its arguments read off the shapes.

    Raises:
        ModelError: none or several match; the message lists the closest and says how to pass ``--model``.
    """
    candidates = zoo_candidates(tensors)
    exact = [c for c in candidates if c.exact]
    if len(exact) == 1:
        return exact[0]
    if exact:
        raise ModelError(
            f"{source} matches several zoo models: {', '.join(c.name for c in exact)}",
            hint=f"pass --model {exact[0].name} (or another of them)",
        )
    close = [c.describe() for c in candidates[:3] if c.matching]
    raise ModelError(
        f"no --model given, and {source} ({len(tensors)} tensors) matches no zoo model"
        + (f"; closest: {'; '.join(close)}" if close else ""),
        hint="pass --model NAME (`interpscan models` lists the zoo), --model path/to/file.py:factory or "
        "--model package.module:factory, with --model-arg KEY=VALUE for its arguments",
    )


# ------------------------------------------------------------------------------------------ spec grammar

# ``PACKAGE:NAME`` specs built by an optional package's own model registry (never a dependency of interpscan).
HUBS = ("torchvision", "timm")
# Kinds of ModelSpec that name Python code to import and call. A checkpoint is data: a spec it records of one of
# these kinds is built only when the user names it with --model or passes --trust-recorded-code.
CODE_KINDS = ("file", "module")
# Kinds of ModelSpec for a checkpoint that brings its own forward pass (never parsed from user input).
OWN_FORWARD = {"torchscript": "TorchScript archive", "torch-export": "torch.export program", "pickle": "pickled module"}


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


def parse_value(text: str) -> Any:
    """A ``--model-arg`` value: a Python literal (``3``, ``0.5``, ``(1, 28, 28)``), true/false, or a string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):  # TypeError: e.g. {[]: 1}
        return text


def parse_model_args(pairs: Sequence[str]) -> dict[str, Any]:
    """Turn ``["width=32", "bn=false"]`` into ``{"width": 32, "bn": False}``."""
    args: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip().isidentifier():
            raise UsageError(f"--model-arg {pair!r} is not KEY=VALUE", hint="e.g. --model-arg width=32")
        args[key.strip()] = parse_value(value)
    return args


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
    try:
        module = importlib.import_module("torchvision.models" if package == "torchvision" else "timm")
    except ImportError as exc:
        raise ModelError(
            f"model {spec.text!r} needs the {package} package, which is not installed ({exc})",
            hint=f"pip install {package} (optional: interpscan itself never needs it)",
        ) from exc
    names = [str(n) for n in module.list_models()]
    if spec.factory.split(".")[0] not in names:  # timm names may carry a ".tag" for pretrained variants
        close = difflib.get_close_matches(spec.factory, names, n=3, cutoff=0.5)
        raise ModelError(
            f"{package} has no model {spec.factory!r}" + (f"; closest: {', '.join(close)}" if close else ""),
            hint=f"{package}'s list_models() names them",
        )
    if package == "torchvision":
        return functools.partial(module.get_model, spec.factory, weights=None)
    return functools.partial(module.create_model, spec.factory, pretrained=False)


def _resolve_factory(spec: ModelSpec) -> Callable[..., Any]:
    if spec.kind == "zoo":
        return ZOO[spec.target].factory
    if spec.kind in HUBS:
        return _hub_factory(spec)
    if spec.kind in OWN_FORWARD:
        raise ModelError(f"{spec.text} brings its own forward pass; there is no factory to call")
    return load_callable(spec.text, flag="--model", error=ModelError)


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
    try:
        model = factory(**spec.args)
    except TypeError as exc:
        raise ModelError(f"model {spec.text!r} rejected its arguments: {exc}", hint="check --model-arg") from exc
    except Exception as exc:
        raise ModelError(f"building model {spec.text!r} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ModelError(f"model factory {spec.text!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


# ------------------------------------------------------------------------------------ which model to use


def inferred_args(spec: ModelSpec, tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Architecture arguments a checkpoint's shapes imply for ``spec``: all of a zoo model's (widths, input
    channels, class count), the class count for torchvision and timm models, nothing for user factories."""
    if spec.kind == "zoo":
        return infer_zoo_args(spec.target, tensors)
    if spec.kind not in HUBS:
        return {}
    try:
        model = _on_meta(_hub_factory(spec), {})
    except Exception:  # the factory itself reports its problems when the model is built for real
        return {}
    heads = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if heads:
        name, head = heads[-1]
        weight = _find(tensors, f"{name}.weight")
        if weight is not None and weight.dim() == 2 and int(weight.shape[0]) != head.out_features:
            return {"num_classes": int(weight.shape[0])}
    return {}


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
            f"{ckpt.info.path} records model {rec['model']!r}, which interpscan cannot use: {exc}",
            hint="pass --model",
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
        hint=f"if you trust this checkpoint, pass --model {spec.text} (it keeps the recorded --model-arg values) "
        "or --trust-recorded-code; `interpscan inspect` shows what a checkpoint records",
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
        hint=f"pass --model path/to/{target.name}:{spec.factory}"
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
        origin = "--model"
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
            origin += ", code trusted with --trust-recorded-code"
        return ModelSpec(rec_spec.kind, rec_spec.target, rec_spec.factory, args), origin
    raise ModelError(
        "no --model given, and the checkpoints do not record which model they hold",
        hint="pass --model NAME (a zoo model), --model path/to/file.py:factory or --model package.module:factory",
    )


@dataclass(frozen=True)
class ResolvedModel:
    """The model a scan evaluates, the spec that describes it, and how it was chosen."""

    model: nn.Module
    spec: ModelSpec
    origin: str  # for the log line and run.json, e.g. "recorded in final.pt"
    source: str  # "--model", "recorded", "checkpoint" (it brings its own forward) or "detected"

    @property
    def own_forward(self) -> bool:
        return self.spec.kind in OWN_FORWARD


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
        return ResolvedModel(build_model(spec), spec, origin, "--model")
    for ckpt in (final, init):
        if ckpt.module is not None:
            kind = ckpt.info.format if ckpt.info.format in OWN_FORWARD else "pickle"
            if model_args:
                raise UsageError(
                    f"--model-arg configures a model interpscan builds; {ckpt.info.path} is a {OWN_FORWARD[kind]} "
                    "that brings its own",
                    hint="leave out --model-arg, or pass --model to evaluate another model with these weights",
                )
            module = ckpt.module
            if any(t.is_floating_point() and t.dtype != torch.float32 for t in module.state_dict().values()):
                module = copy.deepcopy(module).float()  # evaluated in float32, like every other model
            spec = ModelSpec(kind, ckpt.info.path, None, {})
            return ResolvedModel(module.eval(), spec, f"the forward the {OWN_FORWARD[kind]} carries", "checkpoint")
    if final.model_spec is not None or init.model_spec is not None:
        spec, origin = model_spec_for(None, model_args, final, init, trust_recorded_code=trust_recorded_code)
        return ResolvedModel(build_model(spec), spec, origin, "recorded")
    match = detect_zoo_model(final.tensors, f"the final checkpoint {final.info.path}")
    spec = ModelSpec("zoo", match.name, None, {**match.args, **model_args})
    args = ", ".join(f"{k}={v}" for k, v in sorted(match.args.items()))
    origin = f"detected: the only zoo model with the final checkpoint's {match.total} names and shapes; {args}"
    return ResolvedModel(build_model(spec), spec, origin, "detected")


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
    }


# ------------------------------------------------------------------------------------------------ checks


def tied_names(model: nn.Module) -> tuple[tuple[str, ...], ...]:
    """Groups of state-dict names that are one tensor in the model (tied weights, e.g. embedding and decoder)."""
    groups: dict[int, list[str]] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(t), []).append(name)
    return tuple(tuple(g) for g in groups.values() if len(g) > 1)


def _kind(t: torch.Tensor) -> str:
    return "floating" if t.is_floating_point() else "complex" if t.is_complex() else "integer"


def _dtype_counts(tensors: Mapping[str, torch.Tensor]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in tensors.values():
        name = str(t.dtype).removeprefix("torch.")
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


@dataclass(frozen=True)
class StateMatch:
    """Checkpoint states renamed and completed to exactly the model's names, and what that took."""

    states: dict[str, dict[str, torch.Tensor]]  # label ("init", "final") -> the model's names -> tensors
    tied: tuple[tuple[str, ...], ...]  # names that share one tensor in the model
    filled: dict[str, dict[str, str]]  # label -> name -> where its value came from
    ignored: dict[str, tuple[str, ...]]  # label -> names the model does not have, dropped (--no-strict)
    model_dtypes: dict[str, int]  # the model's own tensors, which each point's weights are written into

    def to_json(self) -> dict[str, Any]:
        """run.json's account of the weights: ties, what was filled or dropped, and the dtype story."""
        return {
            "tied": [list(g) for g in self.tied],
            "filled": {k: dict(sorted(v.items())) for k, v in self.filled.items() if v},
            "ignored": {k: list(v) for k, v in self.ignored.items() if v},
            "dtypes": {
                **{label: _dtype_counts(t) for label, t in self.states.items()},
                "model": self.model_dtypes,
                # the engine lerps floating tensors in float32 whatever the files hold (exact at α=0 and 1 for
                # float16/bfloat16 inputs); integer tensors (num_batches_tracked) come from the final state
                "interpolated_in": "float32",
                "integers_from": "final",
            },
        }

    def notes(self) -> list[str]:
        """One line per checkpoint that needed --no-strict, for the log."""
        out = []
        for label in self.states:
            parts = []
            if self.ignored.get(label):
                parts.append(f"ignored {len(self.ignored[label])} tensors the model lacks")
            tolerated = [k for k, v in self.filled.get(label, {}).items() if not v.startswith("tied")]
            if tolerated:
                shown = ", ".join(tolerated[:3]) + (", …" if len(tolerated) > 3 else "")
                parts.append(f"filled {len(tolerated)} missing tensors ({shown})")
            if parts:
                out.append(f"{label}: {'; '.join(parts)} (--no-strict; listed in run.json)")
        return out


def match_states(
    model: nn.Module, checkpoints: Mapping[str, Mapping[str, torch.Tensor]], *, strict: bool = True
) -> StateMatch:
    """Check every checkpoint against the model and against each other, all problems at once.

    A tied name (one tensor under two names in the model) that a checkpoint stores once — as safetensors'
    ``save_model`` does — takes its partner's value. With ``strict=False``, a missing tensor takes the other
    checkpoint's value (so it does not move), else the model's own; a tensor the model lacks is dropped.

    Args:
        model: the model whose ``state_dict()`` defines the expected names, shapes and dtype kinds.
        checkpoints: label (e.g. "init", "final") -> tensors, already aligned with ``align_to_model``.
        strict: missing and unexpected tensors are errors (the default) or are tolerated and recorded.

    Raises:
        ModelError: listing, per checkpoint and sorted, every missing, unexpected (with the nearest model names),
            mis-shaped and differing tied tensor, then every tensor whose dtype kind (floating, integer, complex)
            differs between the checkpoints and the model.
    """
    expected = model.state_dict()
    tied = tied_names(model)
    states = {label: dict(tensors) for label, tensors in checkpoints.items()}
    filled: dict[str, dict[str, str]] = {label: {} for label in states}
    problems: list[str] = []
    tolerable = 0
    for label, tensors in states.items():
        tie_problems = []
        for group in tied:
            present = [n for n in group if n in tensors]
            if not present:
                continue
            first = tensors[present[0]]
            if any(tensors[n].shape != first.shape or not torch.equal(tensors[n], first) for n in present[1:]):
                tie_problems.append(f"{label}: tied tensors {', '.join(present)} hold different values")
            for n in group:
                if n not in tensors:
                    tensors[n] = first
                    filled[label][n] = f"tied to {present[0]}"
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        shapes = sorted(k for k in set(expected) & set(tensors) if tensors[k].shape != expected[k].shape)
        tolerable += len(missing) + len(unexpected)
        if strict:
            for k in missing:
                problems.append(f"{label}: missing {k} {list(expected[k].shape)}")
            for k in unexpected:
                close = difflib.get_close_matches(k, expected, n=2, cutoff=0.6)
                near = f" (closest model names: {', '.join(close)})" if close else ""
                problems.append(f"{label}: unexpected {k} {list(tensors[k].shape)}{near}")
        for k in shapes:
            problems.append(f"{label}: shape of {k} is {list(tensors[k].shape)}, model has {list(expected[k].shape)}")
        problems += tie_problems
    for k in sorted(expected):
        by_label = {label: tensors[k] for label, tensors in states.items() if k in tensors}
        if any(_kind(t) != _kind(expected[k]) for t in by_label.values()):
            kinds = ", ".join(f"{label} {str(t.dtype).removeprefix('torch.')}" for label, t in by_label.items())
            problems.append(f"dtype of {k}: {kinds}, model {str(expected[k].dtype).removeprefix('torch.')}")
    if problems:
        shown = problems[:40]
        more = f"; … and {len(problems) - 40} more" if len(problems) > 40 else ""
        only_names = strict and tolerable == len(problems)
        raise ModelError(
            f"the model does not match the checkpoints ({len(problems)} problems): " + "; ".join(shown) + more,
            hint="check --model and --model-arg (e.g. width, num_classes, in_channels)"
            + ("; --no-strict tolerates missing and unexpected tensors" if only_names else ""),
        )
    ignored: dict[str, tuple[str, ...]] = {}
    for label, tensors in states.items():
        ignored[label] = tuple(sorted(set(tensors) - set(expected)))
        for k in ignored[label]:
            del tensors[k]
        for k in sorted(set(expected) - set(tensors)):
            other = next((lbl for lbl, t in states.items() if lbl != label and k in checkpoints[lbl]), None)
            if other is not None:
                tensors[k] = states[other][k]
                filled[label][k] = f"from {other} (does not move)"
            else:
                tensors[k] = expected[k].detach().clone()
                filled[label][k] = "the model's own value"
    return StateMatch(states, tied, filled, ignored, _dtype_counts(expected))


def check_against(model: nn.Module, checkpoints: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
    """Strict ``match_states``: raise when any checkpoint does not match the model exactly.

    Raises:
        ModelError: see match_states.
    """
    match_states(model, checkpoints, strict=True)


def split_ties(groups: Mapping[str, Sequence[str]], tied: Sequence[Sequence[str]]) -> list[str]:
    """Groups that hold some but not all names of a tied tensor, which would have to move and stay at once.

    Returns one line per such group (empty when none), e.g. "group dec holds dec.weight but not enc.weight,
    one tensor in the model".
    """
    out = []
    for name, members in groups.items():
        held = set(members)
        for tie in tied:
            inside = [n for n in tie if n in held]
            if inside and len(inside) < len(tie):
                outside = [n for n in tie if n not in held]
                out.append(
                    f"group {name} holds {', '.join(inside)} but not {', '.join(outside)}, one tensor in the model"
                )
    return out
