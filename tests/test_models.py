"""Tests for interpscan.models: the spec grammar, model arguments, the zoo, user factories, the shape check."""

from __future__ import annotations

import re
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from interpscan.checkpoints import Checkpoint, CheckpointInfo, load_checkpoint
from interpscan.errors import ModelError, UsageError, render
from interpscan.models import (
    CNN,
    MLP,
    VGG,
    ZOO,
    BasicBlock,
    Bottleneck,
    ModelSpec,
    ResNet,
    build_model,
    check_against,
    detect_zoo_model,
    factory_parameters,
    match_states,
    model_spec_for,
    optional_packages,
    parse_model_spec,
    resnet18,
    resolve_model,
    zoo_table,
)
from interpscan.options import flags
from interpscan.values import parse_model_args, parse_value

# ------------------------------------------------------------------------------------------ spec grammar


@pytest.mark.parametrize(
    ("text", "kind", "target", "factory"),
    [
        ("mlp", "zoo", "mlp", None),
        ("cnn", "zoo", "cnn", None),
        ("resnet20", "zoo", "resnet20", None),
        ("resnet18", "zoo", "resnet18", None),
        ("net.py:make", "file", "net.py", "make"),
        ("dir/net.py:make", "file", "dir/net.py", "make"),
        ("/abs/dir/net.py:build_model", "file", "/abs/dir/net.py", "build_model"),
        ("models/net:make", "file", "models/net", "make"),  # a '/' makes it a path even without .py
        (r"C:\nets\net.py:make", "file", r"C:\nets\net.py", "make"),  # only the last ':' separates
        ("pkg.mod:make", "module", "pkg.mod", "make"),
        ("interpscan.models:MLP", "module", "interpscan.models", "MLP"),
        ("torchvision.models:resnet18", "module", "torchvision.models", "resnet18"),
        ("torchvision:resnet18", "torchvision", "torchvision", "resnet18"),
        ("timm:vit_tiny_patch16_224.augreg_in21k", "timm", "timm", "vit_tiny_patch16_224.augreg_in21k"),
        ("timm:efficientnet-b0", "timm", "timm", "efficientnet-b0"),
        ("vgg16", "zoo", "vgg16", None),
    ],
)
def test_parse_model_spec(text: str, kind: str, target: str, factory: str | None) -> None:
    spec = parse_model_spec(text)
    assert (spec.kind, spec.target, spec.factory) == (kind, target, factory)
    assert spec.text == text
    assert spec.args == {}


def test_spec_carries_its_arguments_as_a_copy() -> None:
    args = {"width": 8, "bn": False}
    spec = parse_model_spec("cnn", args)
    args["width"] = 99
    assert spec.args == {"width": 8, "bn": False}
    assert spec.to_json() == {"spec": "cnn", "kind": "zoo", "args": {"width": 8, "bn": False}}
    assert parse_model_spec("net.py:make", {"k": 3}).to_json() == {
        "spec": "net.py:make",
        "kind": "file",
        "args": {"k": 3},
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("resnet", "unknown model 'resnet'; closest: resnet50, resnet34, resnet20"),
        ("resnet19", "unknown model 'resnet19'; closest: resnet18, resnet50, resnet34"),
        ("mpl", "unknown model 'mpl'; closest: mlp"),
        ("vgg13", "unknown model 'vgg13'; closest: vgg16, vgg11"),
        ("CNN", "unknown model 'CNN'"),  # zoo names are case-sensitive; nothing is close enough
        ("transformer", "unknown model 'transformer'"),
    ],
)
def test_unknown_zoo_name(text: str, message: str) -> None:
    with pytest.raises(ModelError) as exc:
        parse_model_spec(text)
    assert str(exc.value) == message
    assert exc.value.hint == (
        "zoo models: mlp, cnn, resnet20, resnet18, resnet34, resnet50, vgg11, vgg16 (`interpscan models`); "
        "or pass path/to/file.py:factory, package.module:factory, torchvision:NAME or timm:NAME"
    )


@pytest.mark.parametrize(
    "text",
    [":make", "net.py:", "pkg.mod:", "pkg.mod:1make", "pkg.mod:make-net", "net.py:make.sub", "net.py: make", ":"],
)
def test_malformed_spec(text: str) -> None:
    with pytest.raises(ModelError) as exc:
        parse_model_spec(text)
    assert str(exc.value) == f"model spec {text!r} is not PATH.py:FACTORY or MODULE:FACTORY"


# ----------------------------------------------------------------------------------------- model args


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("-2", -2),
        ("1_000", 1000),
        ("0.5", 0.5),
        ("1e-3", 0.001),
        ("(1, 28, 28)", (1, 28, 28)),
        ("(3,)", (3,)),
        ("[16, 32]", [16, 32]),
        ("{'a': 1}", {"a": 1}),
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("false", False),
        ("False", False),
        ("none", None),
        ("None", None),
        ("null", None),
        ("relu", "relu"),
        ("'relu'", "relu"),
        ("resnet-18", "resnet-18"),
        ("a b", "a b"),
        ("inf", "inf"),
        ("{[]: 1}", "{[]: 1}"),  # parses as a literal but cannot be built: kept as the text
        ("", ""),
    ],
)
def test_parse_value(text: str, value: Any) -> None:
    got = parse_value(text)
    assert got == value
    assert type(got) is type(value)  # 1 is not True, 1.0 is not 1


def test_parse_model_args() -> None:
    pairs = ["width=32", "bn=false", "shape=(1, 28, 28)", "act=relu", " depth = 3", "eq=a=b", "empty="]
    assert parse_model_args(pairs) == {
        "width": 32,
        "bn": False,
        "shape": (1, 28, 28),
        "act": "relu",
        "depth": 3,
        "eq": "a=b",
        "empty": "",
    }
    assert parse_model_args([]) == {}
    assert parse_model_args(["width=8", "width=16"]) == {"width": 16}  # the last one wins


@pytest.mark.parametrize("pair", ["width", "=3", "1x=3", "bad key=1", "", "width:32", "a.b=1"])
def test_bad_model_arg(pair: str) -> None:
    with pytest.raises(UsageError) as exc:
        parse_model_args(["width=8", pair])
    assert str(exc.value) == f"model_args {pair!r} is not KEY=VALUE"
    assert exc.value.hint == "e.g. model_args='width=32'"
    assert exc.value.rendered(flags()) == (f"--model-arg {pair!r} is not KEY=VALUE", "e.g. --model-arg width=32")


# ------------------------------------------------------------------------------------------------ zoo


@pytest.mark.parametrize(
    ("name", "args", "shape", "classes"),
    [
        ("mlp", {"width": 8}, (2, 1, 28, 28), 10),
        ("mlp", {"width": 8, "depth": 0, "num_classes": 3}, (2, 784), 3),
        ("cnn", {"width": 4}, (2, 1, 28, 28), 10),
        ("cnn", {"width": 4, "bn": False, "in_channels": 3, "num_classes": 5}, (3, 3, 32, 32), 5),
        ("resnet20", {"width": 4}, (2, 3, 32, 32), 10),
        ("resnet18", {"width": 2}, (2, 3, 32, 32), 10),
        ("resnet18", {"width": 2, "in_channels": 1, "num_classes": 100}, (1, 1, 28, 28), 100),
        ("resnet34", {"width": 2}, (2, 3, 32, 32), 10),
        ("resnet50", {"width": 2, "num_classes": 7}, (2, 3, 32, 32), 7),
        ("vgg11", {"width": 2}, (2, 3, 32, 32), 10),
        ("vgg16", {"width": 2, "bn": False, "in_channels": 1}, (2, 1, 28, 28), 10),  # pools round up: 28 works
    ],
)
def test_zoo_models_give_logits_in_eval_mode(
    name: str, args: dict[str, Any], shape: tuple[int, ...], classes: int
) -> None:
    torch.manual_seed(0)
    model = build_model(parse_model_spec(name, args))
    assert not any(m.training for m in model.modules())
    with torch.no_grad():
        out = model(torch.randn(*shape))
    assert out.shape == (shape[0], classes)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_zoo_lists_every_model_with_a_description() -> None:
    assert list(ZOO) == ["mlp", "cnn", "resnet20", "resnet18", "resnet34", "resnet50", "vgg11", "vgg16"]
    assert all(entry.description for entry in ZOO.values())


def test_eval_mode_makes_outputs_deterministic() -> None:
    model = build_model(parse_model_spec("mlp", {"width": 8, "dropout": 0.5}))
    assert any(isinstance(m, nn.Dropout) for m in model.modules())
    x = torch.randn(4, 784)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_resnet18_layout() -> None:
    model = build_model(parse_model_spec("resnet18", {"width": 2}))
    assert isinstance(model, ResNet)
    assert [n for n, _ in model.named_children()] == [
        "conv1",
        "bn1",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "avgpool",
        "fc",
    ]
    for i, width in enumerate([2, 4, 8, 16], start=1):
        stage = getattr(model, f"layer{i}")
        assert [type(b) for b in stage] == [BasicBlock, BasicBlock]
        assert stage[-1].conv2.out_channels == width
    assert model.fc.in_features == 16


def test_resnet20_layout() -> None:
    model = build_model(parse_model_spec("resnet20", {"width": 4}))
    assert [n for n, _ in model.named_children() if n.startswith("layer")] == ["layer1", "layer2", "layer3"]
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [3, 3, 3]
    # 19 3×3 convs + fc = the 20 weighted layers of the name; 1×1 shortcuts where the shape changes.
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert sum(c.kernel_size == (3, 3) for c in convs) == 19
    assert sum(c.kernel_size == (1, 1) for c in convs) == 2
    assert model.fc.in_features == 16


def test_mlp_layout() -> None:
    model = MLP(in_features=12, num_classes=3, width=5, depth=3, dropout=0.1)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(12, 5), (5, 5), (5, 5), (5, 3)]
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 3


@pytest.mark.parametrize("name", ["cnn", "resnet20", "resnet18", "resnet34", "resnet50", "vgg11", "vgg16"])
def test_bn_false_removes_every_batch_norm(name: str) -> None:
    with_bn = build_model(parse_model_spec(name, {"width": 2}))
    without = build_model(parse_model_spec(name, {"width": 2, "bn": False}))
    assert any(isinstance(m, _BatchNorm) for m in with_bn.modules())
    assert not any(isinstance(m, _BatchNorm) for m in without.modules())
    assert not any("running_mean" in k or "num_batches_tracked" in k for k in without.state_dict())
    # Without BN to absorb it, every conv gets its bias back.
    assert all(c.bias is None for c in with_bn.modules() if isinstance(c, nn.Conv2d))
    assert all(c.bias is not None for c in without.modules() if isinstance(c, nn.Conv2d))


def test_cnn_head_size_follows_width() -> None:
    assert CNN(width=3).fc.in_features == 2 * 3 * 16


# ---------------------------------------------------------------------------------- user factories


def write(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


NET_PY = """
    from torch import nn

    def make_net(width=4, num_classes=3):
        layers = [nn.Flatten(), nn.Linear(6, width), nn.ReLU(), nn.Dropout(0.5), nn.Linear(width, num_classes)]
        return nn.Sequential(*layers)

    def make_number():
        return 3

    def make_broken(width=4):
        raise ValueError(f"width {width} is not supported")

    def make_strict(*, width):
        return nn.Linear(2, width)

    helper_constant = 7
"""


@pytest.fixture
def net_py(tmp_path: Path) -> Path:
    return write(tmp_path / "nets" / "net.py", NET_PY)


def test_file_factory(net_py: Path) -> None:
    spec = parse_model_spec(f"{net_py}:make_net", {"width": 5})
    assert spec.kind == "file"
    model = build_model(spec)
    assert isinstance(model, nn.Sequential)
    assert not model.training
    assert not model[3].training  # the dropout too
    assert (model[1].out_features, model[4].out_features) == (5, 3)
    assert model(torch.randn(2, 2, 3)).shape == (2, 3)
    assert factory_parameters(spec) == {"width", "num_classes"}


def test_module_factory() -> None:
    spec = parse_model_spec("interpscan.models:MLP", {"in_features": 6, "width": 4, "num_classes": 2})
    assert spec.kind == "module"
    model = build_model(spec)
    assert type(model) is MLP
    assert not model.training
    assert model(torch.randn(5, 6)).shape == (5, 2)
    assert factory_parameters(spec) == {"in_features", "num_classes", "width", "depth", "dropout"}


def test_factory_parameters_of_zoo_and_kwargs_only() -> None:
    assert factory_parameters(parse_model_spec("resnet18")) == {"in_channels", "num_classes", "width", "bn"}
    assert factory_parameters(ModelSpec("module", "builtins", "dict", {})) == set()


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as exc:
        build_model(parse_model_spec(f"{tmp_path}/absent.py:make"))
    assert str(exc.value) == f"model='{tmp_path}/absent.py:make': file not found: {tmp_path}/absent.py"
    assert exc.value.rendered(flags())[0] == f"--model {tmp_path}/absent.py:make: file not found: {tmp_path}/absent.py"
    assert exc.value.hint == "check the path before the ':'"


def test_missing_factory_lists_closest_names(net_py: Path) -> None:
    with pytest.raises(ModelError) as exc:
        build_model(parse_model_spec(f"{net_py}:make_nett"))
    assert str(exc.value) == (
        f"model='{net_py}:make_nett': {net_py} has no 'make_nett'; closest: make_net, make_strict, make_number"
    )


def test_missing_factory_with_nothing_close(net_py: Path) -> None:
    with pytest.raises(ModelError) as exc:
        build_model(parse_model_spec(f"{net_py}:zzz"))
    assert str(exc.value) == f"model='{net_py}:zzz': {net_py} has no 'zzz'"


def test_model_file_that_fails_to_import(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.py", "raise RuntimeError('needs a GPU')\n")
    with pytest.raises(ModelError) as exc:
        build_model(parse_model_spec(f"{path}:make"))
    assert str(exc.value) == f"model='{path}:make': importing {path} failed: RuntimeError: needs a GPU"


def test_factory_that_raises(net_py: Path) -> None:
    with pytest.raises(ModelError) as exc:
        build_model(parse_model_spec(f"{net_py}:make_broken", {"width": 7}))
    assert str(exc.value) == f"building model '{net_py}:make_broken' failed: ValueError: width 7 is not supported"


def test_factory_that_returns_a_non_module(net_py: Path) -> None:
    with pytest.raises(ModelError) as exc:
        build_model(parse_model_spec(f"{net_py}:make_number"))
    assert str(exc.value) == f"model factory '{net_py}:make_number' returned int, not a torch.nn.Module"


@pytest.mark.parametrize(
    ("text", "args"),
    [("mlp", {"widht": 8}), ("resnet18", {"depth": 3}), ("interpscan.models:CNN", {"colour": True})],
)
def test_bad_kwargs(text: str, args: dict[str, Any]) -> None:
    with pytest.raises(ModelError, match=rf"model {text!r} rejected its arguments: .*{next(iter(args))}") as exc:
        build_model(parse_model_spec(text, args))
    assert exc.value.hint == "check model_args"


def test_missing_keyword_only_argument(net_py: Path) -> None:
    with pytest.raises(ModelError, match=r"rejected its arguments: .*width"):
        build_model(parse_model_spec(f"{net_py}:make_strict"))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("interpscan.models:NoSuchNet", "NoSuchNet"),
        ("interpscan_no_such_package:make", "interpscan_no_such_package"),
    ],
)
def test_module_factory_that_cannot_be_resolved(text: str, fragment: str) -> None:
    with pytest.raises(ModelError, match=rf"model={re.escape(repr(text))}: cannot resolve it \(.*{fragment}"):
        build_model(parse_model_spec(text))


def test_module_that_fails_to_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "interpscan_test_broken_nets.py", "raise ImportError('no CUDA')\nx = 1 / 0\n")
    write(tmp_path / "interpscan_test_crashing_nets.py", "x = 1 / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModelError, match=r"model='interpscan_test_broken_nets:make': cannot resolve it \(.*no CUDA"):
        build_model(parse_model_spec("interpscan_test_broken_nets:make"))
    with pytest.raises(ModelError) as exc:
        build_model(parse_model_spec("interpscan_test_crashing_nets:make"))
    assert str(exc.value) == (
        "model='interpscan_test_crashing_nets:make': importing interpscan_test_crashing_nets failed: "
        "ZeroDivisionError: division by zero"
    )


# ------------------------------------------------------------------------------------------ the check


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.head = nn.Linear(3, 2)


def test_check_passes_when_everything_matches() -> None:
    model = Tiny()
    sd = model.state_dict()
    check_against(model, {"init": sd, "final": {k: torch.zeros_like(v) for k, v in sd.items()}})


def test_check_lists_every_problem_of_both_checkpoints_at_once() -> None:
    z = torch.zeros
    init = {"fc.weight": z(3, 4), "fc.bias": z(3), "head.weight": z(2, 3), "head.bais": z(2)}
    final = {
        "step": torch.tensor(3),
        "module.head.bias": z(2),
        "head.weight": z(3, 2),
        "fc.weight": z(3, 5),
        "fc.bias": z(3),
    }
    with pytest.raises(ModelError) as exc:
        check_against(Tiny(), {"init": init, "final": final})
    assert str(exc.value) == (
        "the model does not match the checkpoints (7 problems): "
        "init: missing head.bias [2]; "
        "init: unexpected head.bais [2] (closest model names: head.bias, head.weight); "
        "final: missing head.bias [2]; "
        "final: unexpected module.head.bias [2] (closest model names: head.bias); "
        "final: unexpected step []; "
        "final: shape of fc.weight is [3, 5], model has [3, 4]; "
        "final: shape of head.weight is [3, 2], model has [2, 3]"
    )
    assert exc.value.hint == (
        "check model and model_args (e.g. width, num_classes, in_channels; timm: in_chans); 1 tensors look "
        "renamed (the same shape under another name, e.g. head.bais in the file, head.bias in the model): saved by "
        "other code than the model's? A Hugging Face model is read right from its save_pretrained folder (with "
        "config.json)"
    )


def test_check_sorts_within_each_kind() -> None:
    sd = Tiny().state_dict()
    with pytest.raises(ModelError) as exc:
        check_against(Tiny(), {"final": {}})
    assert str(exc.value) == "the model does not match the checkpoints (4 problems): " + "; ".join(
        f"final: missing {k} {list(sd[k].shape)}" for k in sorted(sd)
    )


def test_check_includes_buffers() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    sd = {k: v for k, v in model.state_dict().items() if k != "1.running_var"}
    with pytest.raises(ModelError, match=r"\(1 problems\): init: missing 1.running_var \[2\]$"):
        check_against(model, {"init": sd})


def test_check_caps_a_long_list() -> None:
    model = Tiny()
    extra = {f"extra{i:02d}": torch.zeros(1) for i in range(45)}
    with pytest.raises(ModelError) as exc:
        check_against(model, {"init": {**model.state_dict(), **extra}})
    message = str(exc.value)
    assert message.startswith("the model does not match the checkpoints (45 problems): init: unexpected extra00 [1];")
    assert message.endswith("init: unexpected extra39 [1]; … and 5 more")
    assert "extra40" not in message


# ------------------------------------------------------------------------------------------ the new zoo


@pytest.mark.parametrize(
    ("name", "parameters"),
    [
        # the CIFAR variants in kuangliu/pytorch-cifar, the usual reference (convs without bias, fc 512·e → 10)
        ("resnet18", 11_173_962),
        ("resnet34", 21_282_122),
        ("resnet50", 23_520_842),
    ],
)
def test_resnet_parameter_counts_match_the_reference_implementation(name: str, parameters: int) -> None:
    assert sum(p.numel() for p in ZOO[name].factory().parameters()) == parameters


def test_resnet50_uses_bottlenecks() -> None:
    model = build_model(parse_model_spec("resnet50", {"width": 2}))
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3, 4)] == [3, 4, 6, 3]
    assert all(isinstance(b, Bottleneck) for i in (1, 2, 3, 4) for b in getattr(model, f"layer{i}"))
    assert model.fc.in_features == 8 * 2 * 4  # the last stage's width × expansion


def test_vgg_layout() -> None:
    model = build_model(parse_model_spec("vgg16", {"width": 2}))
    assert isinstance(model, VGG)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [2, 2, 4, 4, 8, 8, 8, 16, 16, 16, 16, 16, 16]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 5
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.features) == 13
    assert model.classifier.in_features == 16
    assert len([m for m in build_model(parse_model_spec("vgg11")).features if isinstance(m, nn.Conv2d)]) == 8


def test_zoo_table() -> None:
    rows = zoo_table()
    assert [r["name"] for r in rows] == list(ZOO)
    by_name = {r["name"]: r for r in rows}
    assert by_name["resnet18"] == {
        "name": "resnet18",
        "parameters": 11_173_962,
        "input": "3×32×32",
        "description": ZOO["resnet18"].description,
    }
    assert by_name["mlp"]["parameters"] == 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10
    assert [r["name"] for r in zoo_table("resnet*")] == ["resnet20", "resnet18", "resnet34", "resnet50"]
    assert [r["name"] for r in zoo_table("vgg")] == ["vgg11", "vgg16"]  # a substring without glob characters
    assert zoo_table("transformer") == []


# ------------------------------------------------------------------------------------- zoo detection


def state_of(name: str, **args: Any) -> dict[str, torch.Tensor]:
    return build_model(parse_model_spec(name, args)).state_dict()


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("mlp", {"in_features": 12, "width": 5, "depth": 3, "num_classes": 4}),
        ("cnn", {"width": 3, "in_channels": 1, "num_classes": 10, "bn": True}),
        ("cnn", {"width": 3, "in_channels": 3, "num_classes": 5, "bn": False}),
        ("resnet20", {"width": 4, "in_channels": 3, "num_classes": 100, "bn": True}),
        ("resnet18", {"width": 2, "in_channels": 1, "num_classes": 7, "bn": True}),
        ("resnet34", {"width": 2, "in_channels": 3, "num_classes": 10, "bn": False}),
        ("resnet50", {"width": 2, "in_channels": 3, "num_classes": 10, "bn": True}),
        ("vgg11", {"width": 2, "in_channels": 3, "num_classes": 10, "bn": True}),
        ("vgg16", {"width": 2, "in_channels": 3, "num_classes": 100, "bn": False}),
    ],
)
def test_detection_names_the_one_zoo_model_and_its_arguments(name: str, args: dict[str, Any]) -> None:
    state = state_of(name, **args)
    match = detect_zoo_model(state)
    assert (match.name, match.args) == (name, args)
    assert match.exact
    # wrapped by DDP and torch.compile it is still recognised
    assert detect_zoo_model({f"module._orig_mod.{k}": v for k, v in state.items()}).name == name


def test_detection_failure_lists_the_closest_models() -> None:
    state = state_of("resnet20", width=4, num_classes=100)
    del state["fc.bias"]
    state["head.weight"] = torch.zeros(3)
    with pytest.raises(ModelError) as exc:
        detect_zoo_model(state, "final.pt")
    assert str(exc.value) == (
        "no model given, and final.pt (128 tensors) matches no zoo model; closest: "
        "resnet20 (127 of 129 tensors match; bn=True, in_channels=3, num_classes=100, width=4); "
        "resnet34 (126 of 219 tensors match; bn=True, in_channels=3, num_classes=100, width=4); "
        "resnet18 (90 of 159 tensors match; bn=True, in_channels=3, num_classes=100, width=4)"
    )
    assert exc.value.hint == (
        "pass model='NAME' (`interpscan models` lists the zoo), model='path/to/file.py:factory' or "
        "model='package.module:factory', with model_args='KEY=VALUE' for its arguments"
    )


def test_detection_of_something_unrelated() -> None:
    with pytest.raises(ModelError) as exc:
        detect_zoo_model({"encoder.layers.0.attn.weight": torch.zeros(4, 4)})
    assert str(exc.value) == "no model given, and the checkpoint (1 tensors) matches no zoo model"


# ------------------------------------------------------------------------------- torchvision and timm


@pytest.mark.parametrize("package", ["torchvision", "timm"])
def test_a_package_that_is_not_installed(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # what an absent package looks like to import
    monkeypatch.setitem(sys.modules, f"{package}.models", None)
    with pytest.raises(ModelError) as exc:
        build_model(parse_model_spec(f"{package}:resnet18"))
    assert str(exc.value) == f"model '{package}:resnet18' needs {package}, which is not installed"
    assert exc.value.hint == f"pip install 'interpscan[vision]' (or pip install {package})"
    assert optional_packages()[package] is False


def fake_package(monkeypatch: pytest.MonkeyPatch, package: str) -> list[tuple[str, dict[str, Any]]]:
    """A stand-in for torchvision.models / timm: records calls, builds a zoo ResNet-18."""
    calls: list[tuple[str, dict[str, Any]]] = []

    def build(name: str, **kwargs: Any) -> nn.Module:
        calls.append((name, kwargs))
        return resnet18(width=2, num_classes=kwargs.get("num_classes", 1000))

    module = types.ModuleType(f"{package}.models" if package == "torchvision" else package)
    module.list_models = lambda: ["resnet18", "resnet50"]  # type: ignore[attr-defined]
    module.get_model = build  # type: ignore[attr-defined]
    module.create_model = build  # type: ignore[attr-defined]
    parent = types.ModuleType(package)
    monkeypatch.setitem(sys.modules, package, parent if package == "torchvision" else module)
    monkeypatch.setitem(sys.modules, f"{package}.models", module)
    return calls


@pytest.mark.parametrize(("package", "fresh"), [("torchvision", {"weights": None}), ("timm", {"pretrained": False})])
def test_a_package_model_is_built_with_fresh_weights_and_the_checkpoints_class_count(
    monkeypatch: pytest.MonkeyPatch, package: str, fresh: dict[str, Any]
) -> None:
    calls = fake_package(monkeypatch, package)
    state = resnet18(width=2, num_classes=37).state_dict()
    ckpt = make_checkpoint(state)
    spec, origin = model_spec_for(f"{package}:resnet18", {}, ckpt, ckpt)
    assert spec.args == {"num_classes": 37}  # read off fc, the model's last linear layer
    assert render(origin) == "model, num_classes from the checkpoint"
    assert render(origin, flags()) == "--model, num_classes from the checkpoint"
    model = build_model(spec)
    assert calls[-1] == ("resnet18", {**fresh, "num_classes": 37})
    check_against(model, {"final": state})
    with pytest.raises(ModelError) as exc:
        build_model(parse_model_spec(f"{package}:resnet19"))
    assert str(exc.value) == f"{package} has no model 'resnet19'; closest: resnet18, resnet50"


# ------------------------------------------------------------------------------- which model a scan uses


def make_checkpoint(
    tensors: dict[str, torch.Tensor], path: str = "final.pt", spec: dict[str, Any] | None = None
) -> Checkpoint:
    info = CheckpointInfo(
        path=path,
        size=1,
        sha256="0" * 64,
        format="torch-zip",
        container_key=None,
        tensor_count=len(tensors),
        dtypes={},
        metadata={"interpscan": spec} if spec else {},
    )
    return Checkpoint(tensors, info)


MAKE_PY = """
    from torch import nn

    def make(width=4, depth=1):
        return nn.Sequential(nn.Flatten(), nn.Linear(6, width), nn.ReLU(), nn.Linear(width, 3))
"""


def test_a_recorded_model_file_is_found_from_any_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from interpscan.train import save_checkpoint

    write(tmp_path / "project" / "nets" / "net.py", MAKE_PY)
    monkeypatch.chdir(tmp_path / "project")
    spec = parse_model_spec("nets/net.py:make", {"width": 5})
    save_checkpoint(build_model(spec), tmp_path / "final.pt", spec)
    monkeypatch.chdir(tmp_path)  # scanning from elsewhere
    ckpt = load_checkpoint(tmp_path / "final.pt")
    assert ckpt.model_spec == {"model": f"{tmp_path / 'project' / 'nets' / 'net.py'}:make", "model_args": {"width": 5}}
    got, origin = model_spec_for(None, {}, ckpt, ckpt, trust_recorded_code=True)
    assert (got.target, got.args, render(origin)) == (
        str(tmp_path / "project/nets/net.py"),
        {"width": 5},
        f"recorded in {tmp_path / 'final.pt'}, code trusted with trust_recorded_code=True",
    )


def test_an_older_relative_record_is_looked_for_beside_the_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "run" / "net.py", MAKE_PY)
    ckpt = make_checkpoint({}, str(tmp_path / "run" / "final.pt"), {"model": "net.py:make", "model_args": {}})
    monkeypatch.chdir(tmp_path)
    spec, _ = model_spec_for(None, {}, ckpt, ckpt, trust_recorded_code=True)
    assert spec.target == str(tmp_path / "run" / "net.py")


def test_a_recorded_model_file_that_is_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = {"model": "examples/custom_model.py:make", "model_args": {"width": 32}}
    ckpt = make_checkpoint({}, str(tmp_path / "runs" / "final.pt"), spec)
    with pytest.raises(ModelError) as exc:
        model_spec_for(None, {}, ckpt, ckpt, trust_recorded_code=True)
    assert str(exc.value) == (
        f"the model file examples/custom_model.py recorded in {tmp_path / 'runs' / 'final.pt'} was not found "
        f"(looked in {tmp_path} and {tmp_path / 'runs'})"
    )
    assert exc.value.hint == "pass model='path/to/custom_model.py:make'; the recorded arguments (width=32) are kept"


def test_model_naming_the_recorded_model_keeps_its_arguments(tmp_path: Path) -> None:
    path = write(tmp_path / "moved" / "net.py", MAKE_PY)
    recorded = {"model": "/old/place/net.py:make", "model_args": {"width": 7, "depth": 2}}
    ckpt = make_checkpoint({}, "final.pt", recorded)
    spec, origin = model_spec_for(f"{path}:make", {"depth": 3}, ckpt, ckpt)
    assert spec.args == {"width": 7, "depth": 3}  # --model-arg wins
    assert render(origin) == "model, width recorded in final.pt"
    zoo = make_checkpoint(
        state_of("cnn", width=3), "final.pt", {"model": "cnn", "model_args": {"width": 3, "dropout": 0.5}}
    )
    spec, origin = model_spec_for("cnn", {}, zoo, zoo)
    assert spec.args == {"width": 3, "in_channels": 1, "bn": True, "num_classes": 10, "dropout": 0.5}
    assert (
        render(origin) == "model, dropout, width recorded in final.pt, bn, in_channels, num_classes from the checkpoint"
    )
    other, _ = model_spec_for("mlp", {}, zoo, zoo)  # another model: the record does not apply
    assert "dropout" not in other.args


def test_resolution_order(tmp_path: Path) -> None:
    state = state_of("cnn", width=3)
    plain = make_checkpoint(state)
    detected = resolve_model(None, {"dropout": 0.1}, plain, plain)
    assert (detected.source, detected.spec.text, detected.spec.args["dropout"]) == ("detected", "cnn", 0.1)
    assert detected.origin == (
        "detected: the only zoo model with the final checkpoint's 14 names and shapes; "
        "bn=True, in_channels=1, num_classes=10, width=3"
    )
    recorded = make_checkpoint(state, spec={"model": "cnn", "model_args": {"width": 3}})
    assert resolve_model(None, {}, plain, recorded).source == "recorded"
    assert resolve_model("cnn", {}, plain, recorded).source == "--model"
    module = nn.Linear(2, 2)
    own = Checkpoint(dict(module.state_dict()), plain.info, module=module)
    resolved = resolve_model(None, {}, own, recorded)
    assert (resolved.source, resolved.spec.kind, resolved.model) == ("checkpoint", "pickle", module)
    with pytest.raises(UsageError, match=r"model_args configures a model interpscan builds; final\.pt is a pickled"):
        resolve_model(None, {"width": 3}, own, plain)


def test_a_half_precision_module_is_evaluated_in_float32() -> None:
    module = nn.Linear(2, 2).half()
    ckpt = make_checkpoint(dict(module.state_dict()))
    resolved = resolve_model(None, {}, Checkpoint(ckpt.tensors, ckpt.info, module=module), ckpt)
    assert {t.dtype for t in resolved.model.state_dict().values()} == {torch.float32}
    assert module.weight.dtype == torch.float16  # the checkpoint's own module is left alone


# ------------------------------------------------------------------------------------ the full check


class TiedNet(nn.Module):
    """An encoder and a decoder sharing one weight matrix, as language models tie embedding and output."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(4, 4)
        self.dec = nn.Linear(4, 4)
        self.dec.weight = self.enc.weight
        self.register_buffer("steps", torch.tensor(0))


def test_every_kind_of_problem_in_one_sorted_message() -> None:
    z = torch.zeros
    init = {"enc.weight": z(4, 4), "dec.weight": torch.ones(4, 4), "enc.bias": z(4), "dec.bias": z(4), "steps": z(())}
    final = {"enc.weight": z(4, 4), "enc.bias": z(5), "dec.bais": z(4), "steps": torch.tensor(3), "extra": z(1)}
    with pytest.raises(ModelError) as exc:
        match_states(TiedNet(), {"init": init, "final": final})
    assert str(exc.value) == (
        "the model does not match the checkpoints (6 problems): "
        "init: tied tensors enc.weight, dec.weight hold different values; "
        "final: missing dec.bias [4]; "
        "final: unexpected dec.bais [4] (closest model names: dec.bias, enc.bias); "
        "final: unexpected extra [1]; "
        "final: shape of enc.bias is [5], model has [4]; "
        "dtype of steps: init float32, final int64, model int64"
    )
    assert exc.value.hint == (
        "check model and model_args (e.g. width, num_classes, in_channels; timm: in_chans); 1 tensors look "
        "renamed (the same shape under another name, e.g. dec.bais in the file, dec.bias in the model): saved by "
        "other code than the model's? A Hugging Face model is read right from its save_pretrained folder (with "
        "config.json)"
    )


def test_names_only_problems_suggest_no_strict() -> None:
    with pytest.raises(ModelError) as exc:
        match_states(Tiny(), {"init": {}})
    assert exc.value.hint == (
        "check model and model_args (e.g. width, num_classes, in_channels; timm: in_chans); "
        "strict=False tolerates missing and unexpected tensors"
    )


class Wide(nn.Module):
    """Tiny's names with wider layers: a bias is a small share of the values (what --no-strict may fill)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(40, 30)
        self.head = nn.Linear(30, 2)


def test_no_strict_fills_and_ignores_and_records() -> None:
    model = Wide()
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    init = {**sd, "extra": torch.zeros(1)}
    final = {k: v + 1 for k, v in sd.items() if k != "head.bias"}
    del init["fc.bias"], final["fc.bias"]
    match = match_states(model, {"init": init, "final": final}, strict=False)
    assert match.states["init"].keys() == sd.keys() == match.states["final"].keys()
    assert torch.equal(match.states["final"]["head.bias"], init["head.bias"])  # from init: it does not move
    assert torch.equal(match.states["init"]["fc.bias"], sd["fc.bias"])  # in neither: the model's own
    assert match.filled == {
        "init": {"fc.bias": "the model's own value"},
        "final": {"fc.bias": "the model's own value", "head.bias": "from init (does not move)"},
    }
    assert match.ignored == {"init": ("extra",), "final": ()}
    assert [render(note, flags()) for note in match.notes()] == [
        "init: ignored 1 tensors the model lacks; filled 1 missing tensors (fc.bias) (--no-strict; listed in run.json)",
        "final: filled 2 missing tensors (fc.bias, head.bias) (--no-strict; listed in run.json)",
    ]
    assert (
        render(match.notes()[1])
        == "final: filled 2 missing tensors (fc.bias, head.bias) (strict=False; listed in run.json)"
    )
    # shapes are never tolerated
    with pytest.raises(ModelError, match=r"\(1 problems\): init: shape of fc.weight is \[1\]"):
        match_states(model, {"init": {**sd, "fc.weight": torch.zeros(1)}}, strict=False)


def test_no_strict_refuses_to_fill_more_than_a_small_share_from_the_random_init() -> None:
    """A checkpoint that is mostly absent would be scanned as a random network, exit 0, wrong curve."""
    model = Wide()
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    del sd["fc.weight"]  # 1200 of 1292 values
    with pytest.raises(ModelError) as exc:
        match_states(model, {"init": sd, "final": sd}, strict=False)
    assert str(exc.value) == (
        "strict=False would fill 1 tensors of init, 93% of the model's values, from the model's random "
        "initialization, so the scan would measure mostly a random network: fc.weight"
    )
    assert "at most 5% of the values" in str(exc.value.hint)
    # filled from the other checkpoint instead (it does not move), it is allowed: those are trained values
    match = match_states(model, {"init": sd, "final": {**sd, "fc.weight": torch.zeros(30, 40)}}, strict=False)
    assert match.filled["init"] == {"fc.weight": "from final (does not move)"}


def test_renamed_tensors_are_named_as_such_and_no_strict_is_not_suggested() -> None:
    model = Wide()
    sd = {k.replace("fc.", "dense."): v for k, v in model.state_dict().items()}
    with pytest.raises(ModelError) as exc:
        match_states(model, {"final": sd})
    hint = str(exc.value.hint)
    assert "2 tensors look renamed" in hint
    assert "e.g. dense.bias in the file, fc.bias in the model" in hint
    assert "tolerates missing" not in hint


def test_a_tied_name_stored_once_takes_its_partners_value() -> None:
    model = TiedNet()
    sd = {k: v for k, v in model.state_dict().items() if k != "dec.weight"}  # as safetensors' save_model stores it
    match = match_states(model, {"final": sd})
    assert match.tied == (("enc.weight", "dec.weight"),)
    assert match.states["final"]["dec.weight"] is sd["enc.weight"]
    assert match.filled == {"final": {"dec.weight": "tied to enc.weight"}}
    assert match.to_json()["dtypes"] == {
        "final": {"float32": 4, "int64": 1},
        "model": {"float32": 4, "int64": 1},
        "interpolated_in": "float32",
        "integers_from": "final",
    }
