"""Warnings from a finished scan's own numbers that its inputs may not be what the network was trained with: a
final network that scores no better than chance, or whose loss is higher than the initial network's. Either is
what the wrong data, the wrong normalization or the wrong weights (a checkpoint's other entry) look like, and
the scan would otherwise report it without a word."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .errors import opt

SIGMAS = 2.0  # how far beyond the noise of the examples a difference must lie to be reported


def _causes() -> str:
    return (
        f"check that the data ({opt('data')}) is what the network was trained on, normalized as it was "
        f"({opt('normalize')}), and that the weights read are the trained ones ({opt('key')})"
    )


def chance_warnings(results: Any, base_rates: Mapping[str, float | None]) -> list[str]:
    """Warnings about the whole network's first segment (init → final), per split.

    - Accuracy at α=1 no better than chance: at most ``base + SIGMAS·√(base(1−base)/n)``, where ``base`` is the
      split's rate of its most common class (``base_rates``; None where not known, e.g. a streamed split).
    - Loss at α=1 above the loss at α=0 by more than SIGMAS standard errors of the difference; where the loss
      falls as far on another split, said as what fine-tuning often costs a shifted set.

    ``results`` is results.csv as a DataFrame (tables.results_frame).
    """
    rows = results[(results["curve"] == "all") & (results["segment"] == 1) & ~results["refined"].astype(bool)]
    warnings = []
    rises: list[tuple[str, float, float]] = []
    falls: list[str] = []  # splits whose loss the path lowers beyond the noise: the data and weights fit there
    for split, points in rows.groupby("split", sort=False):
        start, end = points[points["alpha"] == 0.0], points[points["alpha"] == 1.0]
        if start.empty or end.empty:
            continue
        first, last = start.iloc[0], end.iloc[0]
        base = base_rates.get(str(split))
        accuracy, n = float(last["accuracy"]), int(last["n"])
        if base is not None and math.isfinite(accuracy) and n > 0:
            noise = SIGMAS * math.sqrt(base * (1 - base) / n)
            if accuracy <= base + noise:
                warnings.append(
                    f"warning: the final network scores {accuracy:.1%} on the {split} split, no better than chance "
                    f"({base:.1%}, always the most common class): {_causes()}"
                )
                continue
        l0, l1 = float(first["loss"]), float(last["loss"])
        se = math.hypot(float(first["loss_se"]), float(last["loss_se"]))
        if math.isfinite(l0) and math.isfinite(l1) and l1 - l0 > SIGMAS * se:
            rises.append((str(split), l0, l1))
        elif math.isfinite(l0) and math.isfinite(l1) and l0 - l1 > SIGMAS * se:
            falls.append(str(split))
    for split, l0, l1 in rises:
        # beside a split the path improves, a rise is more likely a finding (fine-tuning costs a shifted
        # evaluation set, WiSE-FT's subject) than data or weights that do not fit
        why = (
            f"while it falls on {', '.join(falls)}: what fine-tuning often costs a shifted set; if {split} is the "
            f"network's own task, {_causes()}"
            if falls
            else _causes()
        )
        warnings.append(
            f"warning: the final network's loss on the {split} split ({l1:.4g}) is higher than the initial "
            f"network's ({l0:.4g}){',' if falls else ':'} {why}"
        )
    return warnings
