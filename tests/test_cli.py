"""The command line as a user types it: outputs, refusals, one-line errors with exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
from conftest import run_cli

from interpscan.atomic import LEDGER_NAME
from interpscan.models import build_model, parse_model_spec
from interpscan.schema import RESULT_COLUMNS, SUMMARY_COLUMNS

cli = run_cli


def test_run_writes_all_outputs(monkeypatch, capsys, ckpts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    code, err = cli(
        monkeypatch,
        capsys,
        "run",
        "--data",
        "fashion-mnist-small",
        str(ckpts[0]),
        str(ckpts[1]),
        "--model",
        "cnn",
        "--samples",
        "100",
        "--split",
        "train,test",
        "--alphas",
        "6",
        "--bn-samples",
        "64",
        "--out",
        str(out),
    )
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [
        LEDGER_NAME,
        "results.csv",
        "results.html",
        "run.json",
        "summary.csv",
    ]
    results = pd.read_csv(out / "results.csv")
    assert list(results.columns) == RESULT_COLUMNS
    assert results["alpha"].round(6).tolist() == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0] * 2
    assert results["split"].tolist() == ["train"] * 6 + ["test"] * 6
    assert (results["curve"] == "all").all()
    assert (results["n"] == 100).all()
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert len(summary) == 2
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["bn"]["policy"] == "recompute"
    assert manifest["checkpoints"]["final"]["prefixes_stripped"] == ["module."]
    assert manifest["model"]["args"]["width"] == 4
    html = (out / "results.html").read_text()
    assert "plotly" in html
    assert "BN policy recompute" in err  # the policy is printed, not only recorded
    assert "path summary" in err


def test_non_empty_output_directory_is_refused_without_force(monkeypatch, capsys, ckpts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = [
        "run",
        "--data",
        "fashion-mnist-small",
        str(ckpts[0]),
        str(ckpts[1]),
        "--model",
        "cnn",
        "--samples",
        "20",
        "--alphas",
        "2",
        "--bn",
        "interpolate",
        "--out",
        str(out),
        "--no-html",
    ]
    code, err = cli(monkeypatch, capsys, *args)
    assert code == 2
    assert "is not empty" in err
    assert "--force" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    code, err = cli(monkeypatch, capsys, *args, "--force")
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine"  # --force replaces our files only
    assert (out / "results.csv").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.pt", "missing2.pt", "--model", "cnn"], "checkpoint not found: missing.pt"),
        (["run", "{init}", "{final}", "--model", "resnet21"], "unknown model 'resnet21'; closest: resnet20"),
        (["run", "{init}", "{final}", "--model", "mlp"], "the model does not match the checkpoints"),
        (["run", "{init}", "{final}", "--model", "cnn", "--alphas", "1"], "need at least 2 points"),
        (
            ["run", "{init}", "{final}", "--model", "cnn", "--bn", "magic"],
            "Invalid value for '--bn': 'magic' is not one of 'auto', 'interpolate', 'recompute', 'batch'",
        ),
        (["run", "{init}", "{final}", "--model", "cnn", "--data", "cifar7"], "unknown dataset 'cifar7'"),
        (["run", "{init}", "{final}", "--model", "cnn", "--device", "cuda:3"], "--device cuda:3"),
        (["run", "{init}", "{final}", "--model", "cnn", "--model-arg", "width"], "is not KEY=VALUE"),
        (
            ["run", "{init}", "{final}", "-m", "cnn", "-d", "fashion-mnist-small", "--split", "valid"],
            "has no 'valid' split",
        ),
        (["run", "{init}", "{final}", "--key", "ema"], "no entry 'ema' for --key ema"),
        (["plot", "nowhere.csv"], "results file not found"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(monkeypatch, capsys, ckpts, tmp_path, args, message) -> None:  # type: ignore[no-untyped-def]
    args = [a.format(init=ckpts[0], final=ckpts[1]) for a in args]
    monkeypatch.chdir(tmp_path)
    code, err = cli(monkeypatch, capsys, *args, *(["--out", str(tmp_path / "o")] if args[0] == "run" else []))
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert err.startswith("error: ")
    assert not (tmp_path / "o").exists()  # a failed run leaves no empty output directory behind


def test_model_mismatch_lists_every_problem(monkeypatch, capsys, ckpts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    code, err = cli(
        monkeypatch,
        capsys,
        "run",
        str(ckpts[0]),
        str(ckpts[1]),
        "--model",
        "cnn",
        "--model-arg",
        "width=8",
        "--out",
        str(tmp_path / "o"),
    )
    assert code == 2
    # every mis-shaped tensor of both checkpoints, in one message
    assert err.count("shape of") == 2 * 11  # conv1, bn1 (4), conv2, bn2 (4), fc.weight
    assert "init: shape of bn1.bias is [4], model has [8]" in err


def test_explicit_grid_and_range_and_plot(monkeypatch, capsys, ckpts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "o"
    code, err = cli(
        monkeypatch,
        capsys,
        "run",
        "--data",
        "fashion-mnist-small",
        str(ckpts[0]),
        str(ckpts[1]),
        "--model",
        "cnn",
        "--samples",
        "30",
        "--alphas",
        "5",
        "--alpha-range",
        "-0.5,1.5",
        "--bn",
        "batch",
        "-o",
        str(out),
        "-q",
    )
    assert code == 0, err
    results = pd.read_csv(out / "results.csv")
    assert results["alpha"].tolist() == [-0.5, 0.0, 0.5, 1.0, 1.5]
    code, err = cli(monkeypatch, capsys, "plot", str(out / "results.csv"))
    assert code == 2
    assert "exists" in err
    code, err = cli(monkeypatch, capsys, "plot", str(out), "--out", str(tmp_path / "p.html"))
    assert code == 0, err
    assert "plotly" in (tmp_path / "p.html").read_text()


def test_tensor_file_data_end_to_end(monkeypatch, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    spec = parse_model_spec("mlp", {"in_features": 6, "width": 8, "depth": 1, "num_classes": 3})
    a, b = build_model(spec), build_model(spec)
    torch.save(a.state_dict(), tmp_path / "a.pt")
    torch.save(b.state_dict(), tmp_path / "b.pt")
    x, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    torch.save({"x_train": x[:30], "y_train": y[:30], "x_test": x[30:], "y_test": y[30:]}, tmp_path / "d.pt")
    code, err = cli(
        monkeypatch,
        capsys,
        "run",
        str(tmp_path / "a.pt"),
        str(tmp_path / "b.pt"),
        "--model",
        "mlp",
        "--data",
        str(tmp_path / "d.pt"),
        "--split",
        "train,test",
        "--alphas",
        "3",
        "-o",
        str(tmp_path / "o"),
    )
    assert code == 0, err
    results = pd.read_csv(tmp_path / "o" / "results.csv")
    assert results.groupby("split")["n"].first().to_dict() == {"test": 10, "train": 30}
    manifest = json.loads((tmp_path / "o" / "run.json").read_text())
    assert manifest["data"]["normalization"] is None  # tensor files are used as they are
    assert manifest["model"]["args"] == {"in_features": 6, "width": 8, "depth": 1, "num_classes": 3}


def test_help_and_version_start_without_torch() -> None:
    code = "import sys; from interpscan.cli import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    done = subprocess.run([sys.executable, "-m", "interpscan", "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("interpscan ")
    done = subprocess.run(
        [sys.executable, "-m", "interpscan", "run", "--help"], capture_output=True, text=True, check=True
    )
    assert "--bn" in done.stdout


def test_help_renders_without_markdown_or_tracebacks_which_still_work_when_used() -> None:
    """typer's help renderer imports rich.markdown and rich.traceback (markdown-it, pygments, attrs: a third of
    `--help`'s time) for features interpscan turns off; the CLI defers them, and the real modules take over at
    their first use."""
    code = (
        "import sys; from interpscan.cli import main; sys.argv = ['interpscan', 'run', '--help']\n"
        "try: main()\n"
        "except SystemExit as exc: assert exc.code in (0, None), exc.code\n"
        "slow = {'markdown_it', 'pygments', 'rich.pretty'} & set(sys.modules)\n"
        "assert not slow, slow\n"
        "from rich.markdown import Heading, Markdown\n"
        "import rich.markdown\n"
        "assert type(Markdown('# x')).__module__ == 'rich.markdown' and Heading is rich.markdown.Heading\n"
        "from rich.traceback import Traceback\n"
        "try: 1 / 0\n"
        "except ZeroDivisionError as exc: tb = Traceback.from_exception(type(exc), exc, exc.__traceback__)\n"
        "import rich.traceback\n"
        "assert type(tb) is rich.traceback.Traceback and 'markdown_it' in sys.modules and 'pygments' in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "--bn" in done.stdout


def test_output_problems_fail_before_the_scan(monkeypatch, capsys, ckpts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A full disk or an output path that cannot be a directory is an error before any compute."""
    from collections import namedtuple

    from interpscan import rundir

    args = ["run", str(ckpts[0]), str(ckpts[1]), "--model", "cnn", "--samples", "20", "--alphas", "2", "-q"]
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    code, err = cli(monkeypatch, capsys, *args, "--out", str(blocker / "sub"))
    assert code == 2
    assert f"cannot write to output directory {blocker / 'sub'}" in err

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(rundir.shutil, "disk_usage", lambda _p: usage(10**9, 10**9 - 2**20, 2**20))
    code, err = cli(monkeypatch, capsys, *args, "--out", str(tmp_path / "full"))
    assert code == 2
    assert "only 1.0 MiB free" in err
    assert not (tmp_path / "full").exists()  # nothing left behind
