"""Interrupting a real `interpscan run` process (SIGINT, SIGTERM) and resuming it gives the same files as a run
that was never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli, slow_main

SLOW_MAIN = slow_main(0.2)  # the scan outlasts the wait for its partial file however busy the machine


def _args(ckpts: tuple[Path, Path], out: Path) -> list[str]:
    # long enough to interrupt: 100 batches × 11 points, each slowed by SLOW_MAIN; recompute, so the BN statistics
    # are saved too
    return [
        "run",
        "--data",
        "fashion-mnist-small",
        str(ckpts[0]),
        str(ckpts[1]),
        "--model",
        "cnn",
        "--split",
        "test",
        "--alphas",
        "11",
        "--batch-size",
        "10",
        "--bn-samples",
        "64",
        "--out",
        str(out),
        "--no-html",
        "-q",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_then_resume_equals_an_uninterrupted_run(
    sig: signal.Signals,
    ckpts,
    tmp_path,
    monkeypatch,  # type: ignore[no-untyped-def]
    capsys,
) -> None:
    whole = tmp_path / "whole"
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, whole))
    assert code == 0, err

    out = tmp_path / "interrupted"
    env = {**os.environ, "INTERPSCAN_SAVE_EVERY": "0", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_MAIN, *_args(ckpts, out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    partial = out / ".interpscan-partial.pt"
    deadline = time.monotonic() + 120
    while not partial.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted; the finished batches are saved in" in stderr
    assert "--resume" in stderr
    assert "Traceback" not in stderr
    assert partial.exists()
    assert not (out / "results.csv").exists()
    assert not (out / ".interpscan.lock").exists()

    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out))  # without --resume: refused, nothing lost
    assert code == 2
    assert "holds an interrupted scan" in err
    assert partial.exists()

    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out), "--resume")
    assert code == 0, err
    assert not partial.exists()
    for name in ("results.csv", "summary.csv"):
        assert (out / name).read_text() == (whole / name).read_text(), name


def test_resume_refuses_a_different_scan(ckpts, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from interpscan.atomic import OutputFolder
    from interpscan.engine import ScanSnapshot, Snapshot
    from interpscan.rundir import PartialSaver

    out = tmp_path / "o"
    with OutputFolder.open(out) as folder:
        PartialSaver(folder, every=0).keep(ScanSnapshot("another scan", Snapshot(3, None, (), 0)).to_state())
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out), "--resume")
    assert code == 2
    assert "made with other inputs or options" in err
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, tmp_path / "empty"), "--resume")
    assert code == 2
    assert "nothing to resume" in err
