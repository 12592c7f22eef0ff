"""Several processes (torchrun, gloo on CPU) give the single process's files: the whole path and groups, BN
statistics re-estimated (their sums reduced), the bootstrap's intervals (examples gathered in order); rank 0
alone writes; a rank that dies stops the others with one line and leaves what it finished for --resume."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import run_cli, slow_main

from interpscan.distributed import World, joined, world_from_env
from interpscan.engine.snapshot import SplitSums
from interpscan.errors import Interrupted, UsageError

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]  # what the torchrun script runs
OUTPUTS = {".interpscan-files.json", "results.csv", "summary.csv", "run.json"}  # and the ledger of what was written


@pytest.mark.parametrize("batches", [0, 1, 2, 3, 7, 10])
@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_shares_are_contiguous_disjoint_and_cover_every_batch(batches: int, size: int) -> None:
    shares = [World(r, size).share(batches) for r in range(size)]
    assert [b for s in shares for b in s] == list(range(batches))  # in rank order: example order
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    owners = [[r for r in range(size) if World(r, size).owns_calibration(k)] for k in range(batches)]
    assert all(len(o) == 1 for o in owners)


def test_world_from_torchruns_environment() -> None:
    assert world_from_env({}) == World()
    assert world_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == World(3, 4, 1)
    for bad in ({"RANK": "4", "WORLD_SIZE": "4"}, {"RANK": "x", "WORLD_SIZE": "2"}, {"WORLD_SIZE": "0"}):
        with pytest.raises(UsageError):
            world_from_env(bad)


def _launch_variables(monkeypatch: pytest.MonkeyPatch, port: int, join_s: str) -> None:
    """torchrun's variables for rank 0 of 2, set by hand: no peer will ever come."""
    for name, value in {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("INTERPSCAN_DIST_JOIN_TIMEOUT", join_s)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)


def test_torchruns_variables_without_torchrun_fail_fast_naming_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, the process waited INTERPSCAN_DIST_TIMEOUT (600 s) for a peer that never came, saying nothing."""
    _launch_variables(monkeypatch, 0, "1")
    t0 = time.monotonic()
    with pytest.raises(UsageError) as exc, joined(World(0, 2), "cpu"):
        pytest.fail("joined a world of one")
    assert time.monotonic() - t0 < 15
    assert exc.value.message.startswith(
        "rank 0 of 2: the other 1 process did not join within 1 s (RANK=0, WORLD_SIZE=2"
    )
    assert "not started by torchrun" in exc.value.message
    assert exc.value.hint is not None
    assert "unset RANK WORLD_SIZE MASTER_ADDR MASTER_PORT" in exc.value.hint


def test_a_rank_without_the_rendezvous_address_is_told_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: torch's multi-line ValueError about MASTER_ADDR, as a lost contact."""
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(UsageError, match="MASTER_ADDR and MASTER_PORT are not set"), joined(World(1, 2), "cpu"):
        pass
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "http")
    with pytest.raises(UsageError, match="MASTER_PORT='http' is not a whole number"), joined(World(1, 2), "cpu"):
        pass


def test_sigterm_stops_the_wait_for_peers(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch waits for peers inside one C++ call: SIGTERM (turned into KeyboardInterrupt, as the CLI does) went
    unheard until it returned. Now the wait is the main thread's, in short steps."""
    port = _free_port()
    _launch_variables(monkeypatch, port, "4")  # the waiting thread gives up by itself soon after the test

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    def terminate_once_waiting() -> None:
        deadline = time.monotonic() + 30
        while not listening() and time.monotonic() < deadline:  # rank 0 serves the rendezvous: it is waiting
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, interrupt)
    sender = threading.Thread(target=terminate_once_waiting)
    try:
        sender.start()
        t0 = time.monotonic()
        with pytest.raises(Interrupted, match="interrupted while rank 0 waited"), joined(World(0, 2), "cpu"):
            pass
        assert time.monotonic() - t0 < 3.5  # before the join timeout of 4 s
    finally:
        # a signal the sender sends after the wait ended (it failed some other way, under load) must not interrupt
        # the test run itself: the assertion above reports what happened
        signal.signal(signal.SIGTERM, lambda signum, frame: None)
        sender.join()
        signal.signal(signal.SIGTERM, previous)


def test_a_single_process_reduces_nothing() -> None:
    sums = SplitSums.zeros(2)
    sums.loss += 1.5
    sums.n = 3
    assert World().reduce_sums(sums) is sums
    assert sums.n == 3
    assert sums.loss.tolist() == [1.5, 1.5]
    stats = {"bn.running_mean": torch.ones(2, 3)}
    assert World().reduce_statistics(stats, 4) == (stats, 4)


def _args(ckpts: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    # 300 test images in 5 batches (3 + 2 per rank) and 150 calibration images in 3 batches (2 + 1: unequal
    # counts, so a mean of means would be wrong); groups; the bootstrap on (its default)
    return [
        "run",
        "--data",
        "fashion-mnist-small",
        str(ckpts[0]),
        str(ckpts[1]),
        "--model",
        "cnn",
        "--samples",
        "300",
        "--batch-size",
        "64",
        "--bn",
        "recompute",
        "--bn-samples",
        "150",
        "--alphas",
        "5",
        "--groups",
        "@top",
        "--bootstrap",
        "200",
        "--out",
        str(out),
        "--no-html",
        *extra,
    ]


def _env() -> dict[str, str]:
    # one thread per process: the two ranks share this machine's cores
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "INTERPSCAN_DIST_TIMEOUT": "60"}


def _assert_same_numbers(a: Path, b: Path) -> None:
    """Losses equal to 1e-6 relative; summary's metrics, differences of losses (Δ, barriers), to 1e-6 of the
    losses' scale (a float32 forward pass on other threads differs in its last bits)."""
    scale = float(pd.read_csv(a / "results.csv")["loss"].abs().max())
    for name in ("results.csv", "summary.csv"):
        x, y = pd.read_csv(a / name), pd.read_csv(b / name)
        assert list(x.columns) == list(y.columns), name
        assert x.shape == y.shape, name
        atol = 1e-9 if name == "results.csv" else 1e-6 * scale
        for col in x.columns:
            if pd.api.types.is_float_dtype(x[col]):
                pd.testing.assert_series_equal(x[col], y[col], rtol=1e-6, atol=atol, obj=f"{name}:{col}")
            else:
                assert x[col].tolist() == y[col].tolist(), f"{name}:{col}"


def test_torchrun_two_processes_equal_one(ckpts, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    one = tmp_path / "one"
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, one))
    assert code == 0, err

    two = tmp_path / "two"
    cmd = [*TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "interpscan", *_args(ckpts, two)]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    _assert_same_numbers(one, two)
    assert {p.name for p in two.iterdir()} == OUTPUTS  # no partial scan, lock or staging left, no html
    assert proc.stderr.count("wrote ") == 1  # rank 0 alone prints (the summary and where it wrote)
    assert proc.stdout.count("path summary") <= 1
    run = pd.read_json(two / "run.json", typ="series")
    assert run["engine"]["processes"] == 2
    assert run["bn"]["calibration_samples"] == 150
    assert run["engine"]["calibration_batches"] == 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SLOW_MAIN = slow_main(0.02)


@pytest.mark.slow
def test_a_rank_that_dies_stops_the_other_with_one_line_then_resume(ckpts, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    port = _free_port()
    procs = []
    for rank in (0, 1):  # launched by hand, as torchrun would, so that the test can kill rank 1 alone
        env = {
            **_env(),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "INTERPSCAN_SAVE_EVERY": "0",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", SLOW_MAIN, *_args(ckpts, out, "-q")],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    partial = out / ".interpscan-partial-rank1-of-2.pt"
    deadline = time.monotonic() + 120
    while not partial.exists() and procs[1].poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert partial.exists()
    procs[1].send_signal(signal.SIGKILL)
    procs[1].communicate()
    t0 = time.monotonic()
    _, stderr = procs[0].communicate(timeout=120)
    assert time.monotonic() - t0 < 90
    assert procs[0].returncode == 1, stderr
    lines = stderr.strip().splitlines()
    assert lines[0].startswith("error: rank 0 of 2 lost contact with the other processes"), stderr
    assert len(lines) == 2
    assert lines[1].startswith("hint:")
    assert "--resume" in lines[1]
    assert not (out / "results.csv").exists()
    assert not (out / ".interpscan.lock").exists()
    assert (out / ".interpscan-partial-rank0-of-2.pt").exists()
    assert partial.exists()

    cmd = [*TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "interpscan", *_args(ckpts, out, "--resume")]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == OUTPUTS
    whole = tmp_path / "whole"
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, whole))
    assert code == 0, err
    _assert_same_numbers(whole, out)


@pytest.fixture
def gpt2(tmp_path: Path) -> Path:
    """A tiny GPT-2 (tied embeddings) at two points and 24 padded sequences: one batch at the default batch
    size, so the second process's share of the data is empty."""
    transformers = pytest.importorskip("transformers")
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(2)
    config = transformers.GPT2Config(
        n_embd=16, n_layer=2, n_head=2, vocab_size=30, n_positions=16, bos_token_id=1, eos_token_id=1, pad_token_id=0
    )
    model = transformers.GPT2LMHeadModel(config)
    model.save_pretrained(tmp_path / "init")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "final")
    ids = torch.randint(2, 30, (24, 12))
    mask = torch.ones_like(ids)
    mask[1::2, 7:] = 0
    ids = ids.masked_fill(mask == 0, 0)
    torch.save({"input_ids": ids, "attention_mask": mask, "labels": ids.clone()}, tmp_path / "text.pt")
    return tmp_path


def test_a_language_model_under_torchrun_equals_one_process_with_the_bootstrap(gpt2, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    # before: rank 1 kept no examples and skipped the gather, rank 0 raised "internal error: the engine did not
    # keep per-example losses", and rank 1's partial scan blocked the next run into the folder
    def args(out: Path) -> list[str]:
        files = [str(gpt2 / "init"), str(gpt2 / "final")]
        return ["run", *files, "--data", str(gpt2 / "text.pt"), "--alphas", "3", "--out", str(out), "--no-html", "-q"]

    one = gpt2 / "one"
    code, err = run_cli(monkeypatch, capsys, *args(one))
    assert code == 0, err
    two = gpt2 / "two"
    cmd = [*TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "interpscan", *args(two)]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    _assert_same_numbers(one, two)
    summary = pd.read_csv(two / "summary.csv")
    assert summary["delta_ci_high"].notna().all()  # the bootstrap ran, over every sequence's tokens
    assert {p.name for p in two.iterdir()} == OUTPUTS


def test_partial_scans_of_some_ranks_only_are_refused_as_not_resumable(ckpts, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    out.mkdir()
    (out / ".interpscan-partial-rank1-of-2.pt").write_bytes(b"a share kept when rank 0 failed")
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out))
    assert code == 2, err
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"error: output directory {out} holds the partial scan of rank 1 of 2 processes only")
    assert lines[0].endswith("that scan stopped when another of its processes failed, and cannot be resumed")
    assert lines[1] == "hint: pass --force to start afresh, or choose another --out"
