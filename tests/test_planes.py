"""Planes of networks (interpscan.plane, interpscan.trajectory) against independent computations: a float64 loop
on real data, Gram–Schmidt, per-slice norms, numpy's PCA; and the engine's strategies on points that combine
three states."""

from __future__ import annotations

import copy
import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TinyConvBN, make_state, run_engine
from floats import tol32
from safetensors.torch import load_file
from torch import nn

from interpscan import ScanResult, plane, trajectory
from interpscan.data import Split
from interpscan.engine import Point
from interpscan.errors import UsageError

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def _idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(raw[3])]
    return np.frombuffer(raw[4 + 4 * raw[3] :], dtype=np.uint8).reshape(dims)


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 5, stride=3)
        self.norm = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.norm(self.conv(x))).flatten(1))


def _float64_loss(model: nn.Module, state: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> float:
    """The plain loop: load_state_dict, eval, cross-entropy, all in float64."""
    m = copy.deepcopy(model).double().eval()
    m.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in state.items()})
    with torch.no_grad():
        return float(F.cross_entropy(m(x.double()), y))


def _flat(state: dict[str, torch.Tensor], names: list[str]) -> np.ndarray:
    return np.concatenate([state[n].double().numpy().ravel() for n in names])


@pytest.mark.realdata
@pytest.mark.skipif(
    not FMNIST.is_dir() and not os.environ.get("INTERPSCAN_REQUIRE_REALDATA"),
    reason="needs the Debian package dataset-fashion-mnist",
)
def test_plane_through_three_networks_equals_a_float64_loop(tmp_path: Path) -> None:
    images = torch.from_numpy(_idx(FMNIST / "t10k-images-idx3-ubyte.gz")[:800].copy()).float().div(255)
    labels = torch.from_numpy(_idx(FMNIST / "t10k-labels-idx1-ubyte.gz")[:800].astype(np.int64))
    x = ((images - 0.2860) / 0.3530).unsqueeze(1)
    x_train, y_train, x_test, y_test = x[:600], labels[:600], x[600:], labels[600:]
    states = []
    for seed in (0, 1, 2):  # three short real trainings from different seeds
        torch.manual_seed(seed)
        net = SmallNet()
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        net.train()
        for i in range(0, 600, 50):
            opt.zero_grad()
            F.cross_entropy(net(x_train[i : i + 50]), y_train[i : i + 50]).backward()
            opt.step()
        states.append({k: v.detach().clone() for k, v in net.state_dict().items()})
    model = SmallNet().eval()
    result = plane(
        model, states, {"test": (x_test, y_test)}, grid=3, bn="interpolate", device="cpu", out=tmp_path / "run"
    )
    params = [n for n, _ in model.named_parameters()]
    # the anchors' coordinates: Gram–Schmidt in numpy
    c0, c1, c2 = (_flat(s, params) for s in states)
    d1, d2 = c1 - c0, c2 - c0
    n1 = np.linalg.norm(d1)
    p = d2 @ d1 / n1
    q = np.linalg.norm(d2 - p * d1 / n1)
    anchors = result.manifest.plane.anchors
    got = [v for a in anchors for v in (a.x, a.y)]
    assert got == pytest.approx([0, 0, n1, 0, p, q], rel=1e-9, abs=1e-12)
    # every point against the float64 loop: θ = C0 + a1·(C1 − C0) + a2·(C2 − C0), buffers alike
    rows = result.results
    checked_off_anchor = 0
    for r in rows.itertuples(index=False):
        if r.bn_clamped:
            continue
        a2 = r.y / q
        a1 = (r.x - a2 * p) / n1
        theta = {
            k: (s0.double() + a1 * (s1.double() - s0.double()) + a2 * (s2.double() - s0.double()))
            if s0.is_floating_point()
            else s0
            for k, s0, s1, s2 in ((k, states[0][k], states[1][k], states[2][k]) for k in states[0])
        }
        assert r.loss == pytest.approx(_float64_loss(model, theta, x_test, y_test), rel=1e-5)
        checked_off_anchor += pd_isna(r.anchor)
    assert checked_off_anchor >= 4
    on_anchor = rows[rows["anchor"].notna()].sort_values("anchor")
    assert list(on_anchor["anchor"]) == [0, 1, 2]
    for (_, r), s in zip(on_anchor.iterrows(), states, strict=True):
        assert r["loss"] == pytest.approx(_float64_loss(model, s, x_test, y_test), rel=1e-5)
    # read back: the same tables and basis, and the directions that rebuild a point
    again = ScanResult.load(tmp_path / "run")
    assert again.manifest.plane == result.manifest.plane
    assert np.allclose(again.results["loss"], rows["loss"], rtol=1e-9)
    saved = load_file(tmp_path / "run" / "directions.safetensors")
    r = rows.iloc[int(np.argmax(rows["anchor"].isna().to_numpy()))]
    rebuilt = {
        k: (t.double() + r["x"] * saved[f"u.{k}"].double() + r["y"] * saved[f"v.{k}"].double())
        if t.is_floating_point()
        else t
        for k, t in states[0].items()
    }
    assert r["loss"] == pytest.approx(_float64_loss(model, rebuilt, x_test, y_test), rel=1e-5)


def pd_isna(value: object) -> int:
    import pandas as pd

    return int(bool(pd.isna(value)))


def test_filter_directions_have_the_weights_slice_norms_and_rebuild_the_reported_loss(tmp_path: Path) -> None:
    model = TinyConvBN().eval()
    state = make_state(model, 1)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 3, 4, 4, generator=gen), torch.randint(0, 5, (40,), generator=gen)
    result = plane(model, [state], {"test": (x, y)}, grid=3, seed=5, bn="interpolate", out=tmp_path / "run")
    saved = load_file(tmp_path / "run" / "directions.safetensors")
    params = dict(model.named_parameters())
    for name, w in state.items():
        for axis in ("u", "v"):
            d = saved[f"{axis}.{name}"] if w.is_floating_point() else None
            if d is None:
                continue
            if name not in params or w.dim() <= 1:
                assert not d.any(), f"{axis}.{name}: buffers and tensors of one dimension stay"
                continue
            norms = d.double().reshape(d.shape[0], -1).norm(dim=1)
            want = w.double().reshape(w.shape[0], -1).norm(dim=1)
            torch.testing.assert_close(norms, want, rtol=1e-6, atol=0)
    plane_json = result.manifest.plane
    assert (plane_json.kind, plane_json.normalization, plane_json.seed) == ("directions", "filter", 5)
    # the loss at a corner, rebuilt from the file in float32 as the engine computes it
    corner = result.results.iloc[0]
    m = copy.deepcopy(model)
    m.load_state_dict(
        {
            k: (t + float(corner["x"]) * saved[f"u.{k}"] + float(corner["y"]) * saved[f"v.{k}"])
            if t.is_floating_point()
            else t
            for k, t in state.items()
        }
    )
    with torch.no_grad():
        assert float(F.cross_entropy(m.eval()(x), y)) == pytest.approx(corner["loss"], rel=1e-5)
    # one direction: a random line, y = 0, no v
    line = plane(model, [state], {"test": (x, y)}, grid=3, dims=1, bn="interpolate")
    assert list(line.results["x"]) == [-1.0, 0.0, 1.0]
    assert (line.results["y"] == 0).all()
    assert line.directions is not None
    assert not any(k.startswith("v.") for k in line.directions)
    # the same seed draws the same directions; another seed others
    again = plane(model, [state], {"test": (x, y)}, grid=3, seed=5, bn="interpolate")
    other = plane(model, [state], {"test": (x, y)}, grid=3, seed=6, bn="interpolate")
    assert torch.equal(again.directions["u.conv.weight"], saved["u.conv.weight"])  # type: ignore[index]
    assert not torch.equal(other.directions["u.conv.weight"], saved["u.conv.weight"])  # type: ignore[index]


def test_trajectory_directions_equal_numpy_pca() -> None:
    model = TinyConvBN().eval()
    states = [make_state(model, s) for s in range(1, 7)]
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 3, 4, 4, generator=gen), torch.randint(0, 5, (30,), generator=gen)
    result = trajectory(model, states, {"test": (x, y)}, grid=3, bn="interpolate")
    params = [n for n, _ in model.named_parameters()]
    flat = [_flat(s, params) for s in states]
    diffs = np.stack([f - flat[-1] for f in flat[:-1]])
    _, s, vt = np.linalg.svd(diffs - diffs.mean(0), full_matrices=False)
    directions = result.directions
    assert directions is not None
    plane_json = result.manifest.plane
    for k, axis in enumerate("uv"):
        mine = np.concatenate([directions[f"{axis}.{n}"].double().numpy().ravel() for n in params])
        assert abs(mine @ vt[k]) == pytest.approx(1.0, abs=1e-6)  # the same direction up to sign
        sign = np.sign(mine @ vt[k])
        got = [a.x if axis == "u" else a.y for a in plane_json.anchors]
        assert got == pytest.approx([sign * (f - flat[-1]) @ vt[k] for f in flat], rel=1e-6, abs=1e-6)
    ratio = (s**2 / (s**2).sum())[:2]
    assert plane_json.explained_variance_ratio == pytest.approx(ratio, rel=1e-9)
    assert [a.on_plane for a in plane_json.anchors] == [False] * 5 + [True]
    with pytest.raises(UsageError, match="four or more checkpoints"):
        trajectory(model, states[:3], {"test": (x, y)})


@pytest.mark.parametrize("policy", ["interpolate", "recompute"])
def test_strategies_agree_on_points_that_combine_three_states(policy: str, image_data) -> None:  # type: ignore[no-untyped-def]
    x, y, calib = image_data
    model = TinyConvBN().eval()
    a, b, c = (make_state(model, s) for s in (1, 2, 3))
    mixes = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.2, 0.5, 0.3), (-0.4, 0.9, 0.5)]
    points = [Point("plane", 0.0, mix=m) for m in mixes]
    runs = {
        (strategy, layout): run_engine(
            model,
            a,
            b,
            points,
            [Split("test", x, y, None)],
            basis=[c],
            policy=policy,
            strategy=strategy,
            calibration=calib,
            batch_size=32,
            chunk_size=2,
            memory_format=layout,
        )[0]
        for strategy, layout in (
            ("sequential", "contiguous"),
            ("batched", "contiguous"),
            ("sequential", "channels-last"),
        )
    }
    seq = [r.loss for r in runs["sequential", "contiguous"]]
    for other in (("batched", "contiguous"), ("sequential", "channels-last")):
        torch.testing.assert_close(
            torch.tensor([r.loss for r in runs[other]]), torch.tensor(seq), **tol32(scale=max(seq))
        )
    # a mix of one state is that state: the line's endpoints agree with it
    line = run_engine(
        model, a, c, [Point("all", 1.0)], [Split("test", x, y, None)], policy=policy, calibration=calib, batch_size=32
    )
    assert runs["sequential", "contiguous"][2].loss == pytest.approx(line[0][0].loss, rel=1e-6)
    with pytest.raises(UsageError, match="shares work between layer groups"):
        run_engine(model, a, b, points, [Split("test", x, y, None)], basis=[c], strategy="prefix")


def test_an_interrupted_plane_resumes_to_the_uninterrupted_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image_data
) -> None:  # type: ignore[no-untyped-def]
    import interpscan.engine.core as core
    from interpscan.errors import Interrupted

    x, y, calib = image_data
    model = TinyConvBN().eval()
    states = [make_state(model, s) for s in (1, 2, 3)]
    calibration = (calib, torch.zeros(len(calib), dtype=torch.long))
    kw = {"grid": 3, "bn": "recompute", "calibration": calibration, "batch_size": 10, "device": "cpu"}
    whole = plane(model, states, {"test": (x, y)}, out=tmp_path / "whole", **kw)
    monkeypatch.setenv("INTERPSCAN_SAVE_EVERY", "0")
    accumulate, calls = core._accumulate, [0]

    def stop_midway(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] == 25:  # the third batch of 10 points
            raise KeyboardInterrupt
        return accumulate(*args, **kwargs)

    monkeypatch.setattr(core, "_accumulate", stop_midway)
    with pytest.raises(Interrupted):
        plane(model, states, {"test": (x, y)}, out=tmp_path / "cut", **kw)
    monkeypatch.setattr(core, "_accumulate", accumulate)
    again = plane(model, states, {"test": (x, y)}, out=tmp_path / "cut", resume=True, **kw)
    for name in ("results.csv", "summary.csv", "directions.safetensors"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    assert again.manifest.plane == whole.manifest.plane


def test_the_plane_command_writes_a_run_that_loads_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import run_cli

    from interpscan.models import build_model, parse_model_spec

    spec = parse_model_spec("cnn", {"width": 4})
    paths = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        paths.append(tmp_path / f"c{seed}.pt")
        torch.save(build_model(spec).state_dict(), paths[-1])
    out = tmp_path / "out"
    args = ["--model", "cnn", "-a", "width=4", "--data", "fashion-mnist-small", "--samples", "40", "--grid", "3"]
    code, err = run_cli(monkeypatch, capsys, "plane", *map(str, paths), *args, "--bn", "interpolate", "-o", str(out))
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "directions.safetensors",
        "results.csv",
        "results.html",
        "run.json",
        "summary.csv",
    ]
    run = ScanResult.load(out)
    assert run.is_plane
    assert list(run.results.columns[:8]) == ["x", "y", "split", "loss", "loss_se", "accuracy", "n", "anchor"]
    assert sorted(run.results["anchor"].dropna().unique().tolist()) == [0, 1, 2]
    assert run.manifest.plane is not None
    assert run.manifest.plane.kind == "checkpoints"
    assert set(run.summary["point"]) == {"c0", "c1", "c2", "minimum"}
    assert run.directions is not None
    assert any(k.startswith("v.") for k in run.directions)
    page = tmp_path / "page.html"
    code, err = run_cli(monkeypatch, capsys, "plot", str(out), "--out", str(page))  # the plane's own page
    assert code == 0, err
    assert 'class="plotly-graph-div"' in page.read_text()
    code, err = run_cli(monkeypatch, capsys, "compare", str(out), str(out))  # paths only: refused, said why
    assert code == 2, err
    assert "a plane run (interpscan plane or trajectory), not a path's" in err
    assert "Traceback" not in err


def test_negative_interpolated_variances_are_clamped_flagged_and_warned_about(image_data) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = image_data
    model = TinyConvBN().eval()
    states = [make_state(model, s) for s in (1, 2, 3)]
    states[0]["bn.running_var"].fill_(3.0)  # far from the others: outside the triangle, away from C0, it goes < 0
    result = plane(model, states, {"test": (x, y)}, grid=3, margin=1.0, bn="interpolate", device="cpu")
    rows = result.results
    assert rows["bn_clamped"].any()
    assert not rows.loc[rows["anchor"].notna(), "bn_clamped"].any()
    assert result.manifest.plane.bn_clamped_points == int(rows["bn_clamped"].sum())
    assert any("clamped at 0" in w for w in result.manifest.warnings)
    # a clamped point is the network whose negative variances are 0, as the plain loop builds it
    r = rows[rows["bn_clamped"]].iloc[0]
    n1, p, q = (
        result.manifest.plane.anchors[1].x,
        result.manifest.plane.anchors[2].x,
        result.manifest.plane.anchors[2].y,
    )
    a2 = r["y"] / q
    a1 = (r["x"] - a2 * p) / n1
    theta = {
        k: (v.double() + a1 * (states[1][k].double() - v.double()) + a2 * (states[2][k].double() - v.double()))
        if v.is_floating_point()
        else v
        for k, v in states[0].items()
    }
    for k in theta:
        if k.endswith("running_var"):
            theta[k] = theta[k].clamp(min=0)
    assert r["loss"] == pytest.approx(_float64_loss(model, theta, x, y), rel=1e-5)
