"""examples/paper/reproduce.py at its --tiny size on the bundled subset: every part runs, the files it writes
hold together, and the numbers in them agree with the checkpoints it saved."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from interpscan.checkpoints import load_checkpoint
from interpscan.data import load_split, open_data
from interpscan.models import build_model, parse_model_spec
from interpscan.results import load_run

SCRIPT = Path(__file__).parents[1] / "examples" / "paper" / "reproduce.py"
CNNS = ["cnn-wd0", "cnn-wd0.001", "cnn-wd0.005", "cnn-wd0.02", "cnn-half", "cnn-augment"]


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("paper_reproduce", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def out(script: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    threads = torch.get_num_threads()
    directory = tmp_path_factory.mktemp("paper") / "out"
    try:
        assert script.main(["--out", str(directory), "--tiny", "--quiet", "--threads", "1"]) == 0
        yield directory
    finally:
        torch.set_num_threads(threads)


def test_one_report_with_every_part(out: Path) -> None:
    page = (out / "report.html").read_text(encoding="utf-8")
    for div in ("sweep-interpolate", "sweep-recompute", "layers", "compare-interpolate", "path3-interpolate"):
        assert f'id="{div}"' in page
    assert page.count("<h2>") == 7  # findings, (a)–(d), how it was made, the manifests
    assert not list(out.rglob("*.html"))[1:]  # one page in all: the runs were saved without theirs


def test_findings_name_a_verdict_for_every_part(out: Path) -> None:
    findings = pd.read_csv(out / "findings.csv")
    assert sorted(set(findings["part"])) == ["a", "b", "c", "d"]
    assert findings["verdict"].str.match(r"^(reproduced|partly|not reproduced)").all()
    assert (findings["measured"].str.len() > 20).all()


def test_every_scan_is_a_whole_run_of_the_tiny_size(out: Path, script: ModuleType) -> None:
    size = script.TINY
    for name in CNNS:
        for policy in ("interpolate", "recompute"):
            run = load_run(out / "runs" / name / f"scan-{policy}", need_summary=True)
            assert run.has_manifest
            assert run.manifest["bn"]["policy"] == policy
            assert sorted(run.results["alpha"]) == pytest.approx([k / (size.alphas - 1) for k in range(size.alphas)])
            assert (run.results["n"] == size.samples).all()
    layers = load_run(out / "runs" / "resnet18" / "scan-interpolate", need_summary=True)
    assert layers.has_summary
    assert layers.summary["curve"].tolist() == ["all", "layer1", "layer2", "layer3", "layer4", "fc"]


def test_the_sweep_starts_from_one_init(out: Path) -> None:
    first = load_checkpoint(out / "runs" / CNNS[0] / "init.pt").tensors
    for name in CNNS[1:]:
        other = load_checkpoint(out / "runs" / name / "init.pt").tensors
        assert all(torch.equal(first[k], other[k]) for k in first)
    train = json.loads((out / "runs" / "cnn-wd0.02" / "train.json").read_text())
    assert train["train"]["weight_decay"] == 0.02


def test_alpha_one_is_the_trained_network_on_the_scanned_examples(out: Path) -> None:
    """Under interpolate the α=1 point is the final checkpoint's own evaluation: recomputed here from final.pt and
    the test indices run.json records."""
    run = load_run(out / "runs" / "cnn-wd0.005" / "scan-interpolate")
    assert run.has_manifest
    indices = run.manifest["data"]["splits"]["test"]["indices"]
    source = open_data("fashion-mnist-small")
    test = load_split(source, "test", normalization=source.normalization)
    final = load_checkpoint(out / "runs" / "cnn-wd0.005" / "final.pt")
    model = build_model(parse_model_spec("cnn", final.info.metadata["interpscan"]["model_args"]))
    model.load_state_dict(final.tensors)
    model.eval()
    with torch.no_grad():
        logits = model(test.inputs[indices]).double()
    targets = test.targets[indices]
    end = run.results[run.results["alpha"] == 1.0].iloc[0]
    assert end["loss"] == pytest.approx(float(F.cross_entropy(logits, targets)), abs=1e-5)
    assert end["accuracy"] == pytest.approx(float((logits.argmax(1) == targets).double().mean()))


def test_compare_reads_the_scans(out: Path) -> None:
    table = pd.read_csv(out / "compare-interpolate" / "compare.csv")
    assert table["run"].tolist() == CNNS
    for _, row in table.iterrows():
        results = load_run(out / "runs" / row["run"] / "scan-interpolate").results
        assert row["final_accuracy"] == pytest.approx(float(results[results["alpha"] == 1.0]["accuracy"].iloc[0]))
    correlations = pd.read_csv(out / "compare-interpolate" / "correlations.csv")
    assert set(correlations["n"]) == {len(CNNS)}


@pytest.mark.parametrize("policy", ["interpolate", "recompute"])
def test_the_path_on_to_a_random_init_is_two_segments(out: Path, policy: str) -> None:
    """(d): segment 1 is the run's own two-checkpoint scan, point for point, and segment 2 starts where it ends
    (the final checkpoint, on the same examples; under recompute, the same calibration images)."""
    run = out / "runs" / "cnn-wd0.02"
    path = load_run(run / f"path3-{policy}").results
    own = load_run(run / f"scan-{policy}").results
    one, two = (path[path["segment"] == k].sort_values("alpha") for k in (1, 2))
    assert one["loss"].tolist() == pytest.approx(own.sort_values("alpha")["loss"].tolist(), abs=1e-6)
    assert two["loss"].iloc[0] == pytest.approx(one["loss"].iloc[-1], abs=1e-6)
    assert two["t"].tolist() == pytest.approx((1 + two["alpha"]).tolist())
    manifest = json.loads((run / f"path3-{policy}" / "run.json").read_text())
    assert "--random-init" in manifest["argv"]


def test_permutation_p_matches_the_exact_count(script: ModuleType) -> None:
    # ρ = 1 for 5 pairs: 2 of the 120 orderings (ρ = ±1) are as extreme
    assert script.permutation_p([1, 2, 3, 4, 5], [2, 4, 6, 8, 10]) == pytest.approx(2 / 120)
    assert script.permutation_p([1, 2, 3], [1, 1, 1]) != script.permutation_p([1, 2, 3], [1, 1, 1])  # NaN: constant


def test_missing_data_says_where_to_get_it(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = script.main(["--out", str(tmp_path / "out"), "--data-root", str(tmp_path / "empty"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: Fashion-MNIST not found under --data-root" in err
    assert "apt-get install dataset-fashion-mnist" in err
    assert not (tmp_path / "out").exists()  # nothing written before the data is found
