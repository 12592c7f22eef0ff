"""interpscan.report's page of several sections (render_report)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import pytest
from old_runs import manifest

from interpscan.errors import UsageError
from interpscan.report import Section, render_report, table_html


def _figure() -> go.Figure:
    return go.Figure(go.Scatter(x=[0.0, 1.0], y=[2.3, 0.3]))


def test_sections_come_in_order_each_with_its_text_figures_and_tables() -> None:
    table = table_html(pd.DataFrame({"run": ["a"], "loss": [0.25]}), table_id="t1")
    page = render_report(
        title="T <1>",
        sections=[
            Section("first", notes=["why & how"], figures=[("f1", _figure().update_layout(title_text="F <1>"))]),
            Section("second", figures=[("f2", _figure())], tables=[("numbers", table)]),
        ],
        notes=["top note"],
        manifests=[("run.json", manifest())],
        plotlyjs="cdn",
    )
    order = [
        page.index(s)
        for s in (
            "<h1>T &lt;1&gt;</h1>",
            "top note",
            "<h2>first</h2>",
            "why &amp; how",
            "<h3>F &lt;1&gt;</h3>",
            'id="f1"',
            "<h2>second</h2>",
            'id="f2"',
            "<h3>numbers</h3>",
            'id="t1"',
            "How these numbers were made",
            "&quot;policy&quot;: &quot;recompute&quot;",
        )
    ]
    assert order == sorted(order)
    assert page.count("<footer>") == 1
    assert page.count("<h3>") == 2  # the titled figure's and the table's; f2 has no title
    assert "cdn.plot.ly" in page


def test_a_figure_id_used_twice_is_refused() -> None:
    sections = [Section("a", figures=[("same", _figure())]), Section("b", figures=[("same", _figure())])]
    with pytest.raises(UsageError, match="figure ids used twice on one page: same"):
        render_report(title="t", sections=sections)
