"""The library entry point ``interpscan.scan``: a model and states in memory, data from DataLoaders, the same
curve as ``interpscan run`` on the same files; ScanResult's figure and save; and the example that shows it."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import run_cli
from torch.utils.data import DataLoader, TensorDataset

import interpscan
from interpscan.errors import OutputError, UsageError
from interpscan.models import build_model, parse_model_spec
from interpscan.schema import RESULT_COLUMNS, SUMMARY_COLUMNS

SPEC = parse_model_spec("cnn", {"width": 4, "in_channels": 1, "num_classes": 10})
BATCH = 16


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two cnn checkpoints and a tensor file with 40 train and 24 test images (28×28, 10 classes)."""
    torch.manual_seed(0)
    a, b = build_model(SPEC), build_model(SPEC)
    with torch.no_grad():
        for m in b.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    torch.save(a.state_dict(), tmp_path / "a.pt")
    torch.save({"state_dict": b.state_dict()}, tmp_path / "b.pt")
    gen = torch.Generator().manual_seed(1)
    data = {
        "x_train": torch.randn(40, 1, 28, 28, generator=gen),
        "y_train": torch.randint(0, 10, (40,), generator=gen),
        "x_test": torch.randn(24, 1, 28, 28, generator=gen),
        "y_test": torch.randint(0, 10, (24,), generator=gen),
    }
    torch.save(data, tmp_path / "data.pt")
    return tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "data.pt"


@pytest.mark.parametrize("strategy", ["sequential", "batched", "prefix", "prefix-batched"])
def test_the_api_in_memory_equals_run_on_files(
    files: tuple[Path, Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    strategy: str,
) -> None:
    a, b, data_file = files
    out = tmp_path / "out"
    flags = ["--model", "cnn", "--model-arg", "width=4", "--data", str(data_file), "--split", "train,test"]
    flags += ["--alphas", "5", "-g", "conv*", "-g", "fc", "--bn", "recompute", "--batch-size", str(BATCH)]
    # DataLoaders stream, and streamed data runs contiguous (tests/test_memory_format.py): the same layout on
    # both sides compares the same computation, to the last bits
    flags += ["--memory-format", "contiguous"]
    code, err = run_cli(monkeypatch, capsys, "run", str(a), str(b), *flags, "--strategy", strategy, "-o", str(out))
    assert code == 0, err
    cli_results = pd.read_csv(out / "results.csv", keep_default_na=False, na_values=[""])
    cli_summary = pd.read_csv(out / "summary.csv", keep_default_na=False, na_values=[""])

    # the same, from what a notebook holds: a module (in train mode, as after training), two state dicts,
    # DataLoaders in order
    model = build_model(SPEC).train()
    init = torch.load(a)
    final = torch.load(b)["state_dict"]
    d = torch.load(data_file)
    loaders = {
        split: DataLoader(TensorDataset(d[f"x_{split}"], d[f"y_{split}"]), batch_size=BATCH)
        for split in ("train", "test")
    }
    result = interpscan.scan(
        model, init, final, loaders, alphas=5, groups=["conv*", "fc"], bn="recompute", splits=["train", "test"],
        batch_size=BATCH, strategy=strategy,
    )  # fmt: skip
    assert list(result.results.columns) == RESULT_COLUMNS
    assert list(result.summary.columns) == SUMMARY_COLUMNS
    assert result.results["n"].dtype == "int64"
    assert result.summary["monotone"].dtype == "boolean"
    for column in ("loss", "loss_se", "accuracy", "alpha"):
        assert result.results[column].tolist() == pytest.approx(cli_results[column].tolist(), rel=1e-7, abs=1e-9)
    for column in ("delta", "barrier_linear", "barrier_max", "distance"):
        assert result.summary[column].tolist() == pytest.approx(cli_summary[column].tolist(), rel=1e-7, abs=1e-9)
    assert result.results["curve"].tolist() == cli_results["curve"].tolist()
    m = result.manifest
    assert m["argv"] is None  # the library records no command line (the CLI records its own)
    assert json.loads((out / "run.json").read_text())["argv"][:2] == ["interpscan", "run"]
    assert m["model"]["source"] == "given"
    assert m["data"]["kind"] == "stream"
    assert m["data"]["splits"] == {"train": {"n": 40, "indices": "all"}, "test": {"n": 24, "indices": "all"}}
    assert m["bn"]["calibration_samples"] == 40
    assert m["checkpoints"]["init"]["format"] == "in-memory"
    assert model.training  # the caller's model is never touched (not even switched to eval)


def test_scan_result_saves_and_draws(files: tuple[Path, Path, Path], tmp_path: Path) -> None:
    a, b, data_file = files
    d = torch.load(data_file)
    model = build_model(SPEC)
    result = interpscan.scan(model, a, b, (d["x_test"], d["y_test"]), alphas=3)
    figure = result.figure()
    assert {trace.name for trace in figure.data} >= {"test"}
    assert "cnn" not in figure.layout.title.text  # an in-memory model is named by its class
    written = result.save(tmp_path / "fresh" / "run")  # a directory that does not exist yet
    assert sorted(p.name for p in written.values()) == ["results.csv", "results.html", "run.json", "summary.csv"]
    again = pd.read_csv(written["results.csv"])
    assert again["loss"].tolist() == pytest.approx(result.results["loss"].tolist(), rel=1e-9)
    with pytest.raises(OutputError, match="is not empty"):
        result.save(tmp_path / "fresh" / "run")
    assert result.save(tmp_path / "fresh" / "run", force=True, html=False).keys() == {
        "results.csv",
        "summary.csv",
        "run.json",
    }


def test_model_none_uses_the_final_module_and_paths_resolve_the_zoo(files: tuple[Path, Path, Path]) -> None:
    a, b, data_file = files
    d = torch.load(data_file)
    data = (d["x_test"], d["y_test"])
    first, second = build_model(SPEC), build_model(SPEC)
    second.load_state_dict(torch.load(b)["state_dict"])
    first.load_state_dict(torch.load(a))
    by_modules = interpscan.scan(None, first, second, data, alphas=3)
    by_files = interpscan.scan(None, a, b, data, alphas=3)  # the zoo model detected from the files' shapes
    assert by_files.manifest["model"]["source"] == "detected"
    assert by_modules.results["loss"].tolist() == pytest.approx(by_files.results["loss"].tolist(), rel=1e-6)


def test_options_are_checked_before_anything_is_read(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.pt"
    with pytest.raises(UsageError, match=r"^batch_size must be at least 1"):
        interpscan.scan(None, missing, missing, "cifar10", batch_size=0)
    with pytest.raises(UsageError, match=r"^hold='init' applies to layer groups"):
        interpscan.scan(None, missing, missing, "cifar10", hold="init")
    x, y = torch.randn(4, 1, 28, 28), torch.zeros(4).long()
    model = build_model(SPEC)
    with pytest.raises(UsageError, match="samples draws a subset of tensors in memory"):
        interpscan.scan(model, model, build_model(SPEC), DataLoader(TensorDataset(x, y)), samples=2)


def test_the_library_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).parents[1] / "examples" / "library.py"
    monkeypatch.setattr(sys, "argv", [str(example), str(tmp_path / "run")])
    runpy.run_path(str(example), run_name="__main__")
    summary = pd.read_csv(tmp_path / "run" / "summary.csv")
    assert summary["curve"].tolist() == ["all", "conv1", "conv2", "fc"]
    assert (summary["loss_start"] > summary["loss_end"]).all()  # trained: every rewound curve ends lower
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert manifest["bn"]["policy"] == "recompute"
    assert manifest["bn"]["calibration_samples"] == 512


def test_a_notebook_interrupts_a_scan_and_resumes_it(files: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """scan(out=...) keeps its finished batches; Ctrl-C (KeyboardInterrupt) raises Interrupted with them saved,
    and the same call with resume=True finishes with the numbers of a scan never interrupted."""
    from interpscan.errors import Interrupted

    a, b, data_file = files
    options = {"model_args": {"width": 4}, "alphas": 5, "batch_size": 8, "bn": "interpolate", "bootstrap": 50}
    whole = interpscan.scan("cnn", a, b, str(data_file), **options)  # type: ignore[arg-type]
    done = []

    def ctrl_c_after_seven(n: int, total: int | None) -> None:  # (point, batch) evaluations: 5 make a batch
        done.append(n)
        if sum(done) >= 7:
            raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(Interrupted, match="the finished batches are saved in") as exc:
        interpscan.scan("cnn", a, b, str(data_file), out=out, progress=ctrl_c_after_seven, **options)  # type: ignore[arg-type]
    assert exc.value.hint == "continue with the same command plus resume=True"
    assert not (out / "results.csv").exists()
    with pytest.raises(OutputError, match="interrupted scan"):  # not resumed, not replaced: refused
        interpscan.scan("cnn", a, b, str(data_file), out=out, **options)  # type: ignore[arg-type]
    counted: list[int] = []
    resumed = interpscan.scan(
        "cnn",
        a,
        b,
        str(data_file),
        out=out,
        resume=True,
        progress=lambda n, t: counted.append(n),
        **options,  # type: ignore[arg-type]
    )
    # 5 points × 3 batches: the batch saved before is told at once, not evaluated again; the rest one by one
    assert counted == [5] + [1] * 10
    pd.testing.assert_frame_equal(resumed.results, whole.results)
    pd.testing.assert_frame_equal(resumed.summary, whole.summary)
    assert sorted(resumed.files) == ["results.csv", "results.html", "run.json", "summary.csv"]
    assert pd.read_csv(resumed.files["results.csv"])["loss"].tolist() == pytest.approx(whole.results["loss"].tolist())
    with pytest.raises(UsageError, match=r"^resume=True continues the scan saved in an output directory"):
        interpscan.scan("cnn", a, b, str(data_file), resume=True, **options)  # type: ignore[arg-type]


def test_a_model_on_the_meta_device_is_interpscans_own_error() -> None:
    """Before: torch's NotImplementedError "Cannot copy out of meta tensor; no data!" from inside the engine."""
    from interpscan.errors import ModelError

    init, final = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    with torch.device("meta"):
        model = torch.nn.Linear(3, 2)
    data = (torch.randn(10, 3), torch.randint(0, 2, (10,)))
    with pytest.raises(ModelError) as exc:
        interpscan.scan(model, init.state_dict(), final.state_dict(), data, alphas=3, bootstrap=0)
    assert exc.value.message == (
        "the model (the model passed in) has 2 tensors on the meta device, shapes without data (weight, bias)"
    )
