"""Adaptive α refinement (interpscan.refine, ``--refine N``): refined points are exact points of the path, they
go where the curve is least resolved — so a cliff is located better by 11 grid points and 10 refined ones than
by a grid of 21 — each curve is refined on its own, and they are marked in results.csv."""

from __future__ import annotations

import pytest
import torch
from conftest import reference_curve
from torch import nn

from interpscan import scan
from interpscan.metrics import plateau_alpha
from interpscan.refine import next_alphas, round_sizes

SHARPNESS = 150.0  # 1/α: the gate opens over a few hundredths of α


class Gate(nn.Module):
    """One scalar that moves from 0 (init) to 1 (final) along the path."""

    def __init__(self) -> None:
        super().__init__()
        self.g = nn.Parameter(torch.zeros(()))


class Cliff(nn.Module):
    """Logits gated by steep sigmoids of two scalars: the loss sits at chance (ln 4) until both gates are past
    their cliffs (``a`` at 0.913, ``b`` at 0.3), then falls: the paper's plateau and cliff, at a known α."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = Gate(), Gate()
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        open_a = torch.sigmoid(SHARPNESS * (self.a.g - 0.913))
        open_b = torch.sigmoid(SHARPNESS * (self.b.g - 0.3))
        return self.fc(x) * open_a * open_b


@pytest.fixture
def cliff() -> tuple[Cliff, dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = Cliff()
    with torch.no_grad():
        model.fc.weight.mul_(6.0)
    x = torch.randn(200, 8)
    y = model.fc(x).argmax(1).detach()
    final = {k: v.detach().clone() for k, v in model.state_dict().items()}
    final["a.g"], final["b.g"] = torch.tensor(1.0), torch.tensor(1.0)
    init = {**final, "a.g": torch.tensor(0.0), "b.g": torch.tensor(0.0)}
    return model, init, final, x, y


def test_round_sizes_split_the_points_into_at_most_five_rounds() -> None:
    assert round_sizes(10) == [2, 2, 2, 2, 2]
    assert round_sizes(7) == [2, 2, 1, 1, 1]
    assert round_sizes(3) == [1, 1, 1]
    assert round_sizes(0) == []


def test_next_alphas_halves_the_interval_where_the_curve_changes_most() -> None:
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    assert next_alphas(alphas, [[2.0, 2.0, 2.0, 1.9, 0.1]], 1) == [0.875]  # the cliff
    assert next_alphas(alphas, [[2.0, 2.0, 2.0, 1.9, 0.1]], 2) == [0.625, 0.875]
    assert next_alphas(alphas, [[1.0, 1.0, 1.0, 1.0, 1.0]], 3) == []  # nothing to resolve on a flat curve
    # a second split counts too: where either split changes most
    assert next_alphas(alphas, [[1.0, 1.0, 1.0, 1.0, 1.0], [3.0, 0.0, 0.0, 0.0, 0.0]], 1) == [0.125]


def test_refined_points_equal_a_plain_loop_at_the_same_alpha(cliff) -> None:  # type: ignore[no-untyped-def]
    model, init, final, x, y = cliff
    result = scan(model, init, final, (x, y), alphas=6, refine=5, bootstrap=0, bn="interpolate")
    refined = result.results[result.results["refined"]]
    assert len(refined) == 5
    assert len(result.results) == 11
    line = next(t for t in result.figure().data if t.meta["role"] == "line" and t.meta["panel"] == "loss")
    assert list(line.marker.symbol).count("circle-open") == 5  # drawn hollow
    assert sum("(refined)" in text for text in line.hovertext) == 5
    want = reference_curve(model, init, final, [dict.fromkeys(init, a) for a in refined["alpha"]], x, y,
                           policy="interpolate")  # fmt: skip
    for (loss, _, acc), got_loss, got_acc in zip(want, refined["loss"], refined["accuracy"], strict=True):
        assert got_loss == pytest.approx(loss, abs=1e-5)
        assert got_acc == pytest.approx(acc)


def test_refinement_finds_the_cliff_better_than_a_twice_finer_grid(cliff) -> None:  # type: ignore[no-untyped-def]
    model, init, final, x, y = cliff

    def plateau(**kw: object) -> float:
        return float(scan(model, init, final, (x, y), bootstrap=0, bn="interpolate", **kw).summary["plateau_alpha"][0])  # type: ignore[arg-type]

    truth = plateau(alphas=501)
    refined, finer = plateau(alphas=11, refine=10), plateau(alphas=21)
    assert abs(refined - truth) < abs(finer - truth)
    assert abs(refined - truth) <= 0.1 / 2**4  # the cliff's cell halved in (at least) four of the five rounds


def test_each_group_is_refined_where_its_own_curve_falls(cliff) -> None:  # type: ignore[no-untyped-def]
    model, init, final, x, y = cliff
    result = scan(model, init, final, (x, y), alphas=11, refine=6, groups="b", bootstrap=0, bn="interpolate")
    refined = result.results[result.results["refined"]]
    by_curve = {c: sorted(g["alpha"]) for c, g in refined.groupby("curve")}
    assert {c: len(a) for c, a in by_curve.items()} == {"all": 6, "b": 6}
    # everything moving: the gate a closes until 0.913; b alone moving (a held open at final): b's cliff at 0.3
    assert sum(0.8 < a < 1.0 for a in by_curve["all"]) >= 4
    assert sum(0.2 < a < 0.4 for a in by_curve["b"]) >= 4
    summary = result.summary.set_index("curve")
    curve = result.results[result.results["curve"] == "b"]
    assert summary.loc["b", "plateau_alpha"] == plateau_alpha(curve["alpha"].tolist(), curve["loss"].tolist())


def test_progress_ends_at_the_total_it_announced(cliff) -> None:  # type: ignore[no-untyped-def]
    """The total is estimated ahead of the rounds and segments, shrinks where a curve takes fewer points than
    asked (nothing left to resolve), and ends exact."""
    model, init, final, x, y = cliff
    told: list[tuple[int, int | None]] = []
    scan(model, [init, final, init], None, (x, y), alphas=11, refine=4, groups="b", bootstrap=0, bn="interpolate",
         batch_size=50, progress=lambda n, total: told.append((n, total)))  # fmt: skip
    assert told[-1][1] == sum(n for n, _ in told)
    assert all(total is not None and total >= n for n, total in told)


def test_more_points_than_the_rounds_can_add_are_refused_up_front() -> None:
    """Before: --alphas 3 --refine 10000 ran, added 62 points per curve (a round adds at most one point per
    interval), and the terminal and run.json said 10000."""
    from interpscan.errors import UsageError
    from interpscan.options import ScanOptions
    from interpscan.refine import largest_refine, most_added

    assert most_added(2, 10_000) == 2 + 4 + 8 + 16 + 32
    with pytest.raises(UsageError) as exc:
        ScanOptions(alphas=3, refine=10_000)
    assert exc.value.message == (
        "refine=10000 would add only 62 points per curve on a grid of 3 α: each of its 5 rounds adds at most one "
        "point per interval"
    )
    assert exc.value.hint == "ask for refine=10 at most, or give alphas=2001 or more"
    fits = largest_refine(2, 10_000)
    assert most_added(2, fits) == fits  # the number the hint offers is added whole
    assert ScanOptions(alphas=3, refine=fits).refine == fits
    assert ScanOptions(alphas=2001, refine=10_000).refine == 10_000


def test_a_curve_with_nothing_to_resolve_is_said_and_recorded(cliff) -> None:  # type: ignore[no-untyped-def]
    """The fc group does not move (init and final share it): its curve is flat and takes no refined point. The
    shortfall is a warning and run.json's refine.added, not a silent 8 in place of 4."""
    model, init, final, x, y = cliff
    said: list[str] = []
    result = scan(model, init, final, (x, y), alphas=6, refine=4, groups="fc", bootstrap=0, bn="interpolate",
                  log=said.append)  # fmt: skip
    refined = result.results[result.results["refined"]]
    assert refined.groupby("curve").size().to_dict() == {"all": 4}
    assert result.manifest.refine is not None
    assert result.manifest.refine.added == 4
    assert result.manifest.refine.to_json()["added"] == 4
    warning = "warning: refine=4 added 4 of 8 points (4 per curve and segment): the loss stopped changing"
    assert any(w.startswith(warning) for w in result.manifest.warnings)
    assert any(line.startswith(warning) for line in said)
    full = scan(model, init, final, (x, y), alphas=6, refine=4, bootstrap=0, bn="interpolate")
    assert full.manifest.refine is not None
    assert full.manifest.refine.added is None
    assert "added" not in full.manifest.refine.to_json()
