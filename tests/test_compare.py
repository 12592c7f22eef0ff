"""interpscan.compare: Spearman's ρ against hand-computed values, the comparison table read from run
directories, the files it writes, and the `compare` command."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import old_runs
import pandas as pd
import pytest
from conftest import run_cli_output

from interpscan.atomic import LEDGER_NAME
from interpscan.compare import compare_runs, spearman, write_comparison
from interpscan.errors import OutputError, UsageError
from interpscan.manifest import DataSplit, Manifest
from interpscan.results import ScanResult, load_runs
from interpscan.rundir import write_outputs

# --- Spearman's ρ -----------------------------------------------------------------------------------------


def test_spearman_without_ties_is_one_minus_six_sum_d_squared() -> None:
    # ranks of y: 3, 1, 2, 5, 4; d = -2, 1, 1, -1, 1; Σd² = 8; ρ = 1 − 6·8 / (5·24) = 0.6
    assert spearman([10, 20, 30, 40, 50], [3, 1, 2, 5, 4]) == (pytest.approx(0.6), 5)


def test_spearman_with_ties_is_pearson_on_averaged_ranks() -> None:
    # ranks of y: 1, 2, 3.5, 5, 3.5; deviations from 3: x −2 −1 0 1 2, y −2 −1 0.5 2 0.5
    # Σ dx·dy = 8, Σ dx² = 10, Σ dy² = 9.5: ρ = 8 / √95
    rho, n = spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7])
    assert rho == pytest.approx(8 / math.sqrt(95))
    assert n == 5


def test_spearman_sees_only_order() -> None:
    assert spearman([1, 2, 3], [1, 10, 100])[0] == pytest.approx(1.0)
    assert spearman([1, 2, 3], [100, 10, 1])[0] == pytest.approx(-1.0)


def test_spearman_leaves_out_missing_pairs_and_needs_three() -> None:
    assert spearman([1, 2, math.nan, 4], [1, 2, 3, 4]) == (pytest.approx(1.0), 3)
    assert spearman([1, 2, 3, math.inf], [3, 2, 1, 0]) == (pytest.approx(-1.0), 3)
    rho, n = spearman([1, 2, math.nan], [1, 2, 3])
    assert (math.isnan(rho), n) == (True, 2)


def test_spearman_of_a_constant_is_undefined() -> None:
    rho, n = spearman([0.5, 0.5, 0.5, 0.5], [1, 2, 3, 4])
    assert (math.isnan(rho), n) == (True, 4)
    with pytest.raises(ValueError, match="differ in length"):
        spearman([1, 2, 3], [1, 2])


# --- run directories built by hand ---------------------------------------------------------------------------

# Four runs; what compare must read from each (summary.csv and the α=1 point of results.csv).
DELTA = [0.0, 0.1, 0.2, 0.3]
MONOTONE = [True, False, False, False]
FINAL_ACC = [0.90, 0.85, 0.80, 0.88]
FINAL_LOSS = [0.30, 0.40, 0.50, 0.35]
LAYER1_START = [5.0, 4.0, 6.0, None]  # the last run was scanned without groups
NAMES = ("wd0", "wd1e-4", "wd5e-4", "wd5e-3")


def manifest(name: str, policy: str, splits: tuple[str, ...]) -> Manifest:
    """The first version's run.json (a cnn on fashion-mnist-small, α 0, 0.5, 1) with this run's final checkpoint
    (runs/NAME/final.pt), BN policy and splits."""
    base = old_runs.manifest()
    return old_runs.manifest(
        checkpoints=replace(base.checkpoints, final=replace(base.checkpoints.final, path=f"runs/{name}/final.pt")),
        bn=replace(base.bn, policy=policy),
        data=replace(base.data, splits={s: DataSplit(n=1000, indices="all") for s in splits}),
    )


def write_run(
    root: Path, k: int, *, splits: tuple[str, ...] = ("train", "test"), policy: str = "recompute", plateau: bool = True
) -> Path:
    rows, summary = [], []
    curves = ["all"] if LAYER1_START[k] is None else ["all", "layer1"]
    for curve in curves:
        for split in splits:
            end_loss, end_acc = (FINAL_LOSS[k], FINAL_ACC[k]) if split == "test" else (0.2, 0.95)
            hold, mode = ("", "") if curve == "all" else ("final", "only")
            for a, loss, acc in ((0.0, 2.3, 0.1), (0.5, 2.2, 0.15), (1.0, end_loss, end_acc)):
                rows.append(
                    {"curve": curve, "split": split, "alpha": a, "loss": loss, "loss_se": 0.02, "accuracy": acc,
                     "n": 1000, "hold": hold, "mode": mode}
                )  # fmt: skip
            summary.append(
                {
                    "curve": curve,
                    "split": split,
                    "loss_start": 2.3 if curve == "all" else LAYER1_START[k],
                    "loss_end": end_loss,
                    "delta": DELTA[k] if split == "test" else 0.0,
                    "monotone": MONOTONE[k] if split == "test" else True,
                    "barrier_linear": 0.5 + k,
                    "barrier_linear_alpha": 0.5,
                    "barrier_max": -0.1,
                    "barrier_max_alpha": 0.0,
                    "error_barrier_linear": 0.0,
                    "error_barrier_max": 0.0,
                    "distance": 10.0 - k,
                    "relative_distance": 1.0,
                    "cosine": 0.6,
                    "hold": hold,
                    "mode": mode,
                    **({"plateau_alpha": 0.5} if plateau else {}),
                }
            )
    directory = root / NAMES[k] / "scan"
    directory.mkdir(parents=True)
    result = ScanResult(pd.DataFrame(rows), pd.DataFrame(summary), manifest(NAMES[k], policy, splits))
    write_outputs(result, directory, html=False)
    return directory


@pytest.fixture
def four(tmp_path: Path) -> list[Path]:
    return [write_run(tmp_path, k) for k in range(4)]


def correlation(comparison: Any, metric: str, outcome: str) -> tuple[float, int]:
    row = comparison.correlations.set_index(["metric", "outcome"]).loc[(metric, outcome)]
    return float(row["spearman"]), int(row["n"])


def test_table_reads_shape_from_summary_and_outcomes_at_alpha_one(four: list[Path]) -> None:
    comparison = compare_runs(load_runs(four, need_summary=True))
    table = comparison.table
    assert list(table.columns) == [
        "run", "bn", "split", "final_loss", "final_accuracy", "delta", "monotone", "barrier_linear", "barrier_max",
        "plateau_alpha", "loss_start", "distance", "loss_start:layer1", "path",
    ]  # fmt: skip
    assert table["run"].tolist() == list(NAMES)  # labels from run.json: the final checkpoint's directory
    assert comparison.split == "test"
    assert (table["split"] == "test").all()
    assert table["final_loss"].tolist() == FINAL_LOSS
    assert table["final_accuracy"].tolist() == FINAL_ACC
    assert table["delta"].tolist() == DELTA
    assert table["monotone"].tolist() == MONOTONE
    assert table["barrier_linear"].tolist() == [0.5, 1.5, 2.5, 3.5]
    assert table["distance"].tolist() == [10.0, 9.0, 8.0, 7.0]
    assert table["loss_start:layer1"].tolist()[:3] == [5.0, 4.0, 6.0]
    assert math.isnan(table["loss_start:layer1"].iloc[3])
    assert table["path"].tolist() == [str(p) for p in four]
    assert (table["bn"] == "recompute").all()
    assert comparison.metrics[-1] == ("loss_start:layer1", "L(0), layer1 rewound")


def test_correlations_match_hand_computed_values(four: list[Path]) -> None:
    comparison = compare_runs(load_runs(four, need_summary=True))
    # Δ ranks 1 2 3 4; final accuracy 0.90 0.85 0.80 0.88 ranks 4 2 1 3: Σd² = 14, ρ = 1 − 84/60 = −0.4
    assert correlation(comparison, "delta", "final_accuracy") == (pytest.approx(-0.4), 4)
    # final loss 0.30 0.40 0.50 0.35 ranks 1 3 4 2: Σd² = 6, ρ = 1 − 36/60 = 0.4
    assert correlation(comparison, "delta", "final_loss") == (pytest.approx(0.4), 4)
    # monotone yes no no no: ranks 4 2 2 2 against 4 2 1 3: ρ = 3 / √15
    assert correlation(comparison, "monotone", "final_accuracy") == (pytest.approx(3 / math.sqrt(15)), 4)
    # B_lin and distance are perfectly ordered with the run index; so is Δ: the same ρ
    assert correlation(comparison, "distance", "final_accuracy") == (pytest.approx(0.4), 4)
    # a constant metric says nothing
    rho, n = correlation(comparison, "plateau_alpha", "final_loss")
    assert (math.isnan(rho), n) == (True, 4)
    # a group scanned in three runs only: ranks 2 1 3 against accuracy ranks 3 2 1
    assert correlation(comparison, "loss_start:layer1", "final_accuracy") == (pytest.approx(-0.5), 3)
    assert list(comparison.correlations.columns) == ["metric", "outcome", "n", "spearman"]
    assert len(comparison.correlations) == 2 * len(comparison.metrics)


def test_compare_falls_back_to_a_shared_split_and_says_so(tmp_path: Path) -> None:
    runs = [write_run(tmp_path, k, splits=("train",)) for k in range(3)]
    comparison = compare_runs(load_runs(runs))
    assert comparison.split == "train"
    assert comparison.table["final_loss"].tolist() == [0.2, 0.2, 0.2]
    assert any("no test split in wd0, wd1e-4, wd5e-4" in note and "train split" in note for note in comparison.notes)
    with pytest.raises(UsageError, match=r"split='test': not in wd0, wd1e-4, wd5e-4 \(which hold wd0: train"):
        compare_runs(load_runs(runs), split="test")


def test_compare_notes_differing_policies_and_too_few_runs(tmp_path: Path) -> None:
    runs = [write_run(tmp_path, 0, policy="recompute"), write_run(tmp_path, 1, policy="interpolate")]
    comparison = compare_runs(load_runs(runs))
    assert comparison.table["run"].tolist() == ["wd0 · recompute", "wd1e-4 · interpolate"]
    notes = " ".join(comparison.notes)
    assert "different BN policies (interpolate, recompute)" in notes
    assert "Spearman's ρ needs at least 3 runs; 2 given" in notes
    assert comparison.correlations["spearman"].isna().all()


def test_plateau_is_computed_for_summaries_written_before_it_existed(tmp_path: Path) -> None:
    runs = [write_run(tmp_path, k, plateau=False) for k in range(3)]
    table = compare_runs(load_runs(runs)).table
    # L = 2.3, 2.2, L(1) on α = 0, 0.5, 1: only α=1 is within 0.1·(2.3 − L(1)) of L(1)
    assert table["plateau_alpha"].tolist() == [1.0, 1.0, 1.0]


def test_write_comparison(four: list[Path], tmp_path: Path) -> None:
    comparison = compare_runs(load_runs(four))
    out = tmp_path / "cmp"
    paths = write_comparison(comparison, out)
    assert sorted(p.name for p in out.iterdir()) == [LEDGER_NAME, "compare.csv", "compare.html", "correlations.csv"]
    assert set(paths) == {"compare.csv", "correlations.csv", "compare.html"}
    back = pd.read_csv(out / "compare.csv")
    assert back["run"].tolist() == list(NAMES)
    assert back["final_accuracy"].tolist() == FINAL_ACC
    rho = pd.read_csv(out / "correlations.csv")
    assert rho.set_index(["metric", "outcome"]).loc[("delta", "final_accuracy"), "spearman"] == pytest.approx(-0.4)
    html = (out / "compare.html").read_text(encoding="utf-8")
    assert 'id="interpscan-compare"' in html
    assert '<table class="sortable" id="runs">' in html
    assert '<table class="sortable" id="correlations">' in html
    assert json.dumps("Δ vs final accuracy (test): ρ = -0.40 (n=4)") in html  # a subplot title, in plotly's JSON
    assert "<details><summary>run.json of wd5e-3</summary>" in html
    assert "not plotted, the same in every run (or missing): B_max, plateau α, L(0)" in html
    with pytest.raises(OutputError, match="is not empty"):
        write_comparison(comparison, out)
    write_comparison(comparison, out, force=True)


def test_compare_force_replaces_only_what_interpscan_wrote(four: list[Path], tmp_path: Path) -> None:
    """--force replaces an earlier comparison, never the user's compare.csv, never through a link."""
    comparison = compare_runs(load_runs(four))
    out = tmp_path / "cmp"
    write_comparison(comparison, out)
    (out / "compare.csv").write_text("my table\n")
    outside = tmp_path / "outside.html"
    outside.write_text("the user's\n")
    (out / "compare.html").unlink()
    (out / "compare.html").symlink_to(outside)
    with pytest.raises(
        OutputError, match=r"compare\.csv changed since interpscan wrote it; compare\.html is a symbolic"
    ):
        write_comparison(comparison, out, force=True)
    assert (out / "compare.csv").read_text() == "my table\n"
    assert outside.read_text() == "the user's\n"
    (out / "compare.csv").unlink()
    (out / "compare.html").unlink()
    write_comparison(comparison, out, force=True, plotlyjs="directory")
    assert sorted(p.name for p in out.iterdir()) == [
        LEDGER_NAME, "compare.csv", "compare.html", "correlations.csv", "plotly.min.js"
    ]  # fmt: skip


def test_cli_compare(four: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    out = tmp_path / "cmp"
    code, stdout, stderr = run_cli_output(monkeypatch, capsys, "compare", *map(str, four), "--out", str(out))
    assert code == 0, stderr
    assert "runs (test split)" in stdout
    assert "wd5e-3" in stdout
    assert "Spearman's ρ across runs" in stdout
    assert "-0.4" in stdout
    assert "note: final loss and accuracy: each run's α=1 point on the test split" in stderr
    assert f"wrote {out / 'compare.csv'}" in stderr
    code, _, stderr = run_cli_output(
        monkeypatch, capsys, "compare", str(four[0]), str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")
    )
    assert code == 2
    assert "results file not found" in stderr
    assert not (tmp_path / "x").exists()


def test_cli_compare_shows_an_undefined_monotone_as_a_dash(
    four: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # a path with a non-finite loss has no Δ and no monotone verdict: summary.csv leaves them empty
    summary = pd.read_csv(four[1] / "summary.csv")
    summary["monotone"] = summary["monotone"].astype(object)
    summary.loc[(summary["curve"] == "all") & (summary["split"] == "test"), ["delta", "monotone"]] = None
    summary.to_csv(four[1] / "summary.csv", index=False)
    table = compare_runs(load_runs(four)).table
    assert table["monotone"].isna().tolist() == [False, True, False, False]
    code, stdout, stderr = run_cli_output(monkeypatch, capsys, "compare", *map(str, four), "--out", str(tmp_path / "c"))
    assert code == 0, stderr
    row = next(line for line in stdout.splitlines() if "wd1e-4" in line)
    assert "—" in row
    assert "nan" in row  # Δ
