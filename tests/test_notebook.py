"""The example notebook executed in a real Jupyter kernel (nbclient), as a reader runs it: the scan's progress is
one output updated in place (not a line per update, not a widget), the result shows itself as a table, and the
figure is HTML that an exported notebook keeps."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import plotly.offline
import pytest
from nbclient import NotebookClient
from nbconvert import HTMLExporter

EXAMPLE = Path(__file__).parents[1] / "examples" / "notebook.ipynb"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> nbformat.NotebookNode:
    nb = nbformat.read(EXAMPLE, as_version=4)
    workdir = tmp_path_factory.mktemp("notebook")
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
    return nb


def _outputs(nb: nbformat.NotebookNode, source_start: str) -> list[dict]:  # type: ignore[type-arg]
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(source_start)]
    return list(cell.outputs)


def test_the_scan_shows_its_progress_once_as_one_line_updated_in_place(executed: nbformat.NotebookNode) -> None:
    outputs = _outputs(executed, "data = ")
    shown = [o for o in outputs if o.output_type == "display_data"]
    assert len(shown) == 1, outputs  # every update replaced the one output
    text = shown[0].data["text/plain"]
    # its final state: every evaluation done: 11 points × (4 batches of the 1,000 test images + the 2 batches
    # of 256 training images that re-estimate each point's batch-norm statistics)
    assert text.startswith("scanning: 66/66 point×batch, "), text
    assert "ETA" not in text
    assert '<progress value="66" max="66">' in shown[0].data["text/html"]
    assert not [o for o in outputs if o.output_type == "stream"], outputs  # nothing printed besides


def test_the_result_shows_itself_as_its_summary(executed: nbformat.NotebookNode) -> None:
    (result,) = [o for o in _outputs(executed, "data = ") if o.output_type == "execute_result"]
    page = result.data["text/html"]
    assert "<b>ScanResult</b>: " in page
    assert "summary.csv" in page
    assert "barrier_linear" in page
    assert "<table" in page
    assert result.data["text/plain"].startswith("<ScanResult: ")
    assert "splits test" in result.data["text/plain"]


def test_the_figure_is_html_that_an_export_keeps(executed: nbformat.NotebookNode) -> None:
    (figure,) = _outputs(executed, "result.show()")
    html = figure.data["text/html"]
    assert 'class="plotly-graph-div"' in html
    assert "application/vnd.plotly.v1+json" not in figure.data  # not a format that exports drop
    plotlyjs = plotly.offline.get_plotlyjs()
    assert plotlyjs[:2000] in html  # plotly.js inline: the figure draws offline, in a saved file too
    exported, _ = HTMLExporter().from_notebook_node(executed)
    assert 'class="plotly-graph-div"' in exported
    assert exported.count("scanning: 66/66 point×batch") == 1
    # the notebook's size: plotly.js once, plus the figure, the table and one progress line
    size = len(json.dumps(executed))
    assert size < len(plotlyjs) + 400_000, size
