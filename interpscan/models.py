"""Models: the built-in zoo, the ``--model`` spec grammar, and the check of a model against two checkpoints.

A spec is a zoo name (``resnet20``), a file and factory (``path/to/net.py:make``) or a module and factory
(``package.module:make``). ``--model-arg key=value`` values are Python literals where they parse as one.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import inspect
import pkgutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ModelError, UsageError

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


class ResNet(nn.Module):
    """CIFAR-style ResNet: 3×3 stem without max-pool, stages ``layer1``.., global average pool, ``fc``."""

    def __init__(
        self,
        blocks: Sequence[int],
        widths: Sequence[int],
        in_channels: int = 3,
        num_classes: int = 10,
        bn: bool = True,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=not bn)
        self.bn1 = _norm(bn, widths[0])
        c = widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths, strict=True)):
            stride = 1 if i == 0 else 2
            stage = []
            for j in range(n):
                stage.append(BasicBlock(c, w, stride if j == 0 else 1, bn))
                c = w
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
    # resnet20's base width is that of its first stage; resnet18's too (stem and layer1 share it)
    return _infer_conv(tensors)


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


ZOO: dict[str, ZooEntry] = {
    "mlp": ZooEntry(MLP, "fully connected ReLU net (width, depth, dropout)", _infer_mlp),
    "cnn": ZooEntry(CNN, "two conv-BN-ReLU stages and a linear head (width, bn, dropout)", _infer_conv),
    "resnet20": ZooEntry(resnet20, "CIFAR ResNet-20 with batch norm (width, bn)", _infer_resnet),
    "resnet18": ZooEntry(
        resnet18, "CIFAR ResNet-18 with batch norm, stages layer1..layer4 and fc (width, bn)", _infer_resnet
    ),
}


def infer_zoo_args(name: str, tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Arguments of zoo model ``name`` implied by a checkpoint's shapes (empty for unknown names).

    Lets ``--model resnet18`` load a 100-class or single-channel checkpoint without ``--model-arg``;
    arguments the user passes override these.
    """
    entry = ZOO.get(name)
    return entry.infer(tensors) if entry else {}


# ------------------------------------------------------------------------------------------ spec grammar


@dataclass(frozen=True)
class ModelSpec:
    """A parsed ``--model`` value: where the factory lives and the arguments it gets."""

    kind: str  # "zoo", "file" or "module"
    target: str  # zoo name, file path or module path
    factory: str | None  # attribute name for "file" / "module"
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
        if not target or not factory.isidentifier():
            raise ModelError(f"model spec {text!r} is not PATH.py:FACTORY or MODULE:FACTORY")
        kind = "file" if target.endswith(".py") or "/" in target or "\\" in target else "module"
        return ModelSpec(kind, target, factory, args)
    if text in ZOO:
        return ModelSpec("zoo", text, None, args)
    close = difflib.get_close_matches(text, ZOO, n=3, cutoff=0.4)
    raise ModelError(
        f"unknown model {text!r}" + (f"; closest: {', '.join(close)}" if close else ""),
        hint=f"zoo models: {', '.join(ZOO)}; or pass path/to/file.py:factory or package.module:factory",
    )


def _resolve_factory(spec: ModelSpec) -> Callable[..., Any]:
    if spec.kind == "zoo":
        return ZOO[spec.target].factory
    assert spec.factory is not None
    if spec.kind == "file":
        path = Path(spec.target)
        if not path.is_file():
            raise ModelError(f"model file not found: {path}", hint="check the path before the ':'")
        mod_name = f"interpscan_user_model_{abs(hash(str(path.resolve())))}"
        loader_spec = importlib.util.spec_from_file_location(mod_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ModelError(f"cannot import {path} as a Python module")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[mod_name] = module
        try:
            loader_spec.loader.exec_module(module)
        except Exception as exc:
            raise ModelError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
        factory = getattr(module, spec.factory, None)
        if factory is None:
            names = [n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_")]
            close = difflib.get_close_matches(spec.factory, names, n=3, cutoff=0.4)
            raise ModelError(
                f"{path} has no {spec.factory!r}" + (f"; closest: {', '.join(close)}" if close else ""),
            )
        return factory  # type: ignore[no-any-return]
    try:
        obj = pkgutil.resolve_name(spec.text)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ModelError(f"cannot resolve model factory {spec.text!r}: {exc}") from exc
    except Exception as exc:  # the module itself raised while being imported
        raise ModelError(f"importing {spec.target} failed: {type(exc).__name__}: {exc}") from exc
    return obj  # type: ignore[no-any-return]


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


# ------------------------------------------------------------------------------------------------ checks


def check_against(model: nn.Module, checkpoints: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
    """Check every checkpoint's names and shapes against the model's state dict, all problems at once.

    Args:
        model: the model whose ``state_dict()`` defines the expected names and shapes.
        checkpoints: label (e.g. "init", "final") -> tensors, already aligned with ``align_to_model``.

    Raises:
        ModelError: listing, per checkpoint and sorted, every missing, unexpected and mis-shaped tensor,
            with the nearest model names for each unexpected one.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems: list[str] = []
    for label, tensors in checkpoints.items():
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        shapes = sorted(k for k in set(expected) & set(tensors) if tuple(tensors[k].shape) != expected[k])
        for k in missing:
            problems.append(f"{label}: missing {k} {list(expected[k])}")
        for k in unexpected:
            close = difflib.get_close_matches(k, expected, n=2, cutoff=0.6)
            near = f" (closest model names: {', '.join(close)})" if close else ""
            problems.append(f"{label}: unexpected {k} {list(tensors[k].shape)}{near}")
        for k in shapes:
            problems.append(f"{label}: shape of {k} is {list(tensors[k].shape)}, model has {list(expected[k])}")
    if problems:
        shown = problems[:40]
        more = f"; … and {len(problems) - 40} more" if len(problems) > 40 else ""
        raise ModelError(
            f"the model does not match the checkpoints ({len(problems)} problems): " + "; ".join(shown) + more,
            hint="check --model and --model-arg (e.g. width, num_classes, in_channels)",
        )
