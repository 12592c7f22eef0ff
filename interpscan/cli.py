"""The command line: thin commands that parse flags, call the library, and render results on stderr.

This is the only module that imports typer and renders with rich, and the one place where InterpscanError is
caught (in ``main``). torch, pandas and plotly are imported inside commands so that ``--help`` is instant.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from . import __version__
from .errors import InterpscanError

if TYPE_CHECKING:
    from .engine import Progress

err = Console(stderr=True, highlight=False, markup=False)

app = typer.Typer(
    name="interpscan",
    help="Loss and accuracy along the straight line between two checkpoints, θ(α) = (1−α)·θ_init + α·θ_final.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"interpscan {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Evaluate a network along the straight line between two checkpoints: whole, or one group at a time."""


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Progress | None]:
    """A rich progress bar over (point, batch) evaluations, on stderr.

    It starts at the first report, i.e. once the inputs have been checked, so an early error prints alone.
    """
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    bar = Bar(
        TextColumn("scanning", style="bold"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("point×batch"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    task = bar.add_task("scan", total=None)

    def advance(n: int, total: int) -> None:
        if not bar.live.is_started:
            bar.start()
        bar.update(task, advance=n, total=total)

    try:
        yield advance
    finally:
        if bar.live.is_started:
            bar.stop()


def _print_wide(renderable: Any) -> None:
    """Print on stderr at the terminal's width, or at 160 columns when stderr is a file or a pipe."""
    console = err if err.is_terminal else Console(stderr=True, highlight=False, markup=False, width=160)
    console.print(renderable)


def _fmt(v: Any) -> str:
    return "nan" if v != v else f"{v:.4g}"


def _summary_table(summary: Any, title: str) -> None:
    """The summary on stderr: per split, the whole network first, then groups ranked by L(0) (the loss with
    the group rewound), with each group's rank by Δ beside it."""
    from rich.table import Table

    grouped = bool((summary["curve"] != "all").any())
    table = Table(title=title, title_justify="left", header_style="bold")
    columns = ["curve", "split", "L(0)", "L(1)", "Δ", "monotone", "B_lin @α", "B_max @α"]
    if grouped:
        columns += ["rank L(0)", "rank Δ"]
    for col in columns:
        table.add_column(col, justify="left" if col in ("curve", "split", "monotone") else "right", no_wrap=True)
    for split, rows in summary.groupby("split", sort=False):
        whole = rows[rows["curve"] == "all"]
        groups = rows[rows["curve"] != "all"].sort_values("loss_start", ascending=False, na_position="last")
        by_delta = groups["delta"].rank(ascending=False, method="min")
        for i, row in enumerate([*whole.itertuples(index=False), *groups.itertuples(index=False)]):
            mono = "—" if row.monotone is None or row.monotone != row.monotone else ("yes" if row.monotone else "no")
            cells = [
                str(row.curve),
                str(split),
                _fmt(row.loss_start),
                _fmt(row.loss_end),
                _fmt(row.delta),
                mono,
                f"{_fmt(row.barrier_linear)} @{_fmt(row.barrier_linear_alpha)}",
                f"{_fmt(row.barrier_max)} @{_fmt(row.barrier_max_alpha)}",
            ]
            if grouped:
                is_group = row.curve != "all"
                rank_delta = by_delta.iloc[i - len(whole)] if is_group else float("nan")
                cells += [str(i - len(whole) + 1) if is_group else "", _fmt(rank_delta) if is_group else ""]
            table.add_row(*cells)
    _print_wide(table)


def _split_list(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


@app.command()
def run(
    init: Annotated[Path, typer.Argument(help="Checkpoint at α=0 (θ_init): .pt/.pth/.bin or .safetensors.")],
    final: Annotated[Path, typer.Argument(help="Checkpoint at α=1 (θ_final).")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Zoo name (mlp, cnn, resnet20, resnet18), "
            "path/to/file.py:factory or package.module:factory. Optional when the checkpoint records it.",
        ),
    ] = None,
    model_arg: Annotated[
        list[str] | None,
        typer.Option(
            "--model-arg",
            "-a",
            help="KEY=VALUE passed to the model factory (repeatable); values are Python literals.",
        ),
    ] = None,
    data: Annotated[
        str,
        typer.Option(
            "--data",
            "-d",
            help="fashion-mnist, fashion-mnist-small (bundled), "
            "or a tensor file (.pt, .npz, .safetensors) with inputs and targets.",
        ),
    ] = "fashion-mnist-small",
    data_root: Annotated[
        Path | None,
        typer.Option(help="Where named datasets live [default: $XDG_CACHE_HOME/interpscan or ~/.cache/interpscan]."),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Splits to evaluate: train, test or train,test.")] = "test",
    samples: Annotated[int | None, typer.Option(help="Evaluate a seeded subset of N examples per split.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for --samples and the BN calibration subset.")] = 0,
    normalize: Annotated[str, typer.Option(help="auto (the dataset's standard mean/std), none, or MEAN,STD.")] = "auto",
    alphas: Annotated[
        str,
        typer.Option(
            "--alphas",
            help="Number of evenly spaced points, or an explicit list "
            "such as 0,0.5,0.9,1. α=0 and α=1 are always included.",
        ),
    ] = "21",
    alpha_range: Annotated[str | None, typer.Option(help="LO,HI to extend a counted grid, e.g. -0.5,1.5.")] = None,
    bn: Annotated[
        str,
        typer.Option(
            "--bn",
            help="Batch-norm policy: interpolate, recompute, batch, or auto "
            "(recompute when the model has BN and the data a train split).",
        ),
    ] = "auto",
    bn_samples: Annotated[
        int,
        typer.Option(help="Training examples used to re-estimate BN statistics per point (--bn recompute)."),
    ] = 2048,
    strategy: Annotated[
        str,
        typer.Option(
            help="auto (sequential on CPU, batched on CUDA), sequential, or batched (vmap over chunks of points)."
        ),
    ] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    batch_size: Annotated[
        int | None, typer.Option(help="Examples per forward pass [default: 256 on CPU, 1024 on CUDA].")
    ] = None,
    tol: Annotated[float, typer.Option(help="A path is monotone when its largest rise Δ ≤ tol.")] = 0.0,
    groups: Annotated[
        list[str] | None,
        typer.Option(
            "--groups",
            "-g",
            help="Also scan layer groups (repeatable; comma-separated): a glob such as 'layer*' (one group per "
            "matched module), NAME=PAT[,PAT,!PAT] (one named group), or @top, @leaves, @depth:N. "
            "See `interpscan layers`.",
        ),
    ] = None,
    hold: Annotated[
        str, typer.Option(help="Where tensors outside the moving set stay: final (the seed paper) or init.")
    ] = "final",
    mode: Annotated[
        str, typer.Option(help="only (just the group moves) or all-but (everything except the group moves).")
    ] = "only",
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("interpscan-out"),
    force: Annotated[bool, typer.Option(help="Write into a non-empty output directory.")] = False,
    html: Annotated[bool, typer.Option(help="Write results.html.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary table.")] = False,
) -> None:
    """Scan the straight line between two checkpoints; write results.csv, summary.csv, run.json, results.html."""
    from .models import parse_model_args
    from .results import prepare_output_dir, write_outputs
    from .scan import ScanConfig, run_scan

    config = ScanConfig(
        init=init,
        final=final,
        data=data,
        model=model,
        model_args=parse_model_args(model_arg or []),
        data_root=data_root,
        splits=_split_list(split),
        samples=samples,
        seed=seed,
        normalize=normalize,
        alphas=alphas,
        alpha_range=alpha_range,
        bn=bn,
        bn_samples=bn_samples,
        strategy=strategy,
        device=device,
        batch_size=batch_size,
        tol=tol,
        groups=tuple(groups or ()),
        hold=hold,
        mode=mode,
    )
    with _output_dir(out, force) as directory:
        prepare_output_dir(directory, force=force)
        with _progress_bar(not quiet) as progress:
            result = run_scan(config, progress=progress, log=None if quiet else _say)
        paths = write_outputs(result, directory, html=html)
    if not quiet:
        _summary_table(result.summary, "path summary (loss; barriers relative to the line and to the higher end)")
    err.print(f"wrote {', '.join(str(p) for p in paths.values())}")


@app.command()
def layers(
    init: Annotated[Path, typer.Argument(help="A checkpoint (θ_init).")],
    final: Annotated[Path | None, typer.Argument(help="Optional second checkpoint: adds distances per group.")] = None,
    groups: Annotated[
        list[str] | None,
        typer.Option("--groups", "-g", help="Patterns as for `run --groups` [default: @top]."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Resolve against this model's module tree (else the recorded model, else the tensor names).",
        ),
    ] = None,
    model_arg: Annotated[list[str] | None, typer.Option("--model-arg", "-a", help="KEY=VALUE for the factory.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, json or csv (to stdout).")] = "table",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every tensor of each group.")] = False,
) -> None:
    """Show how group patterns resolve, before any scan: tensors, parameters and share per group; with FINAL,
    ‖θ_T−θ_0‖, relative change and cosine per group. Data-free and instant."""
    from .errors import UsageError
    from .models import parse_model_args
    from .scan import layer_report

    if fmt not in ("table", "json", "csv"):
        raise UsageError(f"--format {fmt!r} is not table, json or csv")
    report = layer_report(init, final, tuple(groups or ("@top",)), model, parse_model_args(model_arg or []))
    rows = report.rows
    if fmt == "json":
        import json

        typer.echo(json.dumps({"model": report.model, "groups": rows}, indent=2))
        return
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        writer = csv.DictWriter(
            buf, fieldnames=[k for k in rows[0] if k != "names"], extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)
        typer.echo(buf.getvalue(), nl=False)
        return
    from rich.console import Console
    from rich.table import Table

    source = f"model {report.model}" if report.model else "tensor names (no model)"
    table = Table(
        title=f"{len(report.grouping)} groups, resolved against {source}", title_justify="left", header_style="bold"
    )
    columns = ["group", "tensors", "parameters", "share"]
    if final is not None:
        columns += ["‖θ_T−θ_0‖", "relative", "cosine"]
    for col in columns:
        table.add_column(col, justify="left" if col in ("group", "tensors") else "right")
    for row in rows:
        tensors = "\n".join(row["names"]) if verbose else str(row["tensors"])
        cells = [row["group"], tensors, f"{row['parameters']:,}", f"{row['share']:.1%}"]
        if final is not None:
            cells += [_fmt(row["distance"]), _fmt(row["relative_distance"]), _fmt(row["cosine"])]
        table.add_row(*cells)
    Console(highlight=False, markup=False).print(table)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("interpscan-demo"),
    force: Annotated[bool, typer.Option(help="Write into a non-empty output directory.")] = False,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 6,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary table.")] = False,
) -> None:
    """Train a small CNN on bundled Fashion-MNIST images, then scan init → final (under a minute on a CPU)."""
    from .demo import run_demo
    from .results import prepare_output_dir, write_outputs

    with _output_dir(out, force) as directory:
        prepare_output_dir(directory, force=force)
        with _progress_bar(not quiet) as progress:
            result = run_demo(directory, epochs=epochs, progress=progress, log=None if quiet else _say)
        paths = write_outputs(result, directory)
    if not quiet:
        _summary_table(result.summary, "demo: cnn on fashion-mnist-small, init → final")
    err.print(f"wrote {directory / 'init.pt'}, {directory / 'final.pt'}, {', '.join(str(p) for p in paths.values())}")
    err.print(f"open {paths['results.html']} in a browser to see the path")


@app.command()
def plot(
    results: Annotated[Path, typer.Argument(help="A results.csv written by `interpscan run` (or its directory).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="HTML file [default: results.html beside the CSV].")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing HTML file.")] = False,
) -> None:
    """Draw a results.csv as an interactive, self-contained HTML page (summary.csv beside it adds barriers)."""
    from .results import plot_results

    written = plot_results(results, out, force=force)
    err.print(f"wrote {written}")


def _say(message: str) -> None:
    err.print(message, soft_wrap=True)


@contextmanager
def _output_dir(out: Path, force: bool) -> Iterator[Path]:
    """Yield ``out``; if the command fails and it created ``out``, leave no empty directory behind."""
    existed = out.exists()
    try:
        yield out
    except BaseException:
        if not existed and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def main() -> None:
    """Console entry point: the one place where InterpscanError becomes a message and an exit code."""
    try:
        app()
    except InterpscanError as exc:
        if os.environ.get("INTERPSCAN_DEBUG"):
            raise
        from rich.text import Text

        err.print(Text.assemble(("error: ", "bold red"), exc.message), soft_wrap=True)
        if exc.hint:
            err.print(Text.assemble(("hint: ", "dim"), exc.hint), soft_wrap=True)
        sys.exit(exc.exit_code)
