"""The two rules for user-named files (interpscan/files.py): regular files only, checked without opening them, and a
bound on what a file may make interpscan allocate — measured here on a real process reading crafted files."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from bad_inputs import bombs
from bad_inputs.case import fast_args, good_state

from interpscan.errors import CheckpointError, DataError, UsageError
from interpscan.files import (
    BUDGET_ENV,
    DEFAULT_BUDGET,
    check_expansion,
    check_regular,
    decompression_budget,
    describe_size,
)

# ------------------------------------------------------------------------------------------ regular files


def test_a_regular_file_gives_its_size(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    path.write_bytes(b"x" * 123)
    assert check_regular(path, CheckpointError) == 123
    link = tmp_path / "link.pt"
    link.symlink_to(path)
    assert check_regular(link, CheckpointError) == 123  # links are followed


def _socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    return sock


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("fifo", "is a named pipe (FIFO), not a regular data file; reading it could wait forever"),
        ("device", "is a character device, not a regular data file"),
        ("socket", "is a socket, not a regular data file"),
        ("directory", "is a directory, not a regular data file"),
        ("loop", ": a loop of symbolic links"),
        ("broken", ": a symbolic link to "),
        ("missing", "data file not found: "),
    ],
)
def test_anything_else_is_refused_without_opening_it(tmp_path: Path, kind: str, message: str) -> None:
    path = tmp_path / "x.pt"
    sock = None
    if kind == "fifo":
        os.mkfifo(path)  # opening it would block until a writer came
    elif kind == "device":
        path = Path("/dev/zero")
    elif kind == "socket":
        sock = _socket(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "loop":
        path.symlink_to(tmp_path / "y.pt")
        (tmp_path / "y.pt").symlink_to(path)
    elif kind == "broken":
        path.symlink_to(tmp_path / "gone.pt")
    try:
        with pytest.raises(DataError) as exc:
            check_regular(path, DataError, what="data file")
    finally:
        if sock is not None:
            sock.close()
    assert message in exc.value.message
    assert exc.value.hint


def test_dev_stdin_from_a_pipe_is_refused() -> None:
    """``cat w.pt | interpscan run /dev/stdin …``: /dev/stdin is the pipe, which may never end."""
    code = textwrap.dedent(
        """
        from pathlib import Path
        from interpscan.errors import CheckpointError
        from interpscan.files import check_regular
        try:
            check_regular(Path("/dev/stdin"), CheckpointError, what="checkpoint")
        except CheckpointError as exc:
            print(exc.message)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run([sys.executable, "-c", code], input=b"", capture_output=True, env=env, timeout=60)
    assert (
        done.stdout.decode().strip() == "/dev/stdin is a named pipe (FIFO), not a regular checkpoint; reading it "
        "could wait forever or never end"
    )


def test_a_file_the_user_may_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret.pt"
    path.write_bytes(b"x")
    path.chmod(0)
    if os.geteuid() != 0:  # root reads anything: then only the check itself is shown, below
        with pytest.raises(CheckpointError, match="permission denied"):
            check_regular(path, CheckpointError, what="checkpoint")
    monkeypatch.setattr(os, "access", lambda p, mode: False)
    with pytest.raises(CheckpointError, match=r"secret\.pt: permission denied \(you may not read this checkpoint\)"):
        check_regular(path, CheckpointError, what="checkpoint")


# ---------------------------------------------------------------------------------------------- the bound


@pytest.mark.parametrize(
    ("text", "budget"),
    [
        (None, DEFAULT_BUDGET),
        ("", DEFAULT_BUDGET),
        ("0", 0),
        ("1048576", 1 << 20),
        ("512M", 512 << 20),
        ("2G", 2 << 30),
        ("2GiB", 2 << 30),
        ("1.5g", 3 << 29),
        ("64 kb", 64 << 10),
        ("1T", 1 << 40),
    ],
)
def test_the_budget_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, text: str | None, budget: int
) -> None:
    if text is None:
        monkeypatch.delenv(BUDGET_ENV, raising=False)
    else:
        monkeypatch.setenv(BUDGET_ENV, text)
    assert decompression_budget() == budget


@pytest.mark.parametrize("text", ["lots", "-1", "2X", "1e9", "G"])
def test_a_budget_that_is_no_size(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv(BUDGET_ENV, text)
    with pytest.raises(UsageError, match=f"{BUDGET_ENV}={text!r} is not a size"):
        decompression_budget()


def test_a_file_may_hold_its_size_plus_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BUDGET_ENV, "1M")
    check_expansion("f.npz", 5000 + (1 << 20), 5000, DataError)  # exactly at the bound
    with pytest.raises(DataError) as exc:
        check_expansion("f.npz", 5001 + (1 << 20), 5000, DataError)
    assert exc.value.message == (
        "f.npz declares 1.0 MiB of data in 4.9 KiB on disk; interpscan allocates at most 1.0 MiB beyond a file's "
        "own size, so it is refused before reading"
    )
    assert exc.value.hint == (
        f"if you trust the file, raise the bound: {BUDGET_ENV}=2M or more; at this ratio the file is more likely "
        "crafted (a decompression bomb) than real"
    )
    with pytest.raises(DataError) as exc:
        check_expansion("images/", 3 << 20, 1 << 20, DataError)  # 3:1, as JPEGs are: no talk of bombs
    assert exc.value.hint == f"if you trust the file, raise the bound: {BUDGET_ENV}=2M or more"


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 bytes"),
        (1023, "1,023 bytes"),
        (1024, "1.0 KiB"),
        (1536 << 10, "1.5 MiB"),
        (1 << 30, "1.0 GiB"),
        (1 << 60, "1.0 EiB"),
    ],
)
def test_describe_size(n: int, text: str) -> None:
    assert describe_size(n) == text


# ------------------------------------------------------------------------------ peak memory, measured

# The CLI in a fresh process, printing its peak resident memory (kB on Linux) when it ends, however it ends.
CHILD = textwrap.dedent(
    """
    import resource, sys
    try:
        from interpscan.cli import main
        sys.argv = ["interpscan", *sys.argv[1:]]
        main()
    finally:
        print(f"maxrss_kib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr)
    """
)


def _peak_mib(args: list[str], tmp_path: Path) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    env.pop(BUDGET_ENV, None)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    line = next(ln for ln in done.stderr.splitlines() if ln.startswith("maxrss_kib="))
    return int(line.split("=")[1]) / 1024, done.stderr


@pytest.mark.slow
def test_a_megabyte_declaring_a_gigabyte_costs_no_memory(tmp_path: Path) -> None:
    """A 1 MiB file of honestly deflated zeros declaring a 1 GiB tensor, as a checkpoint and as an .npz data file,
    through the real CLI: refused with a peak no higher than a tiny valid run's plus 64 MiB. Reading either would
    take 1 GiB more (before the bound: 1.2 GiB and 2.2 GiB peaks)."""
    init, final = tmp_path / "init.pt", tmp_path / "final.pt"
    torch.save(good_state(0), init)
    torch.save(good_state(1), final)
    bomb_pt, bomb_npz = tmp_path / "zeros.pt", tmp_path / "zeros.npz"
    bomb_pt.write_bytes(bombs.torch_zeros(1 << 30))
    bomb_npz.write_bytes(bombs.npz_zeros(1 << 30))
    assert bomb_pt.stat().st_size < 1.1 * 2**20
    assert bomb_npz.stat().st_size < 1.1 * 2**20

    def run(*args: str, data: Path | None = None) -> list[str]:
        where = ["--data", str(data)] if data else []  # in the place of RUN_ARGS' --data
        return ["run", *args, *fast_args(*where), "--out", str(tmp_path / f"out{len(list(tmp_path.iterdir()))}")]

    valid, err = _peak_mib(run(str(init), str(final)), tmp_path)
    assert "error:" not in err, err
    for args in (run(str(init), str(bomb_pt)), run(str(init), str(final), data=bomb_npz)):
        peak, err = _peak_mib(args, tmp_path)
        assert "declares 1.0 GiB of data in 1020" in err, err
        assert peak < valid + 64, f"peak {peak:.0f} MiB, a tiny valid run {valid:.0f} MiB"
