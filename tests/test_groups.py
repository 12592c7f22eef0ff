"""Group patterns resolve as documented; the layer-wise breakdown equals a hand-built loop; `layers` shows it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import TinyConvBN, make_state, reference_curve, run_cli, run_cli_output, run_engine
from torch import nn

from interpscan.data import Split
from interpscan.engine import Point
from interpscan.errors import UsageError
from interpscan.groups import ModuleTree, natural_key, parameter_names, resolve_groups
from interpscan.models import build_model, parse_model_spec, resnet18
from interpscan.options import Hold
from interpscan.tables import group_curves, results_frame


class Deep(nn.Module):
    """Top-level conv1, conv2, a stage list with 11 blocks (natural order matters), a bare parameter, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 1)
        self.conv2 = nn.Conv2d(2, 2, 1)
        self.act = nn.ReLU()  # holds no tensors: never a group
        self.blocks = nn.ModuleList([nn.Linear(2, 2) for _ in range(11)])
        self.scale = nn.Parameter(torch.ones(1))
        self.norm = nn.BatchNorm1d(2)
        self.head = nn.Linear(2, 3)


@pytest.fixture
def tree() -> ModuleTree:
    return ModuleTree.from_model(Deep())


def _names(values: list[str], tree: ModuleTree) -> list[tuple[str, int]]:
    return [(g.name, len(g.tensors)) for g in resolve_groups(values, tree).groups]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["conv*"], [("conv1", 2), ("conv2", 2)]),
        (["head"], [("head", 2)]),
        (["blocks"], [("blocks", 22)]),
        # the shortest matching prefix wins; members in natural order (blocks.10 after blocks.9)
        (["blocks.*"], [(f"blocks.{i}", 2) for i in range(11)]),
        (["conv*,head"], [("conv1", 2), ("conv2", 2), ("head", 2)]),
        (["head", "conv*"], [("head", 2), ("conv1", 2), ("conv2", 2)]),  # the user's order
        (["scale"], [("scale", 1)]),  # a tensor matched directly is its own group
        (
            ["*.weight"],
            [
                (n, 1)
                for n in [
                    "blocks.0.weight",
                    "blocks.1.weight",
                    "blocks.2.weight",
                    "blocks.3.weight",
                    "blocks.4.weight",
                    "blocks.5.weight",
                    "blocks.6.weight",
                    "blocks.7.weight",
                    "blocks.8.weight",
                    "blocks.9.weight",
                    "blocks.10.weight",
                    "conv1.weight",
                    "conv2.weight",
                    "head.weight",
                    "norm.weight",
                ]
            ],
        ),
        (["early=conv*,blocks.0"], [("early", 6)]),
        (["body=blocks,!blocks.10,!blocks.9"], [("body", 18)]),
        (["@top"], [("scale", 1), ("conv1", 2), ("conv2", 2), ("blocks", 22), ("norm", 5), ("head", 2)]),
        (["@depth:1"], [("scale", 1), ("conv1", 2), ("conv2", 2), ("blocks", 22), ("norm", 5), ("head", 2)]),
        (
            ["@depth:2"],
            [
                ("scale", 1),
                ("conv1", 2),
                ("conv2", 2),
                *[(f"blocks.{i}", 2) for i in range(11)],
                ("norm", 5),
                ("head", 2),
            ],
        ),
        (["norm"], [("norm", 5)]),  # buffers (running stats, num_batches_tracked) follow their module
    ],
)
def test_pattern_resolution(values: list[str], expected: list[tuple[str, int]], tree: ModuleTree) -> None:
    assert _names(values, tree) == expected


def test_leaves_are_modules_that_own_tensors(tree: ModuleTree) -> None:
    names = [g.name for g in resolve_groups(["@leaves"], tree).groups]
    assert names == ["scale", "conv1", "conv2", *[f"blocks.{i}" for i in range(11)], "norm", "head"]


def test_rest_holds_what_no_group_took(tree: ModuleTree) -> None:
    grouping = resolve_groups(["conv*"], tree)
    assert "head.weight" in grouping.rest
    assert "conv1.weight" not in grouping.rest
    assert len(grouping.rest) == len(tree.tensors) - 4


def test_resnet18_stages() -> None:
    tree = ModuleTree.from_model(resnet18(width=4))
    assert _names(["layer*", "fc"], tree) == [("layer1", 24), ("layer2", 30), ("layer3", 30), ("layer4", 30), ("fc", 2)]


def test_bare_state_dict_uses_dotted_prefixes() -> None:
    tree = ModuleTree.from_names(resnet18(width=4).state_dict())
    assert [g.name for g in resolve_groups(["layer*"], tree).groups] == ["layer1", "layer2", "layer3", "layer4"]
    assert [g.name for g in resolve_groups(["@top"], tree).groups][:3] == ["conv1", "bn1", "layer1"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["layer*"], "pattern 'layer*' matched no module or tensor; closest:"),
        (["convv1"], "closest: conv1"),
        (["blocks", "blocks.3"], "groups overlap: 2 in both blocks and blocks.3 (blocks.3.weight, blocks.3.bias)"),
        (["a=conv1", "a=conv2"], "group 'a' is defined twice"),
        (["all=conv1"], "cannot be called 'all'"),
        (["x=conv1,!conv1"], "group 'x' is empty"),
        (["x=conv1,!nothing*"], "pattern 'nothing*' matched no module or tensor"),
        (["@bottom"], "unknown preset '@bottom'"),
        (["@depth:0"], "N must be a positive integer"),
    ],
)
def test_resolution_errors(values: list[str], message: str, tree: ModuleTree) -> None:
    with pytest.raises(UsageError) as info:
        resolve_groups(values, tree)
    assert message in str(info.value)


def test_natural_key_orders_numbers_numerically() -> None:
    assert sorted(["layer10", "layer9", "layer1"], key=natural_key) == ["layer1", "layer9", "layer10"]


def test_parameter_names_without_a_model_skip_bn_statistics() -> None:
    m = TinyConvBN()
    assert parameter_names(m.state_dict()) == [n for n, _ in m.named_parameters()]


@pytest.mark.parametrize("strategy", ["sequential", "batched", "prefix", "prefix-batched"])
@pytest.mark.parametrize("policy", ["interpolate", "recompute", "batch"])
@pytest.mark.parametrize(("hold", "mode"), [("final", "only"), ("init", "only"), ("final", "all-but")])
def test_breakdown_equals_hand_built_loop(hold: str, mode: str, policy: str, strategy: str, image_data) -> None:  # type: ignore[no-untyped-def]
    """Every (group, α) point equals a state dict built by hand: group tensors at α, the rest held."""
    x, y, calib = image_data
    model = TinyConvBN().eval()
    start, end = make_state(model, 1), make_state(model, 2)
    names = list(start)
    grouping = resolve_groups(["conv*,bn", "head=fc*,bn1d"], ModuleTree.from_model(model))
    curves = group_curves(grouping, names, [n for n, _ in model.named_parameters()], hold, mode)
    alphas = [0.0, 0.4, 1.0]
    points = [Point(c.name, a, c.moving, Hold(hold).coefficient) for c in curves.values() for a in alphas]
    results, _ = run_engine(
        model,
        start,
        end,
        points,
        [Split("test", x, y, None)],
        policy=policy,
        calibration=calib,
        calibration_batch_size=16,
        batch_size=32,
        strategy=strategy,
    )
    frame = results_frame(results, ["test"], curves)
    assert frame["curve"].tolist() == ["conv"] * 3 + ["bn"] * 3 + ["head"] * 3
    assert set(frame["hold"]) == {hold}
    assert set(frame["mode"]) == {mode}
    for r in results:
        group = set(next(g.tensors for g in grouping.groups if g.name == r.point.curve))
        moves = group if mode == "only" else set(names) - group
        coef = {k: (r.point.alpha if k in moves else Hold(hold).coefficient) for k in names}
        ((loss, _, acc),) = reference_curve(model, start, end, [coef], x, y, policy=policy, calibration=calib)
        assert r.loss == pytest.approx(loss, rel=1e-5)
        assert r.accuracy == pytest.approx(acc)


def test_group_curves_reach_the_trained_network(image_data) -> None:  # type: ignore[no-untyped-def]
    """With hold=final, every group curve at α=1 is the trained network, evaluated once."""
    x, y, _ = image_data
    model = TinyConvBN().eval()
    start, end = make_state(model, 1), make_state(model, 2)
    grouping = resolve_groups(["@top"], ModuleTree.from_model(model))
    curves = group_curves(grouping, list(start), [n for n, _ in model.named_parameters()], "final", "only")
    points = [Point("all", 1.0)] + [Point(c.name, 1.0, c.moving, 1.0) for c in curves.values()]
    results, report = run_engine(model, start, end, points, [Split("test", x, y, None)])
    assert report.unique_points == 1
    assert len({r.loss for r in results}) == 1


@pytest.fixture
def resnet_ckpts(tmp_path: Path) -> tuple[Path, Path]:
    spec = parse_model_spec("resnet18", {"width": 2, "in_channels": 1})
    torch.manual_seed(0)
    a, b = build_model(spec), build_model(spec)
    torch.save(a.state_dict(), tmp_path / "init.pt")
    torch.save(b.state_dict(), tmp_path / "final.pt")
    return tmp_path / "init.pt", tmp_path / "final.pt"


def test_run_resnet18_layer_breakdown(monkeypatch, capsys, resnet_ckpts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "o"
    code, err = run_cli(
        monkeypatch,
        capsys,
        "run",
        "--data",
        "fashion-mnist-small",
        str(resnet_ckpts[0]),
        str(resnet_ckpts[1]),
        "--model",
        "resnet18",
        "--groups",
        "layer*",
        "--groups",
        "fc",
        "--samples",
        "40",
        "--alphas",
        "3",
        "--bn",
        "interpolate",
        "-o",
        str(out),
    )
    assert code == 0, err
    results = pd.read_csv(out / "results.csv")
    assert list(dict.fromkeys(results["curve"])) == ["all", "layer1", "layer2", "layer3", "layer4", "fc"]
    assert len(results) == 6 * 3
    groups = results[results["curve"] != "all"]
    assert set(groups["hold"]) == {"final"}
    assert set(groups["mode"]) == {"only"}
    # at α=1 every curve is the trained network
    assert results[results["alpha"] == 1.0]["loss"].nunique() == 1
    summary = pd.read_csv(out / "summary.csv")
    assert summary["curve"].tolist() == ["all", "layer1", "layer2", "layer3", "layer4", "fc"]
    manifest = json.loads((out / "run.json").read_text())
    assert [g["name"] for g in manifest["groups"]["groups"]] == ["layer1", "layer2", "layer3", "layer4", "fc"]
    assert manifest["groups"]["rest"] == [
        "conv1.weight",
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "bn1.running_var",
        "bn1.num_batches_tracked",
    ]
    assert manifest["engine"]["unique_points"] == 6 * 3 - 5  # α=1 coincides for all six curves
    assert manifest["strategy"] == "prefix"  # auto on CPU with groups
    assert manifest["strategy_note"] is None
    assert "rank L(0)" in err


def test_layers_command_formats(monkeypatch, capsys, resnet_ckpts) -> None:  # type: ignore[no-untyped-def]
    init, final = resnet_ckpts
    code, out, err = run_cli_output(
        monkeypatch, capsys, "layers", str(init), str(final), "--model", "resnet18", "-g", "layer*", "-f", "json"
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["model"] == "resnet18"
    rows = {r["group"]: r for r in data["groups"]}
    assert list(rows) == ["layer1", "layer2", "layer3", "layer4", "rest"]
    model = resnet18(width=2, in_channels=1)
    total = sum(p.numel() for p in model.parameters())
    assert rows["layer1"]["parameters"] == sum(p.numel() for p in model.layer1.parameters())
    assert sum(r["share"] for r in rows.values()) == pytest.approx(1.0)
    a, b = torch.load(init), torch.load(final)
    names = [n for n, _ in model.layer4.named_parameters()]
    diff = torch.cat([(b[f"layer4.{n}"] - a[f"layer4.{n}"]).flatten() for n in names])
    assert rows["layer4"]["distance"] == pytest.approx(float(diff.norm()), rel=1e-5)
    assert rows["rest"]["parameters"] == total - sum(r["parameters"] for g, r in rows.items() if g != "rest")

    code, out, err = run_cli_output(monkeypatch, capsys, "layers", str(init), "-g", "layer*", "-f", "csv")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "group,tensors,parameters,share"  # no FINAL: no distances
    assert [line.split(",")[0] for line in lines[1:]] == ["layer1", "layer2", "layer3", "layer4", "rest"]

    code, out, err = run_cli_output(monkeypatch, capsys, "layers", str(init), "-g", "layer9*")
    assert code == 2
    assert "pattern 'layer9*' matched no module or tensor; closest:" in err


def test_layers_resolves_its_inputs_as_run_does(monkeypatch, capsys, resnet_ckpts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """No --model: the zoo model detected from the shapes (as `run` finds it), so patterns see its modules;
    --key reaches weights nested in the file, as for `run`."""
    init, final = resnet_ckpts
    code, out, err = run_cli_output(monkeypatch, capsys, "layers", str(init), str(final), "-g", "@top", "-f", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["model"] == "resnet18"  # detected, not the tensor names
    assert [r["group"] for r in data["groups"]] == ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"]
    nested = tmp_path / "ema.pt"
    torch.save({"state_dict": {}, "model_ema": torch.load(final)}, nested)
    code, out, err = run_cli_output(
        monkeypatch, capsys, "layers", str(nested), "--key", "model_ema", "-g", "layer*", "-f", "csv"
    )
    assert code == 0, err
    assert [line.split(",")[0] for line in out.splitlines()[1:]] == ["layer1", "layer2", "layer3", "layer4", "rest"]
    plain = tmp_path / "plain.pt"
    torch.save({"a.weight": torch.zeros(2, 2), "b.weight": torch.zeros(3)}, plain)  # no zoo model has these
    code, out, err = run_cli_output(monkeypatch, capsys, "layers", str(plain), "-g", "@top", "-f", "json")
    assert code == 0, err
    assert json.loads(out)["model"] is None  # the tensor names alone
