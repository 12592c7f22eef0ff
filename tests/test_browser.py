"""The pages `interpscan plot` and `compare` write, opened in a real browser: headless Chromium with the network
off, driven over the DevTools protocol (on a pipe, no extra dependency). Plotly must draw every visible trace,
nothing may log an error or ask the network for anything, and the screenshot must not be blank.

Skipped when no Chromium is installed (`apt-get install chromium`); `.ci/run` installs it and sets
INTERPSCAN_REQUIRE_BROWSER=1, which turns the skip into a failure. INTERPSCAN_SCREENSHOTS=DIR opens all three
plane pages (else the plane through three checkpoints alone) and saves a full-size screenshot of each there
(plane-checkpoints.png, plane-directions.png, plane-trajectory.png), taken after a click on "log loss".
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import math
import os
import select
import shutil
import struct
import subprocess
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import run_cli

from interpscan.metrics import summarize_curve

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
REQUIRED = bool(os.environ.get("INTERPSCAN_REQUIRE_BROWSER"))
SCREENSHOTS = os.environ.get("INTERPSCAN_SCREENSHOTS")  # a folder for the plane pages' screenshots


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        find_browser() is None and not REQUIRED,
        reason="needs Chromium (apt-get install chromium); INTERPSCAN_REQUIRE_BROWSER=1 makes this a failure",
    ),
]

# Flags that work in a container without a display or a GPU; the network is cut twice more below (an offline
# proxy here, Network.emulateNetworkConditions per page).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
    "--proxy-server=127.0.0.1:9",  # the discard port: anything that bypasses the offline emulation fails too
    "--proxy-bypass-list=<-loopback>",
    "--remote-debugging-pipe",
)


class Browser:
    """Headless Chromium driven over --remote-debugging-pipe: commands on its fd 3, replies and events on fd 4,
    each message JSON followed by a NUL byte."""

    def __init__(self, executable: str, profile: Path) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def as_fds_3_and_4() -> None:
            # Copy both ends above any fd they might collide with, then put them where Chromium expects them.
            a = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            close_fds=False,  # our pipe ends are close-on-exec anyway; fds 3 and 4 (dup2'd) are not
            preexec_fn=as_fds_3_and_4,  # single-threaded here; the way to place fds 3 and 4
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Send one command and wait for its reply; events that arrive meanwhile go to ``self.events``."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(timeout=30.0)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)

    def wait_for(self, method: str, *, session: str, since: int = 0, timeout: float = 30.0) -> dict[str, Any]:
        """The first event ``method`` of ``session`` from ``self.events[since:]`` on, waiting for it if need be."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events[since:]:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            since = len(self.events)
            self.events.append(self._read(timeout=max(deadline - time.monotonic(), 0.01)))

    def _read(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_child], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(f"no message from the browser within {timeout:.0f} s")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                stderr = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"the browser closed the pipe; its stderr:\n{stderr[-2000:]}")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        parsed: dict[str, Any] = json.loads(message)
        return parsed

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_child)
        os.close(self._from_child)
        if self.process.stderr:
            self.process.stderr.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = find_browser()
    if executable is None:
        pytest.fail("INTERPSCAN_REQUIRE_BROWSER is set, but no Chromium is installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="interpscan-chromium-") as profile:
        b = Browser(executable, Path(profile))
        try:
            yield b
        finally:
            b.close()


# What each figure div on the page holds, once Plotly has drawn it: traces in its data, visible traces, and
# the trace groups and heatmap images in the SVG.
COUNT_TRACES = """
(() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => ({
    id: gd.id,
    data: gd.data.length,
    visibleScatter: gd.data.filter(t => t.visible !== false && t.type === 'scatter').length,
    visibleHeatmap: gd.data.filter(t => t.visible !== false && t.type === 'heatmap').length,
    drawnScatter: gd.querySelectorAll('.scatterlayer .trace').length,
    drawnHeatmap: gd.querySelectorAll('.heatmaplayer .hm').length,
})))()
"""


@dataclass(frozen=True)
class Visit:
    """What one page did in the browser."""

    counts: list[dict[str, Any]]  # COUNT_TRACES per figure div
    errors: list[str]  # uncaught exceptions, console.error/assert, and log entries of level error
    requests: list[str]  # every URL the page asked for
    screenshot: bytes  # PNG of the first figure, at a quarter of its size
    hover_labels: int  # hover label groups drawn after the mouse moved over the first panel
    script_result: Any  # what ``script`` returned, run once the figures are drawn


def visit(
    browser: Browser, page: Path, *, settle_s: float = 20.0, script: str | None = None, scale: float = 0.25
) -> Visit:
    """Open ``page`` offline in a fresh tab, wait until Plotly has drawn (or ``settle_s`` passed), run
    ``script``, hover the first panel, take a screenshot (at ``scale`` of the figure's size), and report what
    happened."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    first_event = len(browser.events)
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.send(f"{domain}.enable", session=session)
    browser.send(
        "Network.emulateNetworkConditions",
        {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        session,
    )
    browser.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
        session,
    )
    navigating = len(browser.events)
    browser.send("Page.navigate", {"url": page.as_uri()}, session)
    browser.wait_for("Page.loadEventFired", session=session, since=navigating, timeout=max(30.0, settle_s))

    def evaluate(expression: str) -> Any:
        reply = browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
        return reply["result"].get("value")

    # Plotly draws asynchronously after load: poll until every visible trace is in the SVG, or give up.
    deadline = time.monotonic() + settle_s
    counts: list[dict[str, Any]] = evaluate(COUNT_TRACES)
    while time.monotonic() < deadline and not (counts and all(_drawn(c) for c in counts)):
        time.sleep(0.2)
        counts = evaluate(COUNT_TRACES)

    script_result = evaluate(script) if script is not None else None
    hover_labels = 0
    box = evaluate(
        "(() => { const p = document.querySelector('.js-plotly-plot .nsewdrag');"
        " if (!p) return null; const r = p.getBoundingClientRect();"
        " return {x: r.x + r.width * 0.6, y: r.y + r.height * 0.5}; })()"
    )
    if box is not None:
        browser.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": box["x"], "y": box["y"]}, session)
        time.sleep(0.5)
        hover_labels = evaluate("document.querySelectorAll('.js-plotly-plot .hoverlayer > g').length")
    rect = evaluate(
        "(() => { const d = document.querySelector('.js-plotly-plot') || document.body;"
        " const r = d.getBoundingClientRect();"
        " return {x: r.x + window.scrollX, y: r.y + window.scrollY, width: r.width, height: r.height}; })()"
    )
    shot = browser.send(
        "Page.captureScreenshot",
        {"format": "png", "clip": {**rect, "scale": scale}, "captureBeyondViewport": True},
        session,
    )

    errors, requests = [], []
    for event in browser.events[first_event:]:
        if event.get("sessionId") != session:
            continue
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            errors.append(str(details.get("exception", {}).get("description") or details.get("text")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            errors.append(f"{params['entry'].get('text')} ({params['entry'].get('url', '')})")
        elif method == "Network.requestWillBeSent":
            requests.append(params["request"]["url"])
    browser.send("Target.closeTarget", {"targetId": target})
    return Visit(counts, errors, requests, base64.b64decode(shot["data"]), hover_labels, script_result)


def _drawn(count: dict[str, Any]) -> bool:
    return bool(
        count["visibleScatter"] + count["visibleHeatmap"] > 0
        and count["drawnScatter"] == count["visibleScatter"]
        and count["drawnHeatmap"] == count["visibleHeatmap"]
    )


# --- a PNG decoder small enough to trust: 8-bit RGB or RGBA, not interlaced (what Chromium writes) -----------


def decode_png(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, channels, raw pixel bytes, row by row) of an 8-bit RGB/RGBA PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or colour not in (2, 6) or interlace != 0:
                raise ValueError(f"PNG with bit depth {depth}, colour type {colour}, interlace {interlace}")
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride = width * channels
    out = bytearray(stride * height)
    prev = bytearray(stride)
    for y in range(height):
        kind, row = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            a = row[x - channels] if x >= channels else 0
            b = prev[x]
            c = prev[x - channels] if x >= channels else 0
            if kind == 1:
                row[x] = (row[x] + a) & 0xFF
            elif kind == 2:
                row[x] = (row[x] + b) & 0xFF
            elif kind == 3:
                row[x] = (row[x] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[x] = (row[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        out[y * stride : (y + 1) * stride] = row
        prev = row
    return width, height, channels, bytes(out)


def ink(png: bytes) -> tuple[float, int]:
    """(fraction of pixels that are not near-white, number of distinct colours) of a PNG."""
    width, height, channels, pixels = decode_png(png)
    colours, inked = set(), 0
    for i in range(0, len(pixels), channels):
        r, g, b = pixels[i], pixels[i + 1], pixels[i + 2]
        colours.add((r, g, b))
        inked += min(r, g, b) < 235
    return inked / (width * height), len(colours)


# --- the pages under test ------------------------------------------------------------------------------------

ALPHAS = [i / 10 for i in range(11)]
LOCAL = ("file:", "data:", "blob:")  # the page itself, and the images Plotly makes in memory (heatmaps)


def _curve(start: float, end: float, cliff: float) -> list[float]:
    """A loss that sits near ``start`` and falls to ``end`` around α = ``cliff``: a smooth step."""
    return [end + (start - end) / (1 + math.exp((a - cliff) / 0.06)) for a in ALPHAS]


def write_run(directory: Path, wd: str, cliff: float, policy: str = "recompute") -> Path:
    """A run directory as `interpscan run --groups` writes it: two splits, the whole network and two groups."""
    import old_runs

    from interpscan.results import ScanResult
    from interpscan.rundir import write_outputs

    rows, summary = [], []
    curves = {"all": (2.3, 0.4), "layer1": (5.5, 0.4), "fc": (2.0, 0.4)}
    for curve, (start, end) in curves.items():
        for split, offset in (("train", -0.05), ("test", 0.0)):
            loss = [v + offset for v in _curve(start, end, cliff if curve == "all" else cliff / 2)]
            acc = [max(0.1, min(0.95, 1.0 - v / 2.5)) for v in loss]
            hold, mode = ("", "") if curve == "all" else ("final", "only")
            rows += [
                {
                    "curve": curve,
                    "split": split,
                    "alpha": a,
                    "loss": v,
                    "loss_se": 0.03,
                    "accuracy": p,
                    "n": 1000,
                    "hold": hold,
                    "mode": mode,
                }
                for a, v, p in zip(ALPHAS, loss, acc, strict=True)
            ]
            m = summarize_curve(ALPHAS, loss, acc)
            summary.append(
                {
                    "curve": curve,
                    "split": split,
                    **m.to_dict(),
                    "distance": 8.0 + cliff,
                    "relative_distance": 0.5,
                    "cosine": 0.9,
                    "hold": hold,
                    "mode": mode,
                }
            )
    base = old_runs.manifest()  # a cnn on fashion-mnist-small, train and test: this run's final checkpoint and grid
    manifest = old_runs.manifest(
        checkpoints=replace(base.checkpoints, final=replace(base.checkpoints.final, path=f"runs/{wd}/final.pt")),
        bn=replace(base.bn, policy=policy),
        grid=replace(base.grid, alphas=tuple(ALPHAS)),
    )
    directory.mkdir(parents=True)
    write_outputs(ScanResult(pd.DataFrame(rows), pd.DataFrame(summary), manifest), directory, html=False)
    return directory


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("runs")
    return [write_run(root / wd / "scan", wd, cliff) for wd, cliff in (("wd0", 0.3), ("wd5e-4", 0.6), ("wd5e-3", 0.9))]


# Click the summary table's loss_start header twice; the column's values after each click.
SORT_BY_LOSS_START = """
(() => {
    const table = document.getElementById('summary');
    const headers = Array.from(table.tHead.rows[0].cells);
    const col = headers.findIndex(h => h.textContent === 'loss_start');
    const values = () => Array.from(table.tBodies[0].rows).map(r => Number(r.cells[col].getAttribute('data-value')));
    headers[col].click();
    const up = values();
    headers[col].click();
    return {up: up, down: values(), aria: headers[col].getAttribute('aria-sort')};
})()
"""


def test_plot_page_draws_every_trace_offline(
    browser: Browser,
    runs: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    page = tmp_path / "plot.html"
    code, err = run_cli(monkeypatch, capsys, "plot", *map(str, runs), "--out", str(page))
    assert code == 0, err
    from interpscan.report import path_page
    from interpscan.results import load_runs

    _, fig = path_page(load_runs(runs))
    expected = fig.to_dict()["data"]
    visible = [t for t in expected if t.get("visible", True) is not False]

    seen = visit(browser, page, script=SORT_BY_LOSS_START)
    assert seen.errors == []
    assert all(url.startswith(LOCAL) for url in seen.requests), seen.requests
    # the summary table sorts by a column on a click, and the other way round on a second one
    assert seen.script_result["up"] == sorted(seen.script_result["up"])
    assert seen.script_result["down"] == sorted(seen.script_result["up"], reverse=True)
    assert len(seen.script_result["up"]) == 3 * 3 * 2  # runs × curves × splits
    assert seen.script_result["aria"] == "descending"
    (count,) = seen.counts
    assert count["id"] == "interpscan-path"
    assert count["data"] == len(expected)
    # three runs × two splits of lines, bands, endpoints and Δ markers, one run's group rows and heatmap
    assert count["drawnScatter"] == sum(t["type"] == "scatter" for t in visible) == count["visibleScatter"]
    assert count["drawnHeatmap"] == sum(t["type"] == "heatmap" for t in visible) == 1
    assert seen.hover_labels >= 1  # the hover (linked across panels) drew its labels without an error
    share, colours = ink(seen.screenshot)
    assert share > 0.03, f"the figure is almost blank: {share:.1%} of pixels inked"
    assert colours > 50


def test_compare_page_draws_every_trace_offline(
    browser: Browser,
    runs: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "cmp"
    code, err = run_cli(monkeypatch, capsys, "compare", *map(str, runs), "--out", str(out))
    assert code == 0, err
    seen = visit(browser, out / "compare.html")
    assert seen.errors == []
    assert all(url.startswith(LOCAL) for url in seen.requests), seen.requests
    (count,) = seen.counts
    assert count["id"] == "interpscan-compare"
    assert count["drawnScatter"] == count["visibleScatter"] == count["data"] > 0
    share, _ = ink(seen.screenshot)
    assert share > 0.01


def test_the_network_is_really_off(
    browser: Browser,
    runs: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A page that loads plotly.js from the CDN draws nothing here: proof the other pages drew offline."""
    page = tmp_path / "cdn.html"
    code, err = run_cli(monkeypatch, capsys, "plot", str(runs[0]), "--out", str(page), "--plotlyjs", "cdn")
    assert code == 0, err
    seen = visit(browser, page, settle_s=2.0)
    assert any(url.startswith("https://cdn.plot.ly/") for url in seen.requests)
    assert seen.counts == []  # Plotly never loaded, so no figure div became a plot
    assert any("Plotly is not defined" in e for e in seen.errors), seen.errors


# What a plane page drew: its filled contours (SVG paths per level), a WebGL canvas per 3-D surface, and the loss
# colour scale before and after a click on the "log loss" button.
PLANE_DRAWN = """
(() => {
    const gd = document.getElementById('interpscan-plane');
    const contour = gd.data.findIndex(t => t.meta.role === 'loss-contour');
    const before = {cmax: gd._fullLayout.coloraxis.cmax, z: gd.data[contour].z[0][0]};
    const button = Array.from(gd.querySelectorAll('.updatemenu-button')).find(b => b.textContent === 'log loss');
    button.dispatchEvent(new MouseEvent('click', {bubbles: true}));
    return {
        contourPaths: gd.querySelectorAll('.contourlayer path').length,
        glCanvases: gd.querySelectorAll('.gl-container canvas').length,
        scenes: Object.keys(gd._fullLayout).filter(k => /^scene[0-9]*$/.test(k)).length,
        lossAxes: gd._fullData.filter(t => t.coloraxis === 'coloraxis').length,
        before: before,
        after: {cmax: gd._fullLayout.coloraxis.cmax, z: gd.data[contour].z[0][0]},
        labels: Array.from(gd.querySelectorAll('.scatterlayer .textpoint text')).map(t => t.textContent),
    };
})()
"""


@pytest.mark.parametrize(
    "kind",
    [
        "checkpoints",
        # the same code draws these two (one marker, or a path through projections): opened only for screenshots,
        # each page costs seconds of a headless browser's software WebGL
        *(
            pytest.param(kind, marks=pytest.mark.skipif(not SCREENSHOTS, reason="with INTERPSCAN_SCREENSHOTS only"))
            for kind in ("directions", "trajectory")
        ),
    ],
)
def test_plane_pages_draw_offline(
    browser: Browser, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from plane_runs import CHECKPOINTS, bowl, plane_rows, plane_section, write_plane_run

    checkpoints = {
        "checkpoints": CHECKPOINTS,
        "directions": [(0.0, 0.0)],
        "trajectory": [(-0.8, 1.5), (-0.2, 1.1), (0.3, 0.4), (0.9, 0.1), (0.0, 0.0)],
    }[kind]
    trajectory = kind == "trajectory"
    rows = plane_rows(checkpoints, evaluated=[len(checkpoints) - 1] if trajectory else None)  # its origin alone
    extra: dict[str, Any] = {"on_plane": [4], "explained_variance_ratio": [0.71, 0.18]} if trajectory else {}
    run = write_plane_run(tmp_path / kind, rows, plane_section(kind, checkpoints, **extra))
    code, err = run_cli(monkeypatch, capsys, "plot", str(run))
    assert code == 0, err
    # settle_s: software WebGL draws the two surfaces before the load event; on a loaded machine that took 21 s
    seen = visit(browser, run / "results.html", script=PLANE_DRAWN, scale=1.0 if SCREENSHOTS else 0.25, settle_s=60.0)
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        (Path(SCREENSHOTS) / f"plane-{kind}.png").write_bytes(seen.screenshot)
    assert seen.errors == []
    assert all(url.startswith(LOCAL) for url in seen.requests), seen.requests
    (count,) = seen.counts
    marks = 2 if len(checkpoints) > 1 else 1  # the path between checkpoints, their markers
    assert count["drawnScatter"] == count["visibleScatter"] == marks * 2 * 2  # × 2 panels × 2 splits
    drawn = seen.script_result
    assert drawn["scenes"] == 2  # a 3-D surface per split ...
    assert drawn["glCanvases"] >= 1  # ... drawn with WebGL
    assert drawn["contourPaths"] > 20  # the filled levels of four contours
    assert drawn["lossAxes"] == 2  # both loss contours on the one shared colour scale, not dropped by Plotly
    assert drawn["before"]["z"] == pytest.approx(bowl(-1.0, -1.0))
    assert drawn["after"]["z"] == pytest.approx(math.log10(bowl(-1.0, -1.0)))  # the log button worked
    assert drawn["after"]["cmax"] == pytest.approx(math.log10(drawn["before"]["cmax"]))
    assert drawn["labels"].count("c0") == 4  # every contour marks the checkpoints
    assert drawn["labels"].count(f"c{len(checkpoints) - 1}") == 4
    share, colours = ink(seen.screenshot)
    assert share > 0.2, f"the figure is almost blank: {share:.1%} of pixels inked"
    assert colours > 100
