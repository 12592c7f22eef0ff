"""torchvision and timm models (``--model torchvision:NAME`` / ``timm:NAME``): their factories, the arguments a
checkpoint's shapes imply (classes and input channels), and which one a state dict is (timm's recorded ``arch``,
or an exact torchvision layout) for ``inspect`` and the no-model error.

Both packages are optional; nothing here imports them unless a model of theirs is named or looked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from .zoo import find_tensor, on_meta

# torchvision's classification models a state dict is compared with when no --model is given (built on the meta
# device: shapes only, no memory); the families users fine-tune most.
TORCHVISION_CANDIDATES = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "wide_resnet50_2",
    "resnext50_32x4d",
    "vgg11",
    "vgg11_bn",
    "vgg16",
    "vgg16_bn",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "densenet121",
    "convnext_tiny",
    "regnet_y_400mf",
    "shufflenet_v2_x1_0",
    "squeezenet1_1",
    "alexnet",
    "vit_b_16",
    "swin_t",
)


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    """The model's stem: its first 2-d convolution in module order (for timm and torchvision, the input's)."""
    return next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def torchvision_model(get_model: Callable[..., nn.Module], name: str, **kwargs: Any) -> nn.Module:
    """torchvision's ``get_model(name, weights=None, **kwargs)``. ``in_channels=C`` (torchvision's builders have
    no such argument) rebuilds the stem convolution for C input channels, as users do for grey images
    (``model.conv1 = nn.Conv2d(1, 64, ...)``)."""
    channels = kwargs.pop("in_channels", None)
    model = get_model(name, weights=None, **kwargs)
    stem = first_conv(model)
    if channels is not None and stem is not None and stem[1].in_channels != channels:
        path, old = stem
        parent = model.get_submodule(path.rpartition(".")[0]) if "." in path else model
        new = nn.Conv2d(
            int(channels),
            old.out_channels,
            old.kernel_size,  # type: ignore[arg-type]
            stride=old.stride,  # type: ignore[arg-type]
            padding=old.padding,  # type: ignore[arg-type]
            dilation=old.dilation,  # type: ignore[arg-type]
            groups=old.groups,
            bias=old.bias is not None,
            padding_mode=old.padding_mode,
        )
        setattr(parent, path.rpartition(".")[2], new)
    return model


def hub_args(kind: str, model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The class count (the last linear layer's outputs) and input channels (the stem's inputs) a checkpoint's
    shapes imply, where they differ from the model's defaults, under the name the package takes: ``in_chans``
    for timm, ``in_channels`` for torchvision (see torchvision_model)."""
    args: dict[str, Any] = {}
    heads = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if heads:
        name, head = heads[-1]
        weight = find_tensor(tensors, f"{name}.weight")
        if weight is not None and weight.dim() == 2 and int(weight.shape[0]) != head.out_features:
            args["num_classes"] = int(weight.shape[0])
    stem = first_conv(model)
    if stem is not None:
        weight = find_tensor(tensors, f"{stem[0]}.weight")
        if weight is not None and weight.dim() == 4 and int(weight.shape[1]) * stem[1].groups != stem[1].in_channels:
            args["in_chans" if kind == "timm" else "in_channels"] = int(weight.shape[1]) * stem[1].groups
    return args


def _layout(tensors: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in tensors.items()}


def _same_but_head_and_stem(model: nn.Module, given: Mapping[str, tuple[int, ...]]) -> bool:
    """The names equal, and every shape too but the classifier's outputs and the stem's input channels (which
    num_classes and in_channels set)."""
    own = _layout(model.state_dict())
    if own.keys() != given.keys():
        return False
    heads = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    stem = first_conv(model)
    free = {f"{heads[-1]}.weight": 0, f"{heads[-1]}.bias": 0} if heads else {}
    if stem is not None:
        free[f"{stem[0]}.weight"] = 1
    for name, shape in own.items():
        other = given[name]
        if name in free and len(shape) == len(other):
            dim = free[name]
            shape, other = shape[:dim] + shape[dim + 1 :], other[:dim] + other[dim + 1 :]
        if shape != other:
            return False
    return True


def _torchvision() -> Any | None:
    try:
        return importlib.import_module("torchvision.models")
    except Exception:  # not installed, or an install that does not import with this torch: nothing to suggest
        return None


def torchvision_matches(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """The torchvision models (of TORCHVISION_CANDIDATES) whose state dict has exactly these names and shapes,
    classifier outputs and input channels aside; empty when torchvision does not import."""
    models = _torchvision()
    if models is None:
        return []
    given = _layout(tensors)
    available = set(map(str, models.list_models()))
    found = []
    for name in TORCHVISION_CANDIDATES:
        if name not in available:
            continue
        try:
            model = on_meta(lambda n=name: models.get_model(n, weights=None), {})
        except Exception:  # a builder that cannot run on meta: not a candidate
            continue
        if len(model.state_dict()) == len(given) and _same_but_head_and_stem(model, given):
            found.append(name)
    return found


def suggestions(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> list[str]:
    """``--model`` values that fit a checkpoint interpscan cannot place on its own: ``timm:ARCH`` for the
    architecture a timm training checkpoint records, ``torchvision:NAME`` for an exact torchvision layout."""
    arch = metadata.get("arch")
    out = [f"timm:{arch}"] if isinstance(arch, str) and arch.replace("_", "").replace(".", "").isalnum() else []
    return out + [f"torchvision:{n}" for n in torchvision_matches(tensors)]
