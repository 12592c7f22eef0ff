"""Bad inputs to `interpscan plot` and `interpscan compare`: damaged or partial run directories, foreign files where
a run belongs, and outputs that would land on an input. Each case says what is wrong in one line and leaves the runs
as they were.

The runs are scanned here through the library (a ``cnn width=2`` on 8 in-memory images) and broken by code.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .case import OUT, Case, good_state

TITLE = "Plot and compare inputs"
NAMES = (
    "plot-out-over-results",
    "plot-out-over-summary",
    "results-cut-mid-row",
    "results-cut-at-row",
    "results-cut-in-last-field",
    "results-header-only",
    "results-text-in-loss",
    "results-fractional-n",
    "results-duplicate-row",
    "results-mixed-grids",
    "results-n-differs",
    "checkpoint-as-results",
    "binary-as-results",
    "empty-results",
    "utf16-results",
    "csv-of-other-columns",
    "summary-as-results",
    "run-json-as-results",
    "directory-without-results",
    "interrupted-run",
    "fifo-as-results",
    "results-huge-field",
    "run-json-a-list",
    "run-json-not-json",
    "run-json-nested-deep",
    "run-json-grid-of-text",
    "summary-of-another-run",
    "summary-monotone-text",
    "plot-out-under-a-file",
    "plot-label-newline",
    "plot-nan-run",
    "compare-out-is-an-input",
    "compare-without-summary",
    "compare-run-json-bn-text",
    "compare-split-newline",
)


def _scan(final: dict[str, torch.Tensor], **options: Any) -> Any:
    """A real run through the library: cnn width=2, 5 α, 8 images."""
    import interpscan
    from interpscan.models import CNN

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 1, 28, 28, generator=gen), torch.randint(0, 10, (8,), generator=gen)
    return interpscan.scan(CNN(width=2), good_state(0), final, (x, y), alphas=5, bn="interpolate", **options)


def build(root: Path) -> list[Case]:
    """Write the runs (a good one, a grouped one, one with NaN losses) and their broken copies into ``root``."""
    run = root / "run"
    _scan(good_state(1)).save(run, html=False)
    grouped = root / "grouped"
    _scan(good_state(1), groups=["conv*", "fc"]).save(grouped, html=False)
    nan_final = good_state(1)
    nan_final["fc.weight"][0, :3] = float("nan")  # class 0's logit is NaN: every loss is NaN
    nan_run = root / "nan-run"
    _scan(nan_final).save(nan_run, html=False)
    results_text = (run / "results.csv").read_text()
    lines = results_text.splitlines(keepends=True)
    cases: list[Case] = []

    def copy(name: str, **files: str | bytes) -> Path:
        """A copy of the good run with some files replaced (file name -> content; b"" deletes it)."""
        target = root / name
        shutil.copytree(run, target)
        for file, content in files.items():
            path = target / file.replace("_", ".", 1)
            if content == b"":
                path.unlink()
            elif isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        return target

    def write(name: str, data: bytes) -> Path:
        path = root / name
        path.write_bytes(data)
        return path

    def plot(name: str, description: str, target: Path | str, error: str, *extra: str, **kw: Any) -> None:
        args = ("plot", str(target), *extra) if "--out" in extra else ("plot", str(target), *extra, "--out", OUT)
        cases.append(Case(name, description, args, kw.pop("exit_code", 2), error, **kw))

    def rows(*numbers: int) -> str:
        return lines[0] + "".join(lines[i] for i in numbers)

    def with_field(line: int, column: int, value: str) -> str:
        """results.csv with one cell replaced."""
        fields = lines[line].rstrip("\n").split(",")
        fields[column] = value
        return "".join(",".join(fields) + "\n" if k == line else ln for k, ln in enumerate(lines))

    # -- an output that would land on an input: refused, --force or not
    plot(
        "plot-out-over-results",
        "--out names the input's own results.csv, with --force",
        run / "results.csv",
        "is results.csv of the input run",
        "--out",
        str(run / "results.csv"),
        "--force",
        keep=(run,),
    )
    plot(
        "plot-out-over-summary",
        "--out names the summary.csv of the input run directory, with --force",
        run,
        "is summary.csv of the input run",
        "--out",
        str(run / "summary.csv"),
        "--force",
        keep=(run,),
    )

    # -- partial and damaged results.csv
    cut = copy("cut-mid-row", results_csv=results_text[: len(results_text) - len(lines[-1]) // 2])
    plot("results-cut-mid-row", "results.csv cut in the middle of its last row", cut, "(the file is cut short)")
    short = copy("cut-at-row", results_csv="".join(lines[:-2]))
    plot(
        "results-cut-at-row",
        "results.csv missing its last two rows, cut at a line end",
        short,
        "3 α values per curve where run.json lists 5",
    )
    cut_field = (grouped / "results.csv").read_text().rstrip("\n")[:-1]  # its last field: mode, "only"
    plot(
        "results-cut-in-last-field",
        "a grouped run's results.csv cut inside its last field (no newline)",
        copy("cut-last-field", results_csv=cut_field, run_json=b"", summary_csv=b""),
        "ends in the middle of line 21",
    )
    plot(
        "results-header-only",
        "results.csv with its header and no rows",
        copy("header", results_csv=lines[0]),
        "no rows",
    )
    plot(
        "results-text-in-loss",
        "the text 'abc' in the loss column",
        copy("text-loss", results_csv=with_field(2, 3, "abc")),
        "line 3, column loss: 'abc' is not a number",
    )
    plot(
        "results-fractional-n",
        "n = 8.5 examples",
        copy("fractional-n", results_csv=with_field(1, 6, "8.5")),
        "line 2, column n: '8.5' is not a whole number",
    )
    plot(
        "results-duplicate-row",
        "a row repeated",
        copy("duplicate", results_csv=rows(1, 2, 2, 3, 4, 5)),
        "α=0.25 of curve all on test appears twice (lines 3, 4)",
    )
    train_rows = "".join(ln.replace(",test,", ",train,") for ln in (lines[1], lines[3], lines[5]))
    plot(
        "results-mixed-grids",
        "a second split on 3 α where the first has 5",
        copy("mixed", results_csv=results_text + train_rows, run_json=b""),
        "curve all on train has 3 α values, curve all on test 5",
    )
    plot(
        "results-n-differs",
        "one row counts 7 examples, the others 8",
        copy("n-differs", results_csv=with_field(3, 6, "7")),
        "split test has rows of 8 and of 7 examples",
    )

    # -- foreign files where a results.csv belongs
    torch.save(good_state(0), root / "good.pt")
    plot("checkpoint-as-results", "a checkpoint", root / "good.pt", "a zip archive (a checkpoint?), not a text file")
    rng = np.random.default_rng(0)
    plot("binary-as-results", "4 KiB of random bytes", write("random.csv", rng.bytes(4096)), "binary data")
    plot("empty-results", "a file of 0 bytes", write("empty.csv", b""), "the file is empty")
    plot("utf16-results", "results.csv saved as UTF-16", write("utf16.csv", results_text.encode("utf-16")), "UTF-16")
    plot(
        "csv-of-other-columns",
        "a CSV of other columns (a training log)",
        write("log.csv", b"epoch,lr,train_loss\n0,0.1,2.3\n1,0.1,1.9\n"),
        "not a results.csv: it lacks column(s) curve, split, alpha",
    )
    plot("summary-as-results", "the run's summary.csv", run / "summary.csv", "a run's summary.csv, not its results.csv")
    plot("run-json-as-results", "the run's run.json", run / "run.json", "JSON, not a CSV file")
    (root / "notes").mkdir()
    (root / "notes" / "README.md").write_text("results to follow\n")
    plot("directory-without-results", "a directory with no results.csv", root / "notes", "results file not found")
    (root / "interrupted").mkdir()
    (root / "interrupted" / ".interpscan-partial.pt").write_bytes(b"partial")
    plot("interrupted-run", "an interrupted run's directory", root / "interrupted", "holds an interrupted scan")
    os.mkfifo(root / "fifo.csv")
    plot("fifo-as-results", "a named pipe (reading it would wait forever)", root / "fifo.csv", "not a regular file")
    huge = lines[0] + "x" * 200_000 + lines[1][3:]
    plot(
        "results-huge-field",
        "a curve name of 200,000 characters",
        copy("huge-field", results_csv=huge, run_json=b""),
        "field larger than field limit",
    )

    # -- run.json and summary.csv beside the results
    plot("run-json-a-list", "run.json holds a JSON list", copy("json-list", run_json="[1, 2]\n"), "a JSON list")
    manifest = (run / "run.json").read_text()
    # cut where a key starts, so that the error's line and column do not move with the lengths of the values
    # (timings, paths)
    cut = manifest.index('\n  "checkpoints"') + 1
    plot(
        "run-json-not-json",
        "run.json cut short (at its checkpoints)",
        copy("json-cut", run_json=manifest[:cut]),
        "run.json: not JSON",
    )
    plot(
        "run-json-nested-deep",
        "run.json of 100,000 nested lists",
        copy("json-deep", run_json="[" * 100_000 + "]" * 100_000),
        "nested too deeply",
    )
    grid_text = json.dumps({**json.loads(manifest), "grid": {"alphas": ["a", "b"]}})
    plot(
        "run-json-grid-of-text",
        "run.json's grid.alphas is a list of strings",
        copy("json-grid", run_json=grid_text),
        'grid.alphas[0] is "a", expected a number',
    )
    plot(
        "summary-of-another-run",
        "summary.csv of a grouped run beside the results of a whole-network one",
        copy("other-summary", summary_csv=(grouped / "summary.csv").read_text()),
        "curve conv1 on test, which results.csv lacks",
    )
    summary = (run / "summary.csv").read_text().splitlines(keepends=True)
    fields = summary[1].split(",")
    fields[5] = "maybe"
    plot(
        "summary-monotone-text",
        "monotone = 'maybe' in summary.csv",
        copy("monotone", summary_csv=summary[0] + ",".join(fields)),
        "column monotone: 'maybe' is not True or False",
    )

    # -- where the page goes; a run whose losses are all NaN still gets its page
    plot(
        "plot-out-under-a-file",
        "--out inside a path whose parent is a file",
        run,
        "good.pt is a file, not a directory",
        "--out",
        str(root / "good.pt" / "page.html"),
        keep=(root / "good.pt",),
    )
    plot("plot-label-newline", "--label holding a newline", run, "holds the control character '\\n'", "--label", "a\nb")
    page = str(root / "nan-page.html")
    plot("plot-nan-run", "a run whose every loss is NaN", nan_run, "", "--out", page, "--force", exit_code=0)

    # -- compare
    other = root / "other-run"
    _scan(good_state(2)).save(other, html=False)
    cases.append(
        Case(
            "compare-out-is-an-input",
            "--out names one of the compared runs, with --force",
            ("compare", str(run), str(other), "--out", str(run), "--force"),
            2,
            "holds a run (results.csv, summary.csv, run.json)",
            keep=(run,),
        )
    )
    cases.append(
        Case(
            "compare-without-summary",
            "a run directory without summary.csv",
            ("compare", str(run), str(copy("no-summary", summary_csv=b"")), "--out", OUT),
            2,
            "no summary.csv beside",
        )
    )
    bn_text = json.dumps({**json.loads(manifest), "bn": "interpolate"})
    cases.append(
        Case(
            "compare-run-json-bn-text",
            'run.json whose "bn" is a string, not an object',
            ("compare", str(run), str(copy("bn-text", run_json=bn_text)), "--out", OUT),
            2,
            'bn is "interpolate", expected an object',
        )
    )
    cases.append(
        Case(
            "compare-split-newline",
            "--split holding a newline",
            ("compare", str(run), str(other), "--split", "te\nst", "--out", OUT),
            2,
            "holds the control character",
        )
    )
    return cases
