"""Tests for interpscan.models: the spec grammar, model arguments, the zoo, user factories, the shape check."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from interpscan.errors import ModelError, UsageError
from interpscan.models import (
    CNN,
    MLP,
    ZOO,
    BasicBlock,
    ModelSpec,
    ResNet,
    build_model,
    check_against,
    factory_parameters,
    parse_model_args,
    parse_model_spec,
    parse_value,
)

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
        ("resnet", "unknown model 'resnet'; closest: resnet20, resnet18"),
        ("resnet19", "unknown model 'resnet19'; closest: resnet18, resnet20"),
        ("mpl", "unknown model 'mpl'; closest: mlp"),
        ("CNN", "unknown model 'CNN'"),  # zoo names are case-sensitive; nothing is close enough
        ("transformer", "unknown model 'transformer'"),
    ],
)
def test_unknown_zoo_name(text: str, message: str) -> None:
    with pytest.raises(ModelError) as exc:
        parse_model_spec(text)
    assert str(exc.value) == message
    assert exc.value.hint == (
        "zoo models: mlp, cnn, resnet20, resnet18; or pass path/to/file.py:factory or package.module:factory"
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
    assert str(exc.value) == f"--model-arg {pair!r} is not KEY=VALUE"
    assert exc.value.hint == "e.g. --model-arg width=32"


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
    assert list(ZOO) == ["mlp", "cnn", "resnet20", "resnet18"]
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


@pytest.mark.parametrize("name", ["cnn", "resnet20", "resnet18"])
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
    assert str(exc.value) == f"model file not found: {tmp_path}/absent.py"
    assert exc.value.hint == "check the path before the ':'"


def test_missing_factory_lists_closest_names(net_py: Path) -> None:
    with pytest.raises(ModelError) as exc:
        build_model(parse_model_spec(f"{net_py}:make_nett"))
    assert str(exc.value) == f"{net_py} has no 'make_nett'; closest: make_net, make_strict, make_number"


def test_missing_factory_with_nothing_close(net_py: Path) -> None:
    with pytest.raises(ModelError) as exc:
        build_model(parse_model_spec(f"{net_py}:zzz"))
    assert str(exc.value) == f"{net_py} has no 'zzz'"


def test_model_file_that_fails_to_import(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.py", "raise RuntimeError('needs a GPU')\n")
    with pytest.raises(ModelError) as exc:
        build_model(parse_model_spec(f"{path}:make"))
    assert str(exc.value) == f"importing {path} failed: RuntimeError: needs a GPU"


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
    assert exc.value.hint == "check --model-arg"


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
    with pytest.raises(ModelError, match=rf"cannot resolve model factory {text!r}: .*{fragment}"):
        build_model(parse_model_spec(text))


def test_module_that_fails_to_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "interpscan_test_broken_nets.py", "raise ImportError('no CUDA')\nx = 1 / 0\n")
    write(tmp_path / "interpscan_test_crashing_nets.py", "x = 1 / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModelError, match=r"cannot resolve model factory .*no CUDA"):
        build_model(parse_model_spec("interpscan_test_broken_nets:make"))
    with pytest.raises(ModelError) as exc:
        build_model(parse_model_spec("interpscan_test_crashing_nets:make"))
    assert str(exc.value) == "importing interpscan_test_crashing_nets failed: ZeroDivisionError: division by zero"


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
    assert exc.value.hint == "check --model and --model-arg (e.g. width, num_classes, in_channels)"


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
