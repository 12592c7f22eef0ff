"""interpscan.atomic: files written whole, never through a link, and inside an output folder only over files the
ledger proves interpscan wrote. Every test runs twice: with descriptor-relative calls (Linux, macOS) and with
paths checked by lstat (what Windows gets)."""

from __future__ import annotations

import errno
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from interpscan import atomic
from interpscan.atomic import LEDGER_NAME, OutputFolder, write_atomic
from interpscan.errors import OutputError


@pytest.fixture(params=["relative", "by-path"], autouse=True)
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "by-path":
        monkeypatch.setattr(atomic, "RELATIVE", False)
        monkeypatch.setattr(atomic, "_NOFOLLOW", 0)
    return str(request.param)


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[OutputFolder]:
    with OutputFolder.open(tmp_path / "out") as f:
        yield f


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file of the user's outside the output folder."""
    path = tmp_path / "outside.txt"
    path.write_text("the user's\n")
    return path


def _ledger(folder: OutputFolder) -> dict[str, list[dict[str, object]]]:
    files: dict[str, list[dict[str, object]]] = json.loads((folder.path / LEDGER_NAME).read_text())["files"]
    return files


def test_written_files_are_recorded_and_replaceable(folder: OutputFolder) -> None:
    written = folder.write({"a.csv": "x,y\n1,2\n", "b.bin": b"\x00\x01", "c.txt": lambda fh: fh.write(b"cb")})
    assert written == {n: folder.path / n for n in ("a.csv", "b.bin", "c.txt")}
    assert (folder.path / "a.csv").read_text() == "x,y\n1,2\n"
    assert (folder.path / "c.txt").read_bytes() == b"cb"
    ledger = _ledger(folder)
    assert ledger["b.bin"] == [
        {"bytes": 2, "sha256": "b413f47d13ee2fe6c845b2ee141af81de858df4ec549a58b7970bb96645bc8d2"}
    ]
    folder.write({"a.csv": "new\n"})
    assert (folder.path / "a.csv").read_text() == "new\n"
    assert len(_ledger(folder)["a.csv"]) == 1  # the earlier bytes are forgotten once replaced
    assert sorted(p.name for p in folder.path.iterdir()) == [LEDGER_NAME, "a.csv", "b.bin", "c.txt"]


def test_a_file_interpscan_did_not_write_is_never_replaced(folder: OutputFolder) -> None:
    (folder.path / "a.csv").write_text("the user's\n")
    with pytest.raises(OutputError, match=r"out: a\.csv was not written by interpscan\. interpscan replaces") as info:
        folder.write({"a.csv": "ours\n", "b.csv": "ours\n"})
    assert info.value.hint == "move them elsewhere, or choose another out"
    assert (folder.path / "a.csv").read_text() == "the user's\n"
    assert sorted(p.name for p in folder.path.iterdir()) == ["a.csv"]  # all or nothing: b.csv neither


def test_a_file_changed_since_is_the_users_until_it_holds_interpscans_bytes_again(folder: OutputFolder) -> None:
    folder.write({"a.csv": "ours\n"})
    (folder.path / "a.csv").write_text("edited\n")
    with pytest.raises(OutputError, match=r"a\.csv changed since interpscan wrote it"):
        folder.write({"a.csv": "new\n"})
    assert folder.remove(["a.csv"]) == []
    assert (folder.path / "a.csv").read_text() == "edited\n"
    (folder.path / "a.csv").write_text("ours\n")  # the very bytes interpscan wrote: provably its own again
    folder.write({"a.csv": "new\n"})
    assert (folder.path / "a.csv").read_text() == "new\n"


def test_a_file_already_holding_the_bytes_is_left_alone_and_unclaimed(folder: OutputFolder) -> None:
    (folder.path / "plotly.min.js").write_text("same")
    before = (folder.path / "plotly.min.js").stat()
    folder.write({"plotly.min.js": "same"})
    assert (folder.path / "plotly.min.js").stat().st_ino == before.st_ino
    assert "plotly.min.js" not in _ledger_or_empty(folder)


def _ledger_or_empty(folder: OutputFolder) -> dict[str, object]:
    return _ledger(folder) if (folder.path / LEDGER_NAME).exists() else {}


@pytest.mark.parametrize("name", ["a.csv", ".interpscan-partial.pt", LEDGER_NAME])
def test_a_link_is_never_written_through_nor_replaced(folder: OutputFolder, outside: Path, name: str) -> None:
    (folder.path / name).symlink_to(outside)
    with pytest.raises(OutputError, match=rf"{name} is a symbolic link \(to {outside}\)"):
        folder.write({name: "ours\n"})
    assert outside.read_text() == "the user's\n"
    assert (folder.path / name).is_symlink()
    assert folder.remove([name]) == []
    assert (folder.path / name).is_symlink()


def test_a_file_the_caller_named_is_replaced_but_not_a_link(folder: OutputFolder, outside: Path) -> None:
    (folder.path / "page.html").write_text("the user's\n")
    folder.write({"page.html": "ours\n"}, named=["page.html"])
    assert (folder.path / "page.html").read_text() == "ours\n"
    (folder.path / "link.html").symlink_to(outside)
    with pytest.raises(OutputError, match=r"link\.html is a symbolic link"):
        folder.write({"link.html": "ours\n"}, named=["link.html"])
    assert outside.read_text() == "the user's\n"


def test_a_directory_is_not_a_file_to_replace(folder: OutputFolder) -> None:
    (folder.path / "a.csv").mkdir()
    (folder.path / "a.csv" / "kept").write_text("x")
    with pytest.raises(OutputError, match=r"a\.csv is a directory"):
        folder.write({"a.csv": "ours\n"})
    assert (folder.path / "a.csv" / "kept").read_text() == "x"


def test_temporary_files_are_created_exclusively(
    folder: OutputFolder, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link planted at the temporary name interpscan is about to use is skipped, not written through."""
    names = itertools.chain(["planted"], (f"fresh{i}" for i in itertools.count()))
    monkeypatch.setattr(atomic.secrets, "token_hex", lambda n: next(names))
    (folder.path / f"{atomic.TEMP_PREFIX}planted").symlink_to(outside)
    folder.write({"a.csv": "ours\n"})
    assert outside.read_text() == "the user's\n"
    assert (folder.path / "a.csv").read_text() == "ours\n"
    assert (folder.path / f"{atomic.TEMP_PREFIX}planted").is_symlink()
    assert sorted(p.name for p in folder.path.iterdir()) == [LEDGER_NAME, f"{atomic.TEMP_PREFIX}planted", "a.csv"]


def test_a_write_that_fails_leaves_the_folder_as_it_was(folder: OutputFolder) -> None:
    folder.write({"a.csv": "old\n"})
    before = {p.name: p.read_bytes() for p in folder.path.iterdir()}

    def full(fh: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError, match="No space left on device"):
        folder.write({"a.csv": "new\n", "b.csv": full})
    assert {p.name: p.read_bytes() for p in folder.path.iterdir()} == before


def test_a_write_killed_among_its_renames_leaves_every_file_provable(
    folder: OutputFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While files are renamed into place the ledger lists each name's old and new bytes: whichever a killed
    write left, a later write may replace it."""
    folder.write({"a.csv": "old a\n", "b.csv": "old b\n"})
    real, calls = OutputFolder._replace, []

    def killed(self: OutputFolder, source: str, name: str) -> None:
        calls.append(name)
        if name == "b.csv" and source.startswith(atomic.TEMP_PREFIX):
            raise KeyboardInterrupt
        real(self, source, name)

    monkeypatch.setattr(OutputFolder, "_replace", killed)
    with pytest.raises(KeyboardInterrupt):
        folder.write({"a.csv": "new a\n", "fresh.csv": "fresh\n", "b.csv": "new b\n"})
    assert (folder.path / "a.csv").read_text() == "new a\n"
    assert (folder.path / "fresh.csv").read_text() == "fresh\n"
    assert (folder.path / "b.csv").read_text() == "old b\n"
    assert [len(_ledger(folder)[n]) for n in ("a.csv", "fresh.csv", "b.csv")] == [2, 1, 2]
    monkeypatch.setattr(OutputFolder, "_replace", real)
    folder.write({"a.csv": "third\n", "fresh.csv": "third\n", "b.csv": "third\n"})
    assert [len(_ledger(folder)[n]) for n in ("a.csv", "fresh.csv", "b.csv")] == [1, 1, 1]


def test_remove_takes_only_what_is_interpscans(folder: OutputFolder) -> None:
    folder.write({"ours.csv": "x\n"})
    (folder.path / "mine.csv").write_text("y\n")
    (folder.path / ".interpscan-partial.pt").write_bytes(b"partial")
    assert folder.remove(["ours.csv", "mine.csv", ".interpscan-partial.pt", "absent.csv"]) == [
        "ours.csv",
        ".interpscan-partial.pt",
    ]
    assert sorted(p.name for p in folder.path.iterdir()) == [LEDGER_NAME, "mine.csv"]
    assert _ledger(folder) == {}


@pytest.mark.parametrize("text", [b"", b"not json", b"[]", b'{"files": {"a.csv": 3}}', b" " * (2**22 + 2)])
def test_a_ledger_that_is_not_one_proves_nothing(folder: OutputFolder, text: bytes) -> None:
    (folder.path / "a.csv").write_text("x\n")
    (folder.path / LEDGER_NAME).write_bytes(text)
    assert folder.problems(["a.csv"]) == ["a.csv was not written by interpscan"]
    folder.write({"b.csv": "ours\n"})  # the ledger's own name is interpscan's: replaced by a real one
    assert set(_ledger(folder)) == {"b.csv"}


def test_write_atomic_replaces_the_file_named_never_a_link(tmp_path: Path, outside: Path) -> None:
    path = tmp_path / "fig.html"
    path.write_text("the user's earlier figure\n")
    assert write_atomic(path, "new\n") == path
    assert path.read_text() == "new\n"
    link = tmp_path / "link.html"
    link.symlink_to(outside)
    with pytest.raises(OutputError, match=r"link\.html is a symbolic link"):
        write_atomic(link, "new\n")
    assert outside.read_text() == "the user's\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.html", "link.html", "outside.txt"]


def test_a_folder_that_is_a_link_to_nothing_is_not_created(tmp_path: Path) -> None:
    (tmp_path / "out-link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputError, match=r"out-link is a symbolic link to .*elsewhere, which does not exist"):
        OutputFolder.open(tmp_path / "out-link")
    assert not (tmp_path / "elsewhere").exists()


def test_the_lock_refuses_a_link_and_a_hard_link(tmp_path: Path, outside: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    with OutputFolder.open(out) as folder:
        (out / atomic.LOCK_NAME).symlink_to(outside)
        with pytest.raises(OutputError, match=r"\.interpscan\.lock is a symbolic link"), folder.lock():
            pass
        (out / atomic.LOCK_NAME).unlink()
        (out / atomic.LOCK_NAME).symlink_to(tmp_path / "created-through-the-link")
        with pytest.raises(OutputError, match=r"\.interpscan\.lock is a symbolic link"), folder.lock():
            pass
        assert not (tmp_path / "created-through-the-link").exists()
        (out / atomic.LOCK_NAME).unlink()
        os.link(outside, out / atomic.LOCK_NAME)
        with pytest.raises(OutputError, match="not a regular file with a single name"), folder.lock():
            pass
    assert outside.read_text() == "the user's\n"
