"""The run directory: one lock that never steals a live run's directory, one writer that never mixes two runs' files,
and a failed partial save reported as what it is."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import run_cli

from interpscan import rundir
from interpscan.errors import OutputError

ROOT = Path(__file__).resolve().parent.parent


def _args(ckpts: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    init, final = ckpts
    return [
        "run",
        "--data",
        "fashion-mnist-small",
        str(init),
        str(final),
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
        "-q",
        *extra,
    ]


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


class Holder:
    """Another process holding ``out``'s lock, as a live run does, until stopped."""

    def __init__(self, out: Path) -> None:
        code = textwrap.dedent(
            f"""
            import sys
            from pathlib import Path
            from interpscan.rundir import output_lock
            with output_lock(Path({str(out)!r})):
                print("held", flush=True)
                sys.stdin.read()
            """
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "held"

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(timeout=60) == 0
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def test_a_live_run_keeps_its_directory(tmp_path: Path) -> None:
    """Even when its lock names a pid this process cannot see (another PID namespace: a container sharing the
    disk), the holder's file lock keeps the directory its own; the second run is refused and changes nothing."""
    out = tmp_path / "o"
    out.mkdir()
    holder = Holder(out)
    try:
        lock = out / rundir.LOCK_NAME
        identity = json.loads(lock.read_text())
        assert identity["pid"] == holder.proc.pid
        assert set(identity) == {"pid", "host", "boot_id", "pid_namespace", "started"}
        with (
            pytest.raises(OutputError, match=rf"another interpscan run \(pid {holder.proc.pid} on "),
            rundir.output_lock(out),
        ):
            pass
        # the same live holder, as seen from another PID namespace: its pid means nothing here
        lock.write_text(json.dumps({**identity, "pid": 4_000_000, "pid_namespace": "pid:[1]"}))
        before = lock.read_bytes()
        with pytest.raises(OutputError, match=r"another interpscan run \(pid 4000000 on "), rundir.output_lock(out):
            pass
        assert lock.read_bytes() == before
    finally:
        holder.stop()
    assert not (out / rundir.LOCK_NAME).exists()  # the holder released it


def test_two_runs_cannot_write_one_directory(monkeypatch, capsys, ckpts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "o"
    out.mkdir()
    holder = Holder(out)
    try:
        code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out))
        assert code == 2
        assert f"error: another interpscan run (pid {holder.proc.pid} on " in err
        assert sorted(p.name for p in out.iterdir()) == [rundir.LOCK_NAME]  # nothing written
    finally:
        holder.stop()
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out))
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["results.csv", "results.html", "run.json", "summary.csv"]


@pytest.mark.parametrize(
    ("content", "taken"),
    [
        pytest.param(lambda me: {**me, "pid": 4_000_000}, True, id="dead-holder-this-kernel"),
        pytest.param(lambda me: {**me, "pid_namespace": "pid:[1]"}, True, id="dead-holder-other-namespace"),
        pytest.param(lambda me: "", True, id="empty: died before writing"),
        pytest.param(lambda me: {**me, "boot_id": "another-kernel"}, False, id="other-kernel"),
        pytest.param(lambda me: {**me, "host": "elsewhere", "boot_id": "b"}, False, id="other-host"),
        pytest.param(lambda me: {**me, "boot_id": ""}, True, id="no-boot-id-same-host (macOS)"),
        pytest.param(lambda me: {**me, "boot_id": "", "host": "elsewhere"}, False, id="no-boot-id-other-host"),
        pytest.param(lambda me: str(me["pid"] + 1), False, id="older-interpscan-pid-only"),
        pytest.param(lambda me: "\x00garbage", False, id="garbage"),
    ],
)
def test_a_lock_nobody_holds(tmp_path: Path, content, taken: bool) -> None:  # type: ignore[no-untyped-def]
    """A lock whose file lock is free is taken over only when its holder ran under this kernel (then the kernel
    would have kept the file lock for a live one); otherwise interpscan cannot tell, and refuses."""
    out = tmp_path / "o"
    out.mkdir()
    lock = out / rundir.LOCK_NAME
    value = content(rundir.holder_identity())
    lock.write_text(value if isinstance(value, str) else json.dumps(value))
    before = lock.read_bytes()
    if taken:
        with rundir.output_lock(out):
            assert json.loads(lock.read_text())["pid"] == os.getpid()
        assert not lock.exists()
    else:
        with (
            pytest.raises(OutputError, match="cannot tell whether the run that locked it is alive") as info,
            rundir.output_lock(out),
        ):
            pass
        assert info.value.hint == f"if no interpscan run is writing there, remove {lock}"
        assert lock.read_bytes() == before


def test_a_full_disk_leaves_the_earlier_run_whole(monkeypatch, capsys, ckpts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The disk fills while the new run's files are written: the earlier run's four files stay as they were
    (never a mix of two runs), one line says so, and nothing is left behind."""
    out = tmp_path / "o"
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out))
    assert code == 0, err
    before = _files(out)
    real = rundir.write_json

    def full(obj, path):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(rundir, "write_json", full)
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out, "--alphas", "3", "--force"))
    assert code == 2
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]  # random nets: at chance
    assert lines == [
        f"error: cannot write the results into {out}: No space left on device; the files already there are as "
        "they were",
        "hint: free some space or choose another --out",
    ]
    assert _files(out) == before
    assert sorted(p.name for p in out.iterdir()) == sorted(before)  # no staging folder, no lock
    monkeypatch.setattr(rundir, "write_json", real)
    # a run without the page replaces the earlier page too: the directory never holds two runs' files
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out, "--alphas", "3", "--force", "--no-html"))
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["results.csv", "run.json", "summary.csv"]
    assert json.loads((out / "run.json").read_text())["outputs"] == ["results.csv", "summary.csv", "run.json"]


def test_a_writer_killed_mid_write_leaves_nothing_that_counts(monkeypatch, capsys, ckpts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A staging folder a killed writer left is neither "the directory is not empty" nor kept."""
    out = tmp_path / "o"
    (out / f"{rundir.STAGING_PREFIX}dead").mkdir(parents=True)
    (out / f"{rundir.STAGING_PREFIX}dead" / "results.csv").write_text("half")
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out))
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["results.csv", "results.html", "run.json", "summary.csv"]


def test_a_failed_partial_save_is_reported_as_such(monkeypatch, capsys, ckpts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The disk fills while the partial scan is saved: one line about the save, not about the model."""
    monkeypatch.setenv("INTERPSCAN_SAVE_EVERY", "0")

    def full(path: Path):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(rundir, "atomic_path", full)
    out = tmp_path / "o"
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out, "--batch-size", "8"))
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: cannot save the partial scan to {out / rundir.PARTIAL_NAME}: No space left on device; the scan "
        "stopped",
        "hint: free some space where --out is, or choose another --out",
    ]
    assert not out.exists()


def test_bad_data_found_mid_scan_leaves_nothing_to_resume(monkeypatch, capsys, ckpts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A label out of range in the last batch stops the run with one line; the partial scan saved before it is
    of no use and is removed with the directory the run created."""
    import torch

    monkeypatch.setenv("INTERPSCAN_SAVE_EVERY", "0")
    x = torch.rand(24, 1, 28, 28)
    y = torch.arange(24) % 10
    y[-1] = 12
    torch.save({"inputs": x, "targets": y}, tmp_path / "data.pt")
    out = tmp_path / "o"
    args = _args(ckpts, out, "--batch-size", "8", "--data", str(tmp_path / "data.pt"))
    args[args.index("--samples") : args.index("--samples") + 2] = []
    code, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2
    assert err.strip().splitlines()[0] == (
        "error: the model's output has shape [8, 10] and the targets [8]: targets go up to class 12 but the model "
        "outputs 10 classes"
    )
    assert not out.exists()


def test_unforeseen_failures_are_one_line(monkeypatch, capsys, ckpts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Whatever no check foresaw still reaches the user as one line and a hint; INTERPSCAN_DEBUG=1 keeps the
    traceback for whoever debugs it."""
    from interpscan import api

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(api, "summary_frame", broken)
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, tmp_path / "o"))
    err = "\n".join(line for line in err.splitlines() if not line.startswith("warning:"))  # random nets: at chance
    assert code == 1
    assert err.strip().splitlines() == [
        "error: internal error: ZeroDivisionError: division by zero",
        "hint: this is a bug in interpscan; please report it with the command you ran (INTERPSCAN_DEBUG=1 shows "
        "the traceback)",
    ]
    assert not (tmp_path / "o").exists()
    monkeypatch.setattr(sys, "argv", ["interpscan", *_args(ckpts, tmp_path / "p")])
    monkeypatch.setenv("INTERPSCAN_DEBUG", "1")
    from interpscan.cli import main

    with pytest.raises(ZeroDivisionError):
        main()


def test_a_disk_without_file_locks_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system that refuses file locks (some network disks) is not taken for a live run."""

    def refuse(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(rundir.fcntl, "flock", refuse)
    out = tmp_path / "o"
    out.mkdir()
    refused = r"cannot lock .*\.interpscan\.lock: No locks available"
    with pytest.raises(OutputError, match=refused) as info, rundir.output_lock(out):
        pass
    assert info.value.hint == "write to a local disk (--out), where two runs can be kept apart"
