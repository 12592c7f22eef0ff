"""Metric functions on hand-built curves whose answers are known."""

from __future__ import annotations

import math

import pytest
import torch

from interpscan.metrics import (
    PLATEAU_FRACTION,
    barrier_linear,
    barrier_max,
    distances,
    largest_rise,
    monotonicity_gap,
    plateau_alpha,
    summarize_curve,
)

A5 = [0.0, 0.25, 0.5, 0.75, 1.0]


def test_flat_curve_has_no_rise_and_no_barrier() -> None:
    loss = [1.0] * 5
    assert monotonicity_gap(A5, loss) == 0.0
    assert barrier_linear(A5, loss).height == 0.0
    assert barrier_max(A5, loss).height == 0.0
    assert summarize_curve(A5, loss, tol=0.0).monotone is True


def test_monotone_decreasing_curve() -> None:
    loss = [2.3, 2.0, 1.2, 0.6, 0.3]
    s = summarize_curve(A5, loss, [0.1, 0.2, 0.5, 0.8, 0.9])
    assert (s.loss_start, s.loss_end) == (2.3, 0.3)
    assert s.delta == 0.0
    assert s.monotone is True
    # the line from 2.3 to 0.3 is 2.3, 1.8, 1.3, 0.8, 0.3: the curve is above it at α=0.25 by 0.2
    assert s.barrier_linear == pytest.approx(0.2)
    assert s.barrier_linear_alpha == 0.25
    assert s.barrier_max == pytest.approx(0.0)  # the highest point is the start
    # error 0.9, 0.8, 0.5, 0.2, 0.1 against the line 0.9, 0.7, 0.5, 0.3, 0.1
    assert s.error_barrier_linear == pytest.approx(0.1)
    assert s.error_barrier_max == pytest.approx(0.0)


def test_one_bump() -> None:
    loss = [1.0, 1.5, 2.5, 0.8, 0.2]
    # largest rise: from 1.0 (α=0) to 2.5 (α=0.5)
    assert monotonicity_gap(A5, loss) == pytest.approx(1.5)
    b = barrier_max(A5, loss)
    assert (b.height, b.alpha) == (pytest.approx(1.5), 0.5)
    lin = barrier_linear(A5, loss)  # line: 1.0, 0.8, 0.6, 0.4, 0.2 -> excess at 0.5 is 1.9
    assert (lin.height, lin.alpha) == (pytest.approx(1.9), 0.5)
    s = summarize_curve(A5, loss, tol=1.6)
    assert s.monotone is True  # the rise is within the tolerance
    assert summarize_curve(A5, loss, tol=1.0).monotone is False


def test_rise_after_a_dip_counts_from_the_lowest_earlier_point() -> None:
    # 3.0 -> 1.0 -> 1.4 -> 0.5 -> 0.6: largest rise is 0.4 (1.0 to 1.4), not 3.0 to anything
    assert monotonicity_gap(A5, [3.0, 1.0, 1.4, 0.5, 0.6]) == pytest.approx(0.4)


def test_nan_present_gives_nan_metrics_not_made_up_numbers() -> None:
    loss = [2.0, math.nan, 1.0, 0.5, 0.2]
    s = summarize_curve(A5, loss)
    assert math.isnan(s.delta)
    assert s.monotone is None
    assert math.isnan(s.barrier_linear)
    assert math.isnan(s.barrier_max)
    assert s.loss_start == 2.0
    assert s.loss_end == 0.2


def test_points_outside_unit_interval_are_not_scored_and_order_does_not_matter() -> None:
    alphas = [1.5, 0.0, -0.5, 1.0, 0.5]
    loss = [9.0, 2.0, 9.0, 0.5, 1.0]
    s = summarize_curve(alphas, loss)
    assert (s.loss_start, s.loss_end, s.delta) == (2.0, 0.5, 0.0)
    assert s.barrier_max == pytest.approx(0.0)


def test_grid_without_endpoints_is_refused() -> None:
    with pytest.raises(ValueError, match="α=0 and α=1"):
        monotonicity_gap([0.1, 0.5, 1.0], [1.0, 2.0, 3.0])


def test_distances() -> None:
    start = {"w": torch.tensor([3.0, 0.0]), "b": torch.tensor([0.0, 4.0]), "ignored": torch.tensor([100.0])}
    end = {"w": torch.tensor([3.0, 0.0]), "b": torch.tensor([0.0, 0.0]), "ignored": torch.tensor([-5.0])}
    d = distances(start, end, ["w", "b"])
    assert d.distance == pytest.approx(4.0)  # only b moved, by 4
    assert d.relative_distance == pytest.approx(4.0 / 5.0)  # |θ_0| = 5
    assert d.cosine == pytest.approx(3.0 * 3.0 / (5.0 * 3.0))


# --- where Δ happens -----------------------------------------------------------------------------------------


def test_largest_rise_locates_the_rise() -> None:
    rise = largest_rise(A5, [3.0, 1.0, 1.4, 0.5, 0.6])
    assert rise.height == pytest.approx(0.4)
    assert (rise.start_alpha, rise.end_alpha) == (0.25, 0.5)  # from 1.0 at α=0.25 up to 1.4 at α=0.5


def test_largest_rise_ties_go_to_the_earliest_points() -> None:
    a4 = [0.0, 0.25, 0.5, 1.0]
    rise = largest_rise(a4, [1.0, 0.5, 0.5, 0.9])
    assert rise.height == pytest.approx(0.4)
    assert (rise.start_alpha, rise.end_alpha) == (0.25, 1.0)


def test_largest_rise_of_a_falling_curve_has_no_location() -> None:
    rise = largest_rise(A5, [2.0, 1.5, 1.0, 0.5, 0.5])
    assert rise.height == 0.0
    assert math.isnan(rise.start_alpha)
    assert math.isnan(rise.end_alpha)
    assert math.isnan(largest_rise(A5, [2.0, math.inf, 1.0, 0.5, 0.5]).height)


# --- plateau length: the first α with L(α) ≤ L(1) + ε, ε = 0.1·|L(0) − L(1)| -------------------------------

A11 = [i / 10 for i in range(11)]


def test_plateau_fraction_is_a_tenth_of_the_endpoint_gap() -> None:
    assert PLATEAU_FRACTION == 0.1


def test_plateau_of_a_straight_line_is_one_minus_the_fraction() -> None:
    line = [2.0, 1.8, 1.6, 1.4, 1.2, 1.0, 0.8, 0.6, 0.4, 0.2, 0.0]
    # ε = 0.2: 0.2 at α=0.9 is the first loss within it
    assert plateau_alpha(A11, line) == 0.9
    assert plateau_alpha(A11, line, fraction=0.5) == 0.5  # ε = 1.0: 1.0 at α=0.5


def test_plateau_and_cliff() -> None:
    # at chance (2.3) until α=0.7, then a cliff: ε = 0.2, the first loss ≤ 0.5 is 0.4 at α=0.8
    loss = [2.3] * 8 + [0.4, 0.32, 0.3]
    assert plateau_alpha(A11, loss) == 0.8
    # a cliff inside the last grid cell: the plateau spans the whole grid
    assert plateau_alpha(A11, [2.3] * 10 + [0.3]) == 1.0


def test_plateau_of_a_curve_that_falls_at_once() -> None:
    # ε = 0.2: 0.45 at α=0.25 is already within 0.5
    assert plateau_alpha(A5, [2.3, 0.45, 0.4, 0.35, 0.3]) == 0.25


def test_plateau_is_the_first_fall_even_when_the_curve_rises_again() -> None:
    a4 = [0.0, 1 / 3, 2 / 3, 1.0]
    # ε = 0.15: 0.1 at α=1/3 is already ≤ L(1) + ε = 0.65, although 1.5 at α=2/3 is not
    assert plateau_alpha(a4, [2.0, 0.1, 1.5, 0.5]) == pytest.approx(1 / 3)


def test_plateau_of_a_path_that_does_not_fall_is_zero() -> None:
    assert plateau_alpha(A5, [0.3, 0.8, 1.5, 2.0, 2.3]) == 0.0  # L(0) < L(1)
    assert plateau_alpha(A5, [1.0] * 5) == 0.0  # flat: ε = 0 and L(0) = L(1)


def test_plateau_with_zero_fraction_needs_the_end_loss_itself() -> None:
    assert plateau_alpha(A5, [2.0, 1.0, 0.5, 0.5, 0.5], fraction=0.0) == 0.5


def test_plateau_scores_only_the_unit_interval_and_refuses_negative_fraction() -> None:
    alphas = [-0.5, 0.0, 0.5, 1.0, 1.5]
    # the extrapolated points (0.0 at α=-0.5 and α=1.5) are below L(1) but not on the path being scored
    assert plateau_alpha(alphas, [0.0, 2.0, 1.9, 1.0, 0.0]) == 1.0
    assert math.isnan(plateau_alpha(A5, [2.0, math.nan, 1.0, 0.5, 0.2]))
    with pytest.raises(ValueError, match="fraction"):
        plateau_alpha(A5, [2.0, 1.5, 1.0, 0.5, 0.2], fraction=-0.1)


def test_summary_carries_the_plateau() -> None:
    loss = [2.3] * 8 + [0.4, 0.32, 0.3]
    assert summarize_curve(A11, loss).plateau_alpha == 0.8
    assert summarize_curve(A11, loss, plateau_fraction=0.0).plateau_alpha == 1.0
    assert "plateau_alpha" in summarize_curve(A11, loss).to_dict()
