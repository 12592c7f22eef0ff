"""The bootstrap over examples (interpscan.uncertainty): the vectorized metrics equal the scalar ones, the
intervals equal a plain loop's over the same resamples, and they say what they should on curves whose truth is
known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from interpscan import scan
from interpscan.api import ScanConfig, run_scan
from interpscan.engine import Point, PointResult
from interpscan.metrics import curve_metrics, summarize_curve
from interpscan.schema import CI_METRICS
from interpscan.uncertainty import bootstrap_intervals, resamples


def test_curve_metrics_equal_summarize_curve_row_by_row() -> None:
    rng = np.random.default_rng(0)
    alphas = [0.5, -0.25, 0.0, 0.25, 1.0, 0.75, 1.5]  # unsorted, with extrapolated points (not scored)
    rows = [rng.normal(size=7) for _ in range(50)]
    rows += [np.array([1.0, 9.0, 1.0, 1.0, 1.0, 1.0, 9.0])]  # flat on [0, 1]: ties everywhere
    rows += [np.array([0.0, 0.0, 2.0, 2.0, 0.0, 2.0, 0.0])]  # plateau, then a cliff
    rows += [np.array([0.0, 0.0, 2.0, math.nan, 0.0, 2.0, 0.0])]  # a NaN in [0, 1]
    loss = np.stack(rows)
    error = np.clip(np.abs(loss) / 4, 0, 1)
    got = curve_metrics(alphas, loss, error)
    for r in range(len(loss)):
        want = summarize_curve(alphas, loss[r].tolist(), (1 - error[r]).tolist()).to_dict()
        for name, values in got.items():
            if math.isnan(want[name]):
                assert math.isnan(values[r]), (r, name)
            else:
                assert values[r] == pytest.approx(want[name], abs=1e-12), (r, name)


def _results(losses: torch.Tensor, alphas: list[float], curve: str = "all", split: str = "test") -> list[PointResult]:
    """PointResults of one curve from its per-example losses (P, N); hits: loss below 1."""
    return [
        PointResult(Point(curve, a), split, float(row.mean()), math.nan, float((row < 1).double().mean()), len(row),
                    row.float(), row < 1)
        for a, row in zip(alphas, losses, strict=True)
    ]  # fmt: skip


def test_intervals_equal_a_plain_loop_over_the_same_resamples() -> None:
    gen = torch.Generator().manual_seed(1)
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    losses = torch.rand(5, 40, generator=gen) * 2 + torch.tensor([2.0, 1.0, 1.2, 0.6, 0.5])[:, None]
    got = bootstrap_intervals(_results(losses, alphas), replicates=300, seed=7)[("all", "test", 1)]
    draws: dict[str, list[float]] = {m: [] for m in CI_METRICS}
    for weights in resamples(40, 300, 7):  # split 0 of the scan resamples with seed + 0
        for w in weights:
            picks = torch.repeat_interleave(torch.arange(40), w.long())  # the resample, as example indices
            curve = losses[:, picks].double().mean(1)
            acc = (losses[:, picks] < 1).double().mean(1)
            m = summarize_curve(alphas, curve.tolist(), acc.tolist()).to_dict()
            for name in CI_METRICS:
                draws[name].append(m[name])
    for name in CI_METRICS:
        low, high = np.percentile(draws[name], [2.5, 97.5])
        assert got[f"{name}_ci_low"] == pytest.approx(low, abs=1e-9), name
        assert got[f"{name}_ci_high"] == pytest.approx(high, abs=1e-9), name
    assert got["rise_significant"] is (got["delta_ci_low"] > 0)


def test_a_real_bump_is_significant_and_noise_is_not() -> None:
    """Examples share their noise across α (as a network's hard examples do): a rise of 0.1 on a noise of 1 per
    example is certain, while a curve that truly falls is never called rising, however noisy each example."""
    gen = torch.Generator().manual_seed(0)
    alphas = [i / 10 for i in range(11)]
    hardness = torch.randn(1, 2000, generator=gen)
    falling = torch.linspace(2.0, 0.5, 11)[:, None] + hardness + 0.01 * torch.randn(11, 2000, generator=gen)
    bump = falling + 0.4 * torch.exp(-((torch.tensor(alphas) - 0.5) ** 2) / 0.01)[:, None]
    res = bootstrap_intervals(_results(falling, alphas, "falling") + _results(bump, alphas, "bump"), replicates=200,
                              seed=0)  # fmt: skip
    true_delta = summarize_curve(alphas, bump.double().mean(1).tolist()).delta  # ≈ 0.10
    assert res[("bump", "test", 1)]["rise_significant"] is True
    assert 0.05 < res[("bump", "test", 1)]["delta_ci_low"] <= true_delta <= res[("bump", "test", 1)]["delta_ci_high"]
    assert res[("falling", "test", 1)]["rise_significant"] is False
    assert res[("falling", "test", 1)]["delta_ci_high"] == 0.0
    falling = res[("falling", "test", 1)]
    assert falling["plateau_alpha_ci_low"] <= 0.9 <= falling["plateau_alpha_ci_high"]


def test_seeded_and_nan_safe() -> None:
    alphas = [0.0, 0.5, 1.0]
    losses = torch.rand(3, 30, generator=torch.Generator().manual_seed(2))
    a = bootstrap_intervals(_results(losses, alphas), replicates=100, seed=3)
    b = bootstrap_intervals(_results(losses, alphas), replicates=100, seed=3)
    c = bootstrap_intervals(_results(losses, alphas), replicates=100, seed=4)
    assert a == b
    assert a != c
    losses[1, 4] = math.nan
    nan = bootstrap_intervals(_results(losses, alphas), replicates=100, seed=3)[("all", "test", 1)]
    assert all(math.isnan(nan[f"{m}_ci_low"]) for m in ("delta", "barrier_linear", "barrier_max", "plateau_alpha"))
    assert nan["rise_significant"] is None


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def test_a_scan_reports_intervals_in_its_summary() -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 6, generator=gen), torch.randint(0, 3, (50,), generator=gen)
    y[7] = -100  # left out of the per-example losses as of the means
    model, init, final = _mlp(0), _mlp(0).state_dict(), _mlp(1).state_dict()
    result = scan(model, init, final, (x, y), alphas=5, groups="0", bootstrap=200, batch_size=16)
    summary = result.summary
    for name in CI_METRICS:
        low, high = summary[f"{name}_ci_low"], summary[f"{name}_ci_high"]
        assert (low <= high).all(), name
        assert ((low <= summary[name] + 1e-12) & (summary[name] <= high + 1e-12)).all(), name
    assert summary["rise_significant"].tolist() == (summary["delta_ci_low"] > 0).tolist()
    assert result.manifest["bootstrap"] == {"replicates": 200, "seed": 0, "level": 0.95, "unit": "example"}
    off = scan(model, init, final, (x, y), alphas=5, groups="0", bootstrap=0, batch_size=16)
    assert off.summary["delta_ci_low"].isna().all()
    assert off.summary["rise_significant"].isna().all()
    assert off.manifest["bootstrap"] is None
    cols = ["delta", "barrier_linear", "barrier_max", "plateau_alpha"]
    assert off.summary[cols].to_numpy() == pytest.approx(summary[cols].to_numpy())


def test_a_resumed_scan_has_the_intervals_of_an_uninterrupted_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    gen = torch.Generator().manual_seed(0)
    torch.save({"inputs": torch.randn(40, 6, generator=gen), "targets": torch.randint(0, 3, (40,), generator=gen)},
               tmp_path / "data.pt")  # fmt: skip
    torch.save(_mlp(0).state_dict(), tmp_path / "init.pt")
    torch.save(_mlp(1).state_dict(), tmp_path / "final.pt")
    (tmp_path / "net.py").write_text(
        "from torch import nn\n\ndef make():\n    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))\n"
    )
    config = ScanConfig.from_values(
        [tmp_path / "init.pt", tmp_path / "final.pt"],
        {
            "data": str(tmp_path / "data.pt"),
            "model": f"{tmp_path / 'net.py'}:make",
            "alphas": 4,
            "batch_size": 16,
            "bootstrap": 150,
        },
    )
    snapshots = []
    whole = run_scan(config, on_batch=snapshots.append)
    from interpscan.engine import ScanSnapshot

    # through the state a partial file holds, as `--resume` reads it back
    resumed = run_scan(config, resume=ScanSnapshot.from_state(snapshots[1].to_state()))
    assert resumed.summary.equals(whole.summary)


def test_per_example_losses_are_saved_for_the_users_own_statistics(monkeypatch, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--save-per-example writes per_example.npz beside the tables: its means are results.csv's losses and
    accuracies; a later run without it does not leave the old file behind."""
    import pandas as pd
    from conftest import run_cli

    from interpscan.models import CNN

    torch.manual_seed(0)
    torch.save(CNN(width=2).state_dict(), tmp_path / "a.pt")
    torch.save(CNN(width=2).state_dict(), tmp_path / "b.pt")
    out = tmp_path / "o"
    args = ["run", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--model", "cnn", "--data", "fashion-mnist-small",
            "--samples", "30", "--alphas", "3", "--groups", "fc", "--bn", "interpolate", "-q", "--no-html", "-o",
            str(out)]  # fmt: skip
    code, err = run_cli(monkeypatch, capsys, *args, "--save-per-example", "--bootstrap", "0")
    assert code == 0, err
    results = pd.read_csv(out / "results.csv")
    with np.load(out / "per_example.npz") as npz:
        keys = ("alpha", "correct", "loss", "segment", "t")
        assert sorted(npz.files) == [f"{c}/test/{k}" for c in ("all", "fc") for k in keys]
        for curve in ("all", "fc"):
            rows = results[results["curve"] == curve]
            assert npz[f"{curve}/test/loss"].shape == (3, 30)
            assert npz[f"{curve}/test/alpha"].tolist() == rows["alpha"].tolist()
            assert npz[f"{curve}/test/loss"].mean(1) == pytest.approx(rows["loss"].to_numpy(), rel=1e-6)
            assert npz[f"{curve}/test/correct"].mean(1) == pytest.approx(rows["accuracy"].to_numpy())
    code, err = run_cli(monkeypatch, capsys, *args, "--force")
    assert code == 0, err
    assert not (out / "per_example.npz").exists()


def test_kept_losses_that_cannot_fit_are_refused_before_the_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: no estimate; the scan ran to the end and the allocator failed (100 points × 2,000,000 examples
    under `ulimit -v 3500000` on main: after 6 minutes, "DefaultCPUAllocator: can't allocate memory",
    reported as a full disk while the partial scan was saved). Now the need is estimated from the points and
    examples and refused with the number and what to change."""
    from interpscan.errors import UsageError
    from interpscan.files import describe_size
    from interpscan.uncertainty import kept_bytes

    monkeypatch.setenv("INTERPSCAN_MAX_MEMORY", "1M")
    x, y = torch.randn(1000, 3), torch.randint(0, 2, (1000,))
    init, final = nn.Linear(3, 2), nn.Linear(3, 2)
    evaluated: list[int] = []
    with pytest.raises(UsageError) as exc:
        scan(init, init.state_dict(), final.state_dict(), (x, y), alphas=100, bootstrap=200,
             progress=lambda n, total: evaluated.append(n))  # fmt: skip
    need = kept_bytes(100, [1000], replicates=200, arrays=False)
    assert need == 5 * 100 * (1000 + 2000) + 29 * 100 * 1000 + 24 * 200 * 1000
    assert exc.value.message == (
        f"keeping every example's loss for bootstrap=200 needs about {describe_size(need)} (100 points × 1,000 "
        "examples × 5 bytes, and the copies made of them), and 1.0 MiB of memory is available"
    )
    assert exc.value.hint is not None
    assert exc.value.hint.startswith("turn it off (bootstrap=0)")
    assert not evaluated  # refused before any point was evaluated
    monkeypatch.setenv("INTERPSCAN_MAX_MEMORY", "64M")
    assert scan(init, init.state_dict(), final.state_dict(), (x, y), alphas=100, bootstrap=200).summary is not None
