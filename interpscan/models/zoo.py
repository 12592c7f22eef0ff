"""The built-in zoo: CIFAR-style MLP, CNN, ResNets and VGGs, their arguments read off a checkpoint's shapes, and
detection of the one zoo model whose names and shapes equal a state dict's."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ModelError, opt
from ..statedict import WRAPPER_PREFIXES, strip_prefixes


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


def find_tensor(tensors: Mapping[str, torch.Tensor], name: str) -> torch.Tensor | None:
    """The tensor called ``name``, also under wrapper prefixes (``module.``, ``model.``, ``_orig_mod.``)."""
    for key, value in tensors.items():
        while key != name and key.startswith(WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        if key == name:
            return value
    return None


def _infer_conv(tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if (conv := find_tensor(tensors, "conv1.weight")) is not None and conv.dim() == 4:
        args.update(width=int(conv.shape[0]), in_channels=int(conv.shape[1]))
        args["bn"] = find_tensor(tensors, "bn1.weight") is not None
    if (fc := find_tensor(tensors, "fc.weight")) is not None and fc.dim() == 2:
        args["num_classes"] = int(fc.shape[0])
    return args


def _infer_resnet(tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    # every ResNet's base width is that of its stem, which layer1 keeps (or, for bottlenecks, reduces to)
    return _infer_conv(tensors)


def _infer_vgg(tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if (conv := find_tensor(tensors, "features.0.weight")) is not None and conv.dim() == 4:
        args.update(width=int(conv.shape[0]), in_channels=int(conv.shape[1]))
        args["bn"] = find_tensor(tensors, "features.1.running_mean") is not None
    if (fc := find_tensor(tensors, "classifier.weight")) is not None and fc.dim() == 2:
        args["num_classes"] = int(fc.shape[0])
    return args


def _infer_mlp(tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    hidden = [t for i in range(64) if (t := find_tensor(tensors, f"features.{i}.weight")) is not None and t.dim() == 2]
    if hidden:
        args.update(in_features=int(hidden[0].shape[1]), width=int(hidden[0].shape[0]), depth=len(hidden))
    if (fc := find_tensor(tensors, "fc.weight")) is not None and fc.dim() == 2:
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


def on_meta(factory: Callable[..., Any], args: Mapping[str, Any]) -> Any:
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
        model = on_meta(entry.factory, {})
        rows.append(
            {
                "name": name,
                "parameters": sum(p.numel() for p in model.parameters()),
                "input": entry.input,
                "description": entry.description,
            }
        )
    return rows


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
    out = []
    for name, entry in ZOO.items():
        try:
            args = entry.infer(tensors)
            expected = {k: tuple(v.shape) for k, v in on_meta(entry.factory, args).state_dict().items()}
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
            hint=f"pass {opt('model', exact[0].name)} (or another of them)",
        )
    close = [c.describe() for c in candidates[:3] if c.matching]
    raise ModelError(
        f"no {opt('model')} given, and {source} ({len(tensors)} tensors) matches no zoo model"
        + (f"; closest: {'; '.join(close)}" if close else ""),
        hint=f"pass {opt('model', 'NAME')} (`interpscan models` lists the zoo), "
        f"{opt('model', 'path/to/file.py:factory')} or {opt('model', 'package.module:factory')}, with "
        f"{opt('model_args', 'KEY=VALUE')} for its arguments",
    )
