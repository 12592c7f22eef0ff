"""The run directory: one lock that never steals a live run's directory, one writer that never mixes two runs' files,
and a failed partial save reported as what it is."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import run_cli

from interpscan import atomic, rundir
from interpscan.atomic import OutputFolder
from interpscan.engine import core
from interpscan.errors import OutputError

ROOT = Path(__file__).resolve().parent.parent
LEDGER = atomic.LEDGER_NAME
RUN_OUTPUTS = ["results.csv", "results.html", "run.json", "summary.csv"]


def _args(ckpts: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    init, final = ckpts
    data = [] if "--data" in extra else ["--data", "fashion-mnist-small"]  # --data repeated: two sources
    return [
        "run",
        *data,
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


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock, as a run does."""
    with OutputFolder.open(out) as folder, folder.lock():
        yield


class Holder:
    """Another process holding ``out``'s lock, as a live run does, until stopped."""

    def __init__(self, out: Path) -> None:
        code = textwrap.dedent(
            f"""
            import sys
            from pathlib import Path
            from interpscan.atomic import OutputFolder
            with OutputFolder.open(Path({str(out)!r})) as folder, folder.lock():
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
        lock = out / atomic.LOCK_NAME
        identity = json.loads(lock.read_text())
        assert identity["pid"] == holder.proc.pid
        assert set(identity) == {"pid", "host", "boot_id", "pid_namespace", "started"}
        with (
            pytest.raises(OutputError, match=rf"another interpscan run \(pid {holder.proc.pid} on "),
            output_lock(out),
        ):
            pass
        # the same live holder, as seen from another PID namespace: its pid means nothing here
        lock.write_text(json.dumps({**identity, "pid": 4_000_000, "pid_namespace": "pid:[1]"}))
        before = lock.read_bytes()
        with pytest.raises(OutputError, match=r"another interpscan run \(pid 4000000 on "), output_lock(out):
            pass
        assert lock.read_bytes() == before
    finally:
        holder.stop()
    assert not (out / atomic.LOCK_NAME).exists()  # the holder released it


def test_two_runs_cannot_write_one_directory(monkeypatch, capsys, ckpts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "o"
    out.mkdir()
    holder = Holder(out)
    try:
        code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out))
        assert code == 2
        assert f"error: another interpscan run (pid {holder.proc.pid} on " in err
        assert sorted(p.name for p in out.iterdir()) == [atomic.LOCK_NAME]  # nothing written
    finally:
        holder.stop()
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out))
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [LEDGER, *RUN_OUTPUTS]


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
    lock = out / atomic.LOCK_NAME
    value = content(atomic.holder_identity())
    lock.write_text(value if isinstance(value, str) else json.dumps(value))
    before = lock.read_bytes()
    if taken:
        with output_lock(out):
            assert json.loads(lock.read_text())["pid"] == os.getpid()
        assert not lock.exists()
    else:
        with (
            pytest.raises(OutputError, match="cannot tell whether the run that locked it is alive") as info,
            output_lock(out),
        ):
            pass
        assert info.value.hint == f"if no interpscan run is writing there, remove {lock}"
        assert lock.read_bytes() == before


def test_a_full_disk_leaves_the_earlier_run_whole(monkeypatch, capsys, ckpts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The disk fills while the new run's files are written: the earlier run's four files stay as they were
    (never a mix of two runs), one line says so, and the finished scan is kept, so that --resume writes its
    files without evaluating again (before, the scan was lost with the write)."""
    out = tmp_path / "o"
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out))
    assert code == 0, err
    before = _files(out)
    real = rundir.json_text

    def full(obj: object) -> object:
        def write(fh: object) -> None:  # run.json half written when the disk fills
            fh.write(b'{"half": ')  # type: ignore[attr-defined]
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return write

    monkeypatch.setattr(rundir, "json_text", full)
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out, "--alphas", "3", "--force"))
    assert code == 2
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]  # random nets: at chance
    partial = out / rundir.PARTIAL_NAME
    assert lines == [
        f"error: cannot write the results into {out}: No space left on device; the files already there are as "
        f"they were; the finished scan is saved in {partial}",
        "hint: free some space or choose another --out; then the same command plus --resume writes the files "
        "(nothing is evaluated again)",
    ]
    assert {k: v for k, v in _files(out).items() if k != rundir.PARTIAL_NAME} == before
    assert sorted(p.name for p in out.iterdir()) == sorted([*before, rundir.PARTIAL_NAME])  # no temporary file, no lock
    monkeypatch.setattr(rundir, "json_text", real)
    evaluated: list[int] = []
    real_accumulate = core._accumulate

    def counted(*args: object, **kw: object) -> object:  # called for every chunk of points evaluated on a batch
        evaluated.append(1)
        return real_accumulate(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(core, "_accumulate", counted)
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out, "--alphas", "3", "--force", "--resume"))
    assert code == 0, err
    assert evaluated == []  # written from the kept scan
    assert json.loads((out / "run.json").read_text())["grid"]["alphas"] == [0.0, 0.5, 1.0]
    assert not partial.exists()
    # a run without the page replaces the earlier page too: the directory never holds two runs' files
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out, "--alphas", "3", "--force", "--no-html"))
    assert code == 0, err
    assert evaluated  # a run that does evaluate is counted
    assert sorted(p.name for p in out.iterdir()) == [LEDGER, "results.csv", "run.json", "summary.csv"]
    assert json.loads((out / "run.json").read_text())["outputs"] == ["results.csv", "summary.csv", "run.json"]


def test_a_writer_killed_mid_write_leaves_nothing_that_counts(monkeypatch, capsys, ckpts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A temporary file a killed writer left is neither "the directory is not empty" nor kept."""
    out = tmp_path / "o"
    out.mkdir()
    (out / f"{atomic.TEMP_PREFIX}0123456789abcdef").write_text("half")
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out))
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [LEDGER, *RUN_OUTPUTS]


def test_a_failed_partial_save_is_reported_as_such(monkeypatch, capsys, ckpts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The disk fills while the partial scan is saved: one line about the save, not about the model."""
    import torch

    monkeypatch.setenv("INTERPSCAN_SAVE_EVERY", "0")

    def full(obj: object, fh: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    out = tmp_path / "o"
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out, "--batch-size", "8"))
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: cannot save the partial scan to {out / rundir.PARTIAL_NAME}: No space left on device; the scan "
        "stopped",
        "hint: free some space where --out is, or choose another --out",
    ]
    assert not out.exists()


class _FillsUp:
    """A file on a disk that fills after ``room`` bytes: its writes then fail as the system's would."""

    def __init__(self, fh: object, room: int) -> None:
        self.fh, self.room = fh, room

    def write(self, data: bytes) -> int:
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.fh.write(data)  # type: ignore[attr-defined,no-any-return]

    def flush(self) -> None:
        self.fh.flush()  # type: ignore[attr-defined]


def test_a_disk_that_fills_under_torch_save_says_no_space(monkeypatch, capsys, ckpts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """torch.save itself writing to a disk that fills: it raises RuntimeError("[enforce fail at
    inline_container.cc:…] unexpected pos …"), which reached the user as is before; the system's own words are
    behind it."""
    import torch

    monkeypatch.setenv("INTERPSCAN_SAVE_EVERY", "0")
    real = torch.save

    def save(obj: object, fh: object) -> None:
        real(obj, _FillsUp(fh, 600))  # type: ignore[arg-type]

    monkeypatch.setattr(torch, "save", save)
    out = tmp_path / "o"
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out, "--batch-size", "8"))
    assert code == 2
    assert err.strip().splitlines()[0] == (
        f"error: cannot save the partial scan to {out / rundir.PARTIAL_NAME}: No space left on device; the scan stopped"
    )
    assert "inline_container" not in err
    assert not out.exists()


def test_a_malformed_save_interval_is_refused_before_anything_is_made(monkeypatch, capsys, ckpts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Before: float("two") raised inside the run, an internal error (exit 1)."""
    monkeypatch.setenv("INTERPSCAN_SAVE_EVERY", "two")
    out = tmp_path / "o"
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out))
    assert code == 2
    assert err.strip().splitlines() == [
        "error: the environment variable INTERPSCAN_SAVE_EVERY='two' is not a number ≥ 0",
        "hint: e.g. INTERPSCAN_SAVE_EVERY=2 (seconds), or unset it",
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

    import fcntl

    def refuse(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", refuse)
    out = tmp_path / "o"
    out.mkdir()
    refused = r"cannot lock .*\.interpscan\.lock: No locks available"
    with pytest.raises(OutputError, match=refused) as info, output_lock(out):
        pass
    assert info.value.hint == "write to a local disk (out), where two runs can be kept apart"


# --- nothing outside --out, nothing of the user's inside it (each of these failed before the one writing rule) ---


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file of the user's outside --out."""
    path = tmp_path / "outside.txt"
    path.write_text("the user's\n")
    return path


@pytest.mark.parametrize("target", ["existing", "dangling"])
def test_a_lock_name_linked_outside_is_refused(monkeypatch, capsys, ckpts, tmp_path, target) -> None:  # type: ignore[no-untyped-def]
    """A link named .interpscan.lock: neither the file it points to (an empty log the old lock would take over) is
    overwritten with the lock's JSON, nor a missing one created; a folder holding only that link is not empty."""
    out = tmp_path / "o"
    out.mkdir()
    log = tmp_path / "empty.log"
    if target == "existing":
        log.touch()
    (out / atomic.LOCK_NAME).symlink_to(log)
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out))
    assert code == 2
    assert err.startswith(f"error: {out}: .interpscan.lock is a symbolic link (to {log})"), err
    assert (log.read_bytes() == b"") if target == "existing" else not log.exists()
    assert sorted(p.name for p in out.iterdir()) == [atomic.LOCK_NAME]


def test_a_hard_linked_lock_is_refused(monkeypatch, capsys, ckpts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "o"
    out.mkdir()
    log = tmp_path / "empty.log"
    log.touch()
    os.link(log, out / atomic.LOCK_NAME)
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out))
    assert code == 2
    assert "is not a regular file with a single name" in err
    assert log.read_bytes() == b""


@pytest.mark.parametrize("name", [*rundir.OUTPUT_FILES, rundir.PARTIAL_NAME, LEDGER, ".interpscan-staging-x"])
def test_a_link_where_a_file_of_interpscans_goes_is_refused(
    monkeypatch, capsys, ckpts, tmp_path, outside, name
) -> None:  # type: ignore[no-untyped-def]
    """With --force, before any scan: the link stays, the file it points to is untouched."""
    monkeypatch.setenv("INTERPSCAN_SAVE_EVERY", "0")
    out = tmp_path / "o"
    out.mkdir()
    (out / name).symlink_to(outside)
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out, "--force", "--batch-size", "8", "--save-per-example"))
    assert code == 2, err
    assert err.startswith(f"error: {out}: {name} is a symbolic link (to {outside})"), err
    assert (out / name).is_symlink()
    assert outside.read_text() == "the user's\n"
    assert sorted(p.name for p in out.iterdir()) == [name]


def test_an_out_that_is_a_link_is_the_folder_it_names(monkeypatch, capsys, ckpts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--out given as a link is the user's own path: followed once (to a folder that must exist), then held."""
    real, link = tmp_path / "real", tmp_path / "link"
    link.symlink_to(real)
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, link))
    assert code == 2
    assert err.startswith(f"error: {link} is a symbolic link to {real}, which does not exist"), err
    assert not real.exists()
    real.mkdir()
    (real / "paper.tex").write_text("mine")
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, link))
    assert code == 2
    assert f"output directory {link} is not empty" in err
    (real / "paper.tex").unlink()
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, link))
    assert code == 0, err
    assert sorted(p.name for p in real.iterdir()) == [LEDGER, *RUN_OUTPUTS]


def test_force_never_replaces_the_users_files_named_like_outputs(monkeypatch, capsys, ckpts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A file interpscan did not write is the user's, whatever its name: --force refuses, naming every one, before
    any scan; nothing is changed."""
    out = tmp_path / "o"
    out.mkdir()
    for name in ("results.csv", "run.json", "per_example.npz"):
        (out / name).write_text(f"my {name}\n")
    before = _files(out)
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out, "--force"))
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: {out}: results.csv was not written by interpscan; run.json was not written by interpscan; "
        "per_example.npz was not written by interpscan. interpscan replaces only files it wrote there, never "
        "through a link",
        "hint: move them elsewhere, or choose another --out",
    ]
    assert _files(out) == before


def test_force_replaces_interpscans_own_run_unless_changed_since(monkeypatch, capsys, ckpts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "o"
    assert run_cli(monkeypatch, capsys, *_args(ckpts, out, "--save-per-example"))[0] == 0
    assert sorted(p.name for p in out.iterdir()) == [LEDGER, "per_example.npz", *RUN_OUTPUTS]
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out, "--force", "--alphas", "3"))
    assert code == 0, err
    assert json.loads((out / "run.json").read_text())["grid"]["alphas"] == [0.0, 0.5, 1.0]
    assert sorted(p.name for p in out.iterdir()) == [LEDGER, *RUN_OUTPUTS]  # its own per_example.npz removed
    (out / "summary.csv").write_text((out / "summary.csv").read_text() + "my note\n")
    before = _files(out)
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out, "--force"))
    assert code == 2
    assert err.startswith(f"error: {out}: summary.csv changed since interpscan wrote it."), err
    assert _files(out) == before


def test_a_folder_holding_only_interpscans_lock_ledger_or_temporary_files_is_empty(tmp_path: Path) -> None:
    """... but one holding a partial scan holds an interrupted run."""
    out = tmp_path / "o"
    out.mkdir()
    for name in (atomic.LOCK_NAME, LEDGER, f"{atomic.TEMP_PREFIX}0123"):
        (out / name).write_text("")
    rundir.open_output_dir(out, force=False).close()
    (out / rundir.PARTIAL_NAME).write_bytes(b"a partial scan")
    with pytest.raises(OutputError, match="holds an interrupted scan"):
        rundir.open_output_dir(out, force=False)
    rundir.open_output_dir(out, force=True, writes=rundir.OUTPUT_FILES).close()


def test_memory_running_out_while_the_partial_scan_is_saved_is_not_a_full_disk(
    monkeypatch, capsys, ckpts, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """Before: the allocator's failure while the snapshot was copied read "cannot save the partial scan …
    DefaultCPUAllocator: can't allocate memory …", hint "free some space" (seen on main, 100 points × 2 million
    examples under ulimit -v)."""
    import torch

    monkeypatch.setenv("INTERPSCAN_SAVE_EVERY", "0")

    def no_memory(obj: object, fh: object) -> None:
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
            "allocate 800000000 bytes. Error code 12 (Cannot allocate memory)"
        )

    monkeypatch.setattr(torch, "save", no_memory)
    out = tmp_path / "o"
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out, "--batch-size", "8"))
    assert code == 1
    assert err.strip().splitlines() == [
        f"error: out of memory while saving the partial scan to {out / rundir.PARTIAL_NAME}; the scan stopped",
        "hint: keep fewer examples' losses (--bootstrap 0), or scan fewer points or examples",
    ]


def test_an_interruption_while_the_files_are_written_says_what_was_kept(monkeypatch, capsys, ckpts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM (the CLI turns it into KeyboardInterrupt) while results.csv & co. were written: before, exit 130 and
    not a word. Now one line says what happened and where the finished scan is; --resume writes the files."""
    written = rundir._write_outputs
    calls: list[int] = []

    def interrupted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return written(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rundir, "_write_outputs", interrupted)
    out = tmp_path / "o"
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out))
    assert code == 130
    assert err.strip().splitlines()[-2:] == [
        f"error: interrupted while the results were written into {out}; the finished scan is saved in "
        f"{out / rundir.PARTIAL_NAME}",
        "hint: write them with the same command plus --resume (nothing is evaluated again)",
    ]
    assert (out / rundir.PARTIAL_NAME).is_file()
    assert not (out / "results.csv").exists()
    code, err = run_cli(monkeypatch, capsys, *_args(ckpts, out, "--resume"))
    assert code == 0, err
    assert (out / "results.csv").is_file()
    assert not (out / rundir.PARTIAL_NAME).exists()
