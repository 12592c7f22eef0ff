"""Tests for interpscan.download against a local HTTP server on 127.0.0.1: good, corrupt, truncated and missing
files, mirrors, and atomic extraction. Nothing here leaves the machine."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from interpscan.download import (
    DownloadError,
    Resource,
    created_dirs,
    extract_folder,
    fetch,
    md5sum,
    verify,
)
from interpscan.errors import DataError, InterpscanError

PAYLOAD = bytes(range(256)) * 40  # 10,240 bytes: several reads' worth with a small chunk size


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    length: int | None = None  # the Content-Length sent; None: len(body)


@dataclass
class FileServer:
    """A tiny HTTP server on 127.0.0.1: ``routes[path]`` says what each GET returns; anything else is a 404."""

    base: str
    routes: dict[str, Route] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@pytest.fixture
def server() -> Iterator[FileServer]:
    state = FileServer("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits.append(self.path)
            route = state.routes.get(self.path)
            if route is None:
                self.send_error(404, "Not Found")
                return
            self.send_response(route.status)
            self.send_header("Content-Length", str(len(route.body) if route.length is None else route.length))
            self.end_headers()
            self.wfile.write(route.body)
            self.close_connection = True  # a short body then ends the connection: a truncated transfer

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never touch the internet: any name other than the loopback address fails to resolve."""
    real = socket.getaddrinfo

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host not in ("127.0.0.1", "localhost"):
            raise socket.gaierror(socket.EAI_NONAME, "blocked in tests")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def resource(server: FileServer, *paths: str, body: bytes = PAYLOAD, name: str = "data.bin") -> Resource:
    return Resource(name, tuple(server.url(p) for p in paths), hashlib.md5(body).hexdigest(), len(body))


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# ------------------------------------------------------------------------------------------- fetch


def test_good_file(server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("interpscan.download.CHUNK", 4096)
    server.routes["/data.bin"] = Route(body=PAYLOAD)
    calls: list[tuple[str, int, int]] = []
    path = fetch(resource(server, "/data.bin"), tmp_path, progress=lambda *a: calls.append(a))
    assert path == tmp_path / "data.bin"
    assert path.read_bytes() == PAYLOAD
    assert leftovers(tmp_path) == ["data.bin"]  # no temporary file beside it
    # progress: starts at 0, grows by reads of 4096 bytes, ends at the file's size
    assert calls == [("data.bin", n, len(PAYLOAD)) for n in (0, 4096, 8192, 10240)]


@pytest.mark.parametrize(
    ("route", "reason"),
    [
        (Route(body=PAYLOAD[:-1] + b"\x00"), "checksum mismatch: md5 "),  # corrupt, same size
        (Route(body=PAYLOAD[:5000], length=len(PAYLOAD)), "5000 of 10240 bytes"),  # truncated transfer
        (Route(body=PAYLOAD + b"more"), "the server offers 10244 bytes, expected 10240"),
        (Route(status=500, body=b"oops"), "HTTP 500"),
    ],
    ids=["corrupt", "truncated", "wrong-size", "server-error"],
)
def test_bad_file_leaves_nothing(server: FileServer, tmp_path: Path, route: Route, reason: str) -> None:
    server.routes["/data.bin"] = route
    res = resource(server, "/data.bin")
    with pytest.raises(DownloadError) as exc:
        fetch(res, tmp_path)
    assert len(exc.value.failures) == 1
    assert exc.value.failures[0].startswith(f"{res.url}: ")
    assert reason in exc.value.failures[0]
    assert str(exc.value).startswith("downloading data.bin failed (")
    assert leftovers(tmp_path) == []


def test_truncated_message(server: FileServer, tmp_path: Path) -> None:
    server.routes["/data.bin"] = Route(body=PAYLOAD[:5000], length=len(PAYLOAD))
    with pytest.raises(DownloadError) as exc:
        fetch(resource(server, "/data.bin"), tmp_path)
    assert exc.value.failures == (f"{server.url('/data.bin')}: truncated: 5000 of 10240 bytes",)


def test_404(server: FileServer, tmp_path: Path) -> None:
    res = resource(server, "/missing.bin")
    with pytest.raises(DownloadError) as exc:
        fetch(res, tmp_path)
    assert exc.value.failures == (f"{res.url}: HTTP 404 Not Found",)
    assert str(exc.value) == f"downloading data.bin failed ({res.url}: HTTP 404 Not Found)"
    assert exc.value.hint == f"fetch {res.url} (md5 {res.md5}) by hand and put it in {tmp_path}"
    assert isinstance(exc.value, DataError)
    assert isinstance(exc.value, InterpscanError)
    assert exc.value.exit_code == 1  # a failed run: the same command works once the file is there
    assert leftovers(tmp_path) == []


def test_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on once this socket is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = Resource("data.bin", (f"http://127.0.0.1:{port}/data.bin",), "0" * 32, 1)
    with pytest.raises(DownloadError) as exc:
        fetch(res, tmp_path)
    assert exc.value.failures == (f"http://127.0.0.1:{port}/data.bin: Connection refused",)
    assert leftovers(tmp_path) == []


def test_unresolvable_host_fails_at_once(tmp_path: Path) -> None:
    # What offline looks like: name resolution fails (here by the loopback_only fixture).
    res = Resource("data.bin", ("https://www.cs.toronto.edu/~kriz/data.bin",), "0" * 32, 1)
    with pytest.raises(DownloadError) as exc:
        fetch(res, tmp_path)
    assert exc.value.failures == ("https://www.cs.toronto.edu/~kriz/data.bin: blocked in tests",)
    assert leftovers(tmp_path) == []


def test_mirrors_are_tried_in_order(server: FileServer, tmp_path: Path) -> None:
    server.routes["/b/data.bin"] = Route(body=PAYLOAD[:100], length=len(PAYLOAD))  # truncated
    server.routes["/c/data.bin"] = Route(body=PAYLOAD)
    path = fetch(resource(server, "/a/data.bin", "/b/data.bin", "/c/data.bin", "/d/data.bin"), tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert server.hits == ["/a/data.bin", "/b/data.bin", "/c/data.bin"]  # stops at the first good one
    assert leftovers(tmp_path) == ["data.bin"]


def test_every_mirror_failing_lists_each(server: FileServer, tmp_path: Path) -> None:
    server.routes["/b/data.bin"] = Route(body=bytes(len(PAYLOAD)))
    res = resource(server, "/a/data.bin", "/b/data.bin")
    with pytest.raises(DownloadError) as exc:
        fetch(res, tmp_path)
    assert [f.split(": ", 1)[0] for f in exc.value.failures] == list(res.urls)
    assert "HTTP 404" in exc.value.failures[0]
    assert "checksum mismatch" in exc.value.failures[1]


def test_existing_file_is_replaced_only_by_a_good_one(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(b"old")
    server.routes["/data.bin"] = Route(body=bytes(len(PAYLOAD)))
    with pytest.raises(DownloadError):
        fetch(resource(server, "/data.bin"), tmp_path)
    assert (tmp_path / "data.bin").read_bytes() == b"old"
    server.routes["/data.bin"] = Route(body=PAYLOAD)
    fetch(resource(server, "/data.bin"), tmp_path)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_interrupted_download_leaves_nothing(server: FileServer, tmp_path: Path) -> None:
    server.routes["/data.bin"] = Route(body=PAYLOAD)

    def interrupt(name: str, done: int, total: int) -> None:
        if done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fetch(resource(server, "/data.bin"), tmp_path, progress=interrupt)
    assert leftovers(tmp_path) == []


def test_md5sum_and_verify(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert md5sum(path) == "900150983cd24fb0d6963f7d28e17f72"  # RFC 1321's test vector for "abc"
    good = Resource("f", ("http://127.0.0.1/f",), "900150983cd24fb0d6963f7d28e17f72", 3)
    assert verify(path, good) is None
    assert verify(path, Resource("f", good.urls, good.md5, 4)) == "3 bytes, expected 4"
    assert verify(path, Resource("f", good.urls, "0" * 32, 3)) == f"md5 {good.md5}, expected {'0' * 32}"


# ----------------------------------------------------------------------------------- created_dirs


def fail_inside(directory: Path, write: str | None = None) -> None:
    """Enter created_dirs(directory), optionally write a file there, then fail."""
    with created_dirs(directory) as d:
        assert d.is_dir()
        if write:
            (d / write).write_bytes(b"verified")
        raise RuntimeError("failed inside")


def test_created_dirs_are_removed_on_failure(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="failed inside"):
        fail_inside(tmp_path / "a" / "b" / "c")
    assert leftovers(tmp_path) == []


def test_created_dirs_keep_what_existed_and_what_holds_files(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(RuntimeError):
        fail_inside(tmp_path / "a" / "b")
    assert (tmp_path / "a").is_dir()
    assert not (tmp_path / "a" / "b").exists()
    with pytest.raises(RuntimeError):
        fail_inside(tmp_path / "a" / "c" / "d", write="done.gz")  # a completed file is kept, with its folders
    assert (tmp_path / "a" / "c" / "d" / "done.gz").is_file()
    with created_dirs(tmp_path / "ok") as d:
        pass
    assert d.is_dir()


# ------------------------------------------------------------------------------------ extraction


def make_tar(path: Path, members: dict[str, bytes], *, mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_extract_folder(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "a.tar.gz", {"top/one": b"1", "top/sub/two": b"22", "other/three": b"333"})
    target = extract_folder(archive, "top", tmp_path)
    assert target == tmp_path / "top"
    assert (target / "one").read_bytes() == b"1"
    assert (target / "sub" / "two").read_bytes() == b"22"
    assert leftovers(tmp_path) == ["a.tar.gz", "top"]  # only the requested folder; no temporary folder


@pytest.mark.parametrize("name", ["top/../../evil", "/abs/evil"])
def test_unsafe_archive_is_refused(tmp_path: Path, name: str) -> None:
    archive = make_tar(tmp_path / "a.tar.gz", {"top/one": b"1", name: b"x"})
    with pytest.raises(DataError, match="refusing to extract"):
        extract_folder(archive, "top", tmp_path)
    assert leftovers(tmp_path) == ["a.tar.gz"]


def test_archive_links_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        link = tarfile.TarInfo("top/link")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(DataError, match="unsafe path or link"):
        extract_folder(archive, "top", tmp_path)
    assert leftovers(tmp_path) == ["a.tar.gz"]


def test_archive_without_the_folder(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "a.tar.gz", {"elsewhere/one": b"1"})
    with pytest.raises(DataError, match=r"no top/ folder inside"):
        extract_folder(archive, "top", tmp_path)
    assert leftovers(tmp_path) == ["a.tar.gz"]


def test_truncated_archive_leaves_nothing(tmp_path: Path) -> None:
    full = make_tar(tmp_path / "full.tar.gz", {"top/one": bytes(range(256)) * 400})
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(DataError, match="unreadable archive"):
        extract_folder(cut, "top", tmp_path)
    assert leftovers(tmp_path) == ["cut.tar.gz", "full.tar.gz"]


def test_existing_target_is_not_overwritten(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "a.tar.gz", {"top/one": b"1"})
    (tmp_path / "top").mkdir()
    (tmp_path / "top" / "mine").write_bytes(b"keep")
    with pytest.raises(DataError, match="already exists") as exc:
        extract_folder(archive, "top", tmp_path)
    assert exc.value.hint == f"it looks incomplete; remove {tmp_path / 'top'} and run again"
    assert leftovers(tmp_path / "top") == ["mine"]
    assert leftovers(tmp_path) == ["a.tar.gz", "top"]
