"""The command line: thin commands that parse flags, call the library, and render results on stderr.

This is the only module that imports typer and renders with rich, and the one place where InterpscanError is
caught (in ``main``). torch, pandas and plotly are imported inside commands so that ``--help`` is instant.
"""

from __future__ import annotations

import errno
import importlib
import inspect as inspect_
import os
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from . import __version__
from .errors import InterpscanError, Interrupted, Stopped, UsageError, render
from .options import (
    OUTPUT_PANEL,
    Inputs,
    OutputOptions,
    Param,
    PlaneOptions,
    ReadOptions,
    ScanOptions,
    all_params,
    flags,
    plane_params,
)
from .options import params as option_params

if TYPE_CHECKING:
    from .api import Hooks
    from .distributed import World
    from .download import DownloadProgress
    from .progress import Progress

err = Console(stderr=True, highlight=False, markup=False)
FLAGS = flags()  # how the command line spells each option the library names (errors.render)


def _real_module(name: str) -> types.ModuleType:
    if isinstance(sys.modules.get(name), _Deferred):
        del sys.modules[name]
    return importlib.import_module(name)


class _Forward(type):
    """The class of a placeholder: building one, or reading any attribute of it, uses the real class."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return getattr(_real_module(cls.__module__), cls.__name__)(*args, **kwargs)

    def __getattr__(cls, name: str) -> Any:
        return getattr(getattr(_real_module(cls.__module__), cls.__name__), name)


class _Deferred(types.ModuleType):
    """A stand-in for a module until something uses it. typer's help renderer imports ``rich.markdown`` (and
    markdown-it) for a markup mode interpscan does not use (``rich_markup_mode="rich"``), and ``rich.traceback``
    (with pygments, and attrs where installed) for pretty exceptions, which interpscan turns off: together a
    good part of ``interpscan --help``'s start-up (see benchmarks). Each is a placeholder module holding placeholder
    classes for the
    names typer imports; any use — building one, reading any other name — imports the real module, which then
    replaces the stand-in."""

    def __init__(self, name: str, classes: tuple[str, ...]) -> None:
        super().__init__(name)
        for cls in classes:
            setattr(self, cls, _Forward(cls, (), {"__module__": name}))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # the import system's questions (__path__, …) are not uses
            raise AttributeError(name)
        return getattr(_real_module(self.__name__), name)


for _module, _classes in (("rich.markdown", ("Markdown",)), ("rich.traceback", ("Traceback",))):
    if _module not in sys.modules:
        sys.modules[_module] = _Deferred(_module, _classes)

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
    """Progress over (point, batch) evaluations on stderr: a bar redrawn in a terminal, one line at the end
    anywhere else (a pipe, a log file, a notebook's ``!interpscan``), nothing when not ``enabled``."""
    if not enabled:
        yield None
        return
    from .progress import place, watch

    with watch(place(err), console=err, done=_say) as progress:
        yield progress


@contextmanager
def _download_bar(enabled: bool) -> Iterator[DownloadProgress | None]:
    """A rich progress bar per downloaded file, on stderr, in a terminal; it goes away when the file is complete."""
    from .progress import place

    if not enabled or place(err) != "terminal":
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, TaskID, TextColumn, TimeRemainingColumn, TransferSpeedColumn
    from rich.progress import Progress as Bar

    bar = Bar(
        TextColumn("{task.description}", style="bold"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    tasks: dict[str, TaskID] = {}

    def update(name: str, done: int, total: int) -> None:
        if name not in tasks:
            tasks[name] = bar.add_task(name, total=total)
            if not bar.live.is_started:
                bar.start()
        bar.update(tasks[name], completed=done, total=total)
        if done >= total:  # stop before the scan's own bar may start
            bar.remove_task(tasks.pop(name))
            if not tasks and bar.live.is_started:
                bar.stop()

    try:
        yield update
    finally:
        if bar.live.is_started:
            bar.stop()


def _print_wide(renderable: Any) -> None:
    """Print on stderr at the terminal's width, or at 160 columns when stderr is a file or a pipe."""
    console = err if err.is_terminal else Console(stderr=True, highlight=False, markup=False, width=160)
    console.print(renderable)


def _missing(v: Any) -> bool:
    """None, NaN, or pandas' NA (a nullable column's missing value, which has no truth value)."""
    if v is None:
        return True
    try:
        return bool(v != v)
    except TypeError:  # pd.NA: `NA != NA` is NA, and bool(NA) raises
        return True


def _fmt(v: Any) -> str:
    """A number to 4 significant digits; "nan" for anything missing."""
    if _missing(v):
        return "nan"
    try:
        return f"{float(v):.4g}"
    except (TypeError, ValueError):
        return str(v)


def _yes_no(v: Any) -> str:
    """A nullable boolean (True, False, None, NaN or pd.NA) as yes, no or a dash."""
    return "—" if _missing(v) else ("yes" if bool(v) else "no")


def _summary_table(summary: Any, title: str, *, perplexity: bool = False) -> None:
    """The summary on stderr: per split, the whole network first, then groups ranked by L(0) (the loss with
    the group rewound), with each group's rank by Δ beside it; a language model's perplexity at both ends."""
    from rich.table import Table

    from .metrics import perplexity as ppl

    grouped = bool((summary["curve"] != "all").any())
    intervals = "delta_ci_low" in summary and bool(summary["delta_ci_low"].notna().any())
    # a path through several checkpoints: a block per segment, then the whole path (segment 0, α read as t)
    segmented = "segment" in summary and bool((summary["segment"] != 1).any())
    table = Table(title=title, title_justify="left", header_style="bold")
    columns = ["curve", "split", "L(0)", "L(1)", "Δ", "monotone", "B_lin @α", "B_max @α"]
    if intervals:
        columns[5:5] = ["Δ 95% CI", "rises"]
    if segmented:
        columns[2:2] = ["segment"]
    if grouped:
        columns += ["rank L(0)", "rank Δ"]
    ppl_at = columns.index("L(1)") + 1
    if perplexity:
        columns[ppl_at:ppl_at] = ["ppl(0)", "ppl(1)"]
    for col in columns:
        left = col in ("curve", "split", "monotone", "rises")
        table.add_column(col, justify="left" if left else "right", no_wrap=True)
    for key, rows in summary.groupby(["split", "segment"] if segmented else ["split"], sort=False):
        split = key[0]
        whole = rows[rows["curve"] == "all"]
        groups = rows[rows["curve"] != "all"].sort_values("loss_start", ascending=False, na_position="last")
        by_delta = groups["delta"].rank(ascending=False, method="min")
        for i, row in enumerate([*whole.itertuples(index=False), *groups.itertuples(index=False)]):
            mono = _yes_no(row.monotone)
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
            if intervals:  # whether the path rises beyond the examples' noise: Δ's interval above 0
                cells[5:5] = [f"{_fmt(row.delta_ci_low)}–{_fmt(row.delta_ci_high)}", _yes_no(row.rise_significant)]
            if segmented:
                cells[2:2] = [str(row.segment) if row.segment else "whole"]
            if perplexity:
                cells[ppl_at:ppl_at] = [_fmt(ppl(row.loss_start)), _fmt(ppl(row.loss_end))]
            if grouped:
                is_group = row.curve != "all"
                rank_delta = by_delta.iloc[i - len(whole)] if is_group else float("nan")
                cells += [str(i - len(whole) + 1) if is_group else "", _fmt(rank_delta) if is_group else ""]
            table.add_row(*cells)
    _print_wide(table)
    if "nonfinite_points" in summary:
        for row in summary[summary["nonfinite_points"] > 0].itertuples(index=False):
            err.print(
                f"warning: {row.curve} on {row.split} has {row.nonfinite_points} point(s) with a non-finite loss; "
                "they are kept in results.csv, and the metrics of a curve with one in [0, 1] are NaN",
                soft_wrap=True,
            )


_BACKGROUND: list[Any] = []  # threads started by _in_background that a fork must wait for
_BACKGROUND_HOOKED: list[bool] = []  # register_at_fork has no way back: the hook is registered once


def _join_background() -> None:
    """Wait for the background threads (os.register_at_fork's ``before``): a thread in the middle of an import
    holds that module's import lock, and a process forked then (a DataLoader worker) inherits the lock held by a
    thread it does not have, so its first import of that module waits forever."""
    import threading

    current = threading.current_thread()
    for thread in list(_BACKGROUND):
        if thread is not current:
            thread.join()
    _BACKGROUND[:] = [t for t in _BACKGROUND if t.is_alive()]


def _in_background(work: Callable[[], None], name: str) -> None:
    """Run ``work`` in a daemon thread that every fork of this process waits for (see _join_background)."""
    import threading

    if not _BACKGROUND_HOOKED:
        os.register_at_fork(before=_join_background)
        _BACKGROUND_HOOKED.append(True)
    thread = threading.Thread(target=work, name=name, daemon=True)
    _BACKGROUND[:] = [*(t for t in _BACKGROUND if t.is_alive()), thread]
    thread.start()


def _warm_up(*, page: bool) -> None:
    """Import pandas (the tables) and, for the page, plotly with its validators, in a background thread while
    the scan computes (about a second, mostly Python; the scan's time is mostly torch's, which frees the
    interpreter): the files are then quick to make once the numbers are in. A failure here is left for the
    tables or the page to report. A DataLoader worker forked meanwhile waits for it (_in_background)."""

    def warm() -> None:
        try:
            import pandas  # noqa: F401

            if page:
                from .plots import warm_up

                warm_up()
        except Exception:  # the tables and the page report any real problem when they are made
            return

    _in_background(warm, "interpscan-warm-up")


# ------------------------------------------------------------------------------ options from the registry
# Every option of a scan is a field of interpscan.options (its type, default, help text and flag, defined once);
# a command names the ones it takes and gets them as keyword arguments, with their flags in `--help`.


def _typer_param(p: Param) -> inspect_.Parameter:
    """The typer parameter for option ``p``: its flag (and short form), help in flag words, and default."""
    meta = p.meta
    names = [f"{p.flag}/--no-{p.flag.removeprefix('--')}" if meta.negatable else p.flag]
    if meta.short:
        names.append(meta.short)
    info = typer.Option(
        *names,
        help=render(meta.help, FLAGS),
        rich_help_panel=meta.panel,
        metavar=meta.metavar,
        show_default=meta.default_text or True,
    )
    kind = meta.cli_type if meta.cli_type is not None else p.type
    return inspect_.Parameter(
        p.name, inspect_.Parameter.KEYWORD_ONLY, default=p.cli_default, annotation=Annotated[kind, info]
    )


def _is_option(p: inspect_.Parameter) -> bool:
    return any(isinstance(a, typer.models.OptionInfo) for a in getattr(p.annotation, "__metadata__", ()))


def _with_options(*names: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A command that takes the options ``names`` besides its own parameters: they reach its ``**values``."""
    registry = {**all_params(), **plane_params()}

    def wrap(fn: Callable[..., None]) -> Callable[..., None]:
        own = [
            p
            for p in inspect_.signature(fn, eval_str=True).parameters.values()
            if p.kind is not inspect_.Parameter.VAR_KEYWORD
        ]
        extra = [_typer_param(registry[name]) for name in names]
        # the command's arguments first, then the shared options (their panels in order), then its own options
        first = [p for p in own if p.kind is not inspect_.Parameter.KEYWORD_ONLY and not _is_option(p)]
        last = [p.replace(kind=inspect_.Parameter.KEYWORD_ONLY) for p in own if p not in first]
        fn.__signature__ = inspect_.Signature([*first, *extra, *last], return_annotation=None)  # type: ignore[attr-defined]
        fn.__annotations__ = {k: v for k, v in fn.__annotations__.items() if k != "values"}
        return fn

    return wrap


def _option_names(*classes: type) -> tuple[str, ...]:
    return tuple(p.name for cls in classes for p in option_params(cls))


# -q of the commands that scan
Quiet = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bar or summary table.", rich_help_panel=OUTPUT_PANEL)
]


@contextmanager
def _scan_hooks(world: World, device: str, *, quiet: bool, page: bool) -> Iterator[Hooks]:
    """What the commands that scan (run, plane, trajectory) give the library while it runs: SIGTERM heard as
    Ctrl-C, the processes of a torchrun joined, the imports for the files warmed up meanwhile (rank 0), the
    download and progress bars, and the log in flag words (rank 0 alone speaks)."""
    from .api import Hooks
    from .distributed import joined

    with _sigterm_as_interrupt(), joined(world, device):
        if world.leader:
            _warm_up(page=page)
        with _download_bar(not quiet) as fetching, _progress_bar(not quiet) as progress:
            yield Hooks(
                progress=progress,
                log=(_say_warning if quiet else _say) if world.leader else None,
                download=fetching,
                command=sys.argv,
                world=world,
                flags=FLAGS,
            )


# The options `run` takes: every option of a scan (the model, the data and how they are read, the path and the
# engine, and where the files go).
RUN_OPTIONS = _option_names(Inputs, ReadOptions, ScanOptions, OutputOptions)
# What reading checkpoints and finding a model takes (layers, inspect)
MODEL_OPTIONS = ("model", "model_args", "key", "unsafe_pickle", "trust_recorded_code")


@app.command()
@_with_options(*RUN_OPTIONS)
def run(
    checkpoints: Annotated[
        list[Path],
        typer.Argument(
            help="Checkpoints of the path: INIT (α=0, θ_init) and FINAL (α=1, θ_final), each a PyTorch, "
            "safetensors (or sharded: its index or directory), TorchScript, torch.export or .npz file (see "
            "`interpscan inspect`); more after them continue the path, one segment per pair (t = segment − 1 + α).",
            show_default=False,
            metavar="CHECKPOINT",
        ),
    ],
    quiet: Quiet = False,
    **values: Any,
) -> None:
    """Scan the straight line between two checkpoints (or the path through several, segment by segment); write
    results.csv, summary.csv, run.json, results.html.

    Under torchrun every process evaluates a share of the data; rank 0 alone prints and writes."""
    from .api import ScanConfig, run_scan
    from .distributed import world_from_env

    config = ScanConfig.from_values(checkpoints, values)  # every option checked here, before any file is read
    world = world_from_env()
    quiet = quiet or not world.leader  # rank 0 alone shows progress and the summary
    with _scan_hooks(world, config.options.device, quiet=quiet, page=config.output.html) as hooks:
        result = run_scan(config, hooks)
    if not quiet:
        _summary_table(
            result.summary,
            "path summary (loss; barriers relative to the line and to the higher end)",
            perplexity=bool(result.manifest.loss and result.manifest.loss.per_token),
        )
        err.print(f"wrote {', '.join(str(p) for p in result.files.values())}", soft_wrap=True)


# The options of `plane` and `trajectory`: a scan's, less the path's (α grid, groups, refinement, bootstrap,
# per-example losses), plus the plane's (a trajectory has no random directions).
_PLANE_COMMON = (
    *_option_names(Inputs, ReadOptions),
    *("splits", "samples", "seed", "loss", "bn", "bn_samples"),
    *("strategy", "memory_format", "device", "batch_size", "chunk_size", "dtype"),
)
PLANE_OPTIONS = (*_PLANE_COMMON, *_option_names(PlaneOptions), *_option_names(OutputOptions))
TRAJECTORY_OPTIONS = (*_PLANE_COMMON, "grid", "margin", *_option_names(OutputOptions))


def _run_plane(kind: str, checkpoints: list[Path], quiet: bool, values: dict[str, Any]) -> None:
    from .api import PlaneConfig, run_plane
    from .distributed import world_from_env

    config = PlaneConfig.from_values(kind, checkpoints, values)  # every option checked before any file is read
    world = world_from_env()
    quiet = quiet or not world.leader
    with _scan_hooks(world, config.scan.options.device, quiet=quiet, page=config.scan.output.html) as hooks:
        result = run_plane(config, hooks)
    if not quiet:
        from rich.table import Table

        table = Table(title="plane summary (loss at each checkpoint, the grid's minimum)", title_justify="left")
        for col in ("split", "point", "x", "y", "loss", "accuracy"):
            table.add_column(col, justify="left" if col in ("split", "point") else "right", no_wrap=True)
        for row in result.summary.to_dict("records"):
            numbers = (float(row[c]) for c in ("x", "y", "loss", "accuracy"))
            table.add_row(str(row["split"]), str(row["point"]), *(f"{v:.4g}" for v in numbers))
        err.print(table)
        err.print(f"wrote {', '.join(str(p) for p in result.files.values())}", soft_wrap=True)


@app.command()
@_with_options(*PLANE_OPTIONS)
def plane(
    checkpoints: Annotated[
        list[Path],
        typer.Argument(
            help="Three checkpoints C0 C1 C2: the plane through them (origin C0, x toward C1, y toward C2, in "
            "parameter distance); or one checkpoint C: the surface around it along random directions.",
            show_default=False,
            metavar="CHECKPOINT",
        ),
    ],
    quiet: Quiet = False,
    **values: Any,
) -> None:
    """Evaluate a grid over a plane of networks: through three checkpoints (Garipov et al.), or around one along
    filter-normalised random directions (Li et al.); write results.csv (x, y, loss, accuracy, anchor), summary.csv,
    run.json (the basis) and directions.safetensors (u.NAME, v.NAME: θ = origin + x·u + y·v).

    Under --bn interpolate, a point outside the checkpoints' triangle whose interpolated BN running variance is
    negative gets it clamped at 0, with a warning, and results.csv marks it (bn_clamped)."""
    _run_plane("plane", checkpoints, quiet, values)


@app.command()
@_with_options(*TRAJECTORY_OPTIONS)
def trajectory(
    checkpoints: Annotated[
        list[Path],
        typer.Argument(
            help="Four or more checkpoints saved along training, C0 … Cm, in order.",
            show_default=False,
            metavar="CKPT",
        ),
    ],
    quiet: Quiet = False,
    **values: Any,
) -> None:
    """Evaluate the surface around the last checkpoint along the top two principal directions of the centred
    differences Ci − Cm (Li et al.'s trajectory plot); every checkpoint's projection and each direction's
    explained variance ratio go in run.json; files as `plane`'s."""
    _run_plane("trajectory", checkpoints, quiet, values)


@app.command()
@_with_options("groups", *MODEL_OPTIONS)
def layers(
    init: Annotated[Path, typer.Argument(help="A checkpoint (θ_init).")],
    final: Annotated[Path | None, typer.Argument(help="Optional second checkpoint: adds distances per group.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, json or csv (to stdout).")] = "table",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every tensor of each group.")] = False,
    **values: Any,
) -> None:
    """Show how group patterns resolve, before any scan (data-free, instant).

    Per group: its tensors, parameter count and share of the network; with FINAL also ‖θ_T−θ_0‖, the relative
    change and the cosine.
    """
    from .layers import layer_report
    from .values import check_groups, check_path

    if fmt not in ("table", "json", "csv"):
        raise UsageError(f"--format {fmt!r} is not table, json or csv")
    init = check_path(init, "init")
    final = None if final is None else check_path(final, "final")
    groups = check_groups(values.pop("groups"))
    model = values.pop("model")
    read = ReadOptions(**values)
    report = layer_report(  # the model run would use (else the tensor names); groups default to @top
        init,
        final,
        groups or ("@top",),
        model,
        read.model_args,
        key=read.key,
        unsafe_pickle=read.unsafe_pickle,
        trust_recorded_code=read.trust_recorded_code,
    )
    rows = report.rows
    if fmt == "json":
        import json

        typer.echo(json.dumps({"model": report.model, "groups": rows}, indent=2))
        return
    if fmt == "csv":
        import csv
        import io

        from .schema import csv_cell

        buf = io.StringIO()
        writer = csv.DictWriter(
            buf, fieldnames=[k for k in rows[0] if k != "names"], extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)  # names are anyone's
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
@_with_options("key", "unsafe_pickle")
def inspect(
    ckpt: Annotated[Path, typer.Argument(help="A checkpoint file, a sharded checkpoint's index, or its directory.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json (to stdout).")] = "table",
    **values: Any,
) -> None:
    """Show how a checkpoint is read (data-free, instant).

    Format, layout, container key, prefixes, metadata, the model it records, brings or matches, and its tensors
    (name, shape, dtype, count) with totals.
    """
    from .checkpoints import describe, load_checkpoint
    from .models import identify
    from .values import check_path

    if fmt not in ("table", "json"):
        raise UsageError(f"--format {fmt!r} is not table or json")
    ckpt = check_path(ckpt, "ckpt")
    read = ReadOptions(**values)
    checkpoint = load_checkpoint(ckpt, key=read.key, unsafe_pickle=read.unsafe_pickle)
    report = {**describe(checkpoint), "model": identify(checkpoint)}
    if fmt == "json":
        import json

        typer.echo(json.dumps(report, indent=2))
        return
    from rich.table import Table

    out = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 200)  # pipes: no wrapping
    model = report["model"]
    if model["source"] == "none":
        closest = f"; closest: {'; '.join(model['closest'])}" if model["closest"] else ""
        model_line = f"none recorded or matched{closest}"
        if model.get("suggested"):
            model_line = f"none recorded; try --model {' or '.join(model['suggested'])}{closest}"
    else:
        args = ", ".join(f"{k}={v}" for k, v in model["args"].items())
        model_line = f"{model['model']} ({model['source']}{': ' + args if args else ''})"
        if model["code"]:
            model_line += " - Python code: imported only with --model or --trust-recorded-code"
    lines = [
        ("format", report["format"]),
        ("layout", report["layout"]),
        ("container key", report["container_key"] or "—"),
        ("wrapper prefixes", ", ".join(report["prefixes"]) or "—"),
        ("model", model_line),
        ("ignored entries", ", ".join(report["ignored_keys"]) or "—"),
    ]
    averaged = set(report.get("averaged", ()))
    if averaged:
        which = "averaged (EMA; picked with --key)" if report["container_key"] in averaged else "live (trained)"
        lines.append(("weights read", which))
    if report.get("alternatives"):
        others = [f"{k} (averaged, EMA)" if k in averaged else k for k in report["alternatives"]]
        lines.append(("other weights", ", ".join(others) + " (pick with --key)"))
    if report.get("aliases"):
        lines.append(("tied", "; ".join(" = ".join(a) for a in report["aliases"])))
    if report["metadata"]:
        lines.append(("metadata", ", ".join(f"{k}={v}" for k, v in report["metadata"].items())))
    for label, value in lines:
        out.print(f"{label + ':':18} {value}", soft_wrap=True)
    table = Table(header_style="bold", title_justify="left")
    for col in ("name", "shape", "dtype", "count"):
        table.add_column(col, justify="right" if col == "count" else "left")
    for row in report["tensors"]:
        table.add_row(row["name"], "×".join(map(str, row["shape"])) or "scalar", row["dtype"], f"{row['count']:,}")
    totals = report["totals"]
    size = f"{totals['bytes'] / 2**20:.2f} MiB"
    table.add_row("total", f"{totals['tensors']} tensors", size, f"{totals['elements']:,}")
    out.print(table)


@app.command()
def models(
    pattern: Annotated[str | None, typer.Argument(help="Only names matching this glob or substring.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json (to stdout).")] = "table",
) -> None:
    """List the model zoo: name, parameters at the default arguments, input, what it is."""
    from .models import optional_packages, zoo_table

    if fmt not in ("table", "json"):
        raise UsageError(f"--format {fmt!r} is not table or json")
    rows = zoo_table(pattern)
    if not rows:
        raise UsageError(f"no zoo model matches {pattern!r}", hint="`interpscan models` lists them all")
    packages = optional_packages()
    if fmt == "json":
        import json

        typer.echo(json.dumps({"zoo": rows, "packages": packages}, indent=2))
        return
    from rich.table import Table

    table = Table(header_style="bold")
    for col in ("name", "parameters", "input", "description"):
        table.add_column(col, justify="right" if col == "parameters" else "left")
    for row in rows:
        table.add_row(row["name"], f"{row['parameters']:,}", row["input"], row["description"])
    Console(highlight=False, markup=False).print(table)
    for pkg, installed in packages.items():
        err.print(f"{pkg}:NAME builds {pkg}'s models ({'installed' if installed else 'not installed'})")


MAX_DEMO_EPOCHS = 100  # each epoch takes a few seconds on a CPU: beyond this the demo would look hung


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("interpscan-demo"),
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Write into a non-empty output directory, replacing only files interpscan wrote there."
        ),
    ] = False,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 6,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary table.")] = False,
) -> None:
    """Train a small CNN on bundled Fashion-MNIST images, then scan init → final (a minute or less on a CPU)."""
    from .demo import run_demo
    from .rundir import RunDirectory
    from .values import check_path

    out = check_path(out, "out")
    if not 1 <= epochs <= MAX_DEMO_EPOCHS:
        raise UsageError(
            f"--epochs must be from 1 to {MAX_DEMO_EPOCHS}, got {epochs}",
            hint="the demo converges in about 6 (the default); each epoch takes seconds",
        )
    with RunDirectory(out, force=force) as run_dir:
        with _progress_bar(not quiet) as progress:
            result = run_demo(out, epochs=epochs, progress=progress, log=None if quiet else _say)
        paths = run_dir.write(result)
    directory = out
    if not quiet:
        _summary_table(result.summary, "demo: cnn on fashion-mnist-small, init → final")
    err.print(
        f"wrote {directory / 'init.pt'}, {directory / 'final.pt'}, {', '.join(str(p) for p in paths.values())}",
        soft_wrap=True,
    )
    err.print(f"open {paths['results.html']} in a browser to see the path", soft_wrap=True)


_PLOTLYJS_HELP = (
    "inline (the page works offline), cdn (a small page that loads plotly.js from the network), "
    "or directory (plotly.min.js beside the page)."
)


@app.command()
def plot(
    results: Annotated[
        list[Path],
        typer.Argument(help="results.csv files written by `interpscan run`, or their directories; several overlay."),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="HTML file or directory (default: beside the first CSV, results.html for one input, "
            "plot.html for several).",
        ),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="A label per input, in order (repeatable; default: from run.json)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace output files interpscan wrote (or the page named by --out).")
    ] = False,
    plotlyjs: Annotated[str, typer.Option(help=_PLOTLYJS_HELP)] = "inline",
    png: Annotated[
        bool, typer.Option("--png", help="Also write the figure as PNG beside the page (needs kaleido).")
    ] = False,
    svg: Annotated[
        bool, typer.Option("--svg", help="Also write the figure as SVG beside the page (needs kaleido).")
    ] = False,
) -> None:
    """Draw one or more runs as one interactive, self-contained HTML page.

    The paths overlaid, the layer groups, the summary table and each run.json (summary.csv and run.json beside
    a CSV are used when present).
    """
    from .results import plot_results

    static = [fmt for fmt, wanted in (("png", png), ("svg", svg)) if wanted]
    written = plot_results(results, out, labels=label or (), force=force, plotlyjs=plotlyjs, static=static)
    err.print(f"wrote {', '.join(map(str, written))}", soft_wrap=True)


@app.command()
def compare(
    runs: Annotated[
        list[Path], typer.Argument(help="Run directories written by `interpscan run` (results.csv, summary.csv).")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output directory: compare.csv, correlations.csv, compare.html.")
    ] = Path("interpscan-compare"),
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="A label per run, in order (repeatable; default: from run.json)."),
    ] = None,
    split: Annotated[
        str,
        typer.Option(
            help="The split to compare on: auto (test, else a split every run has), or any split the runs share."
        ),
    ] = "auto",
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Write into a non-empty output directory, replacing only files interpscan wrote there."
        ),
    ] = False,
    plotlyjs: Annotated[str, typer.Option(help=_PLOTLYJS_HELP)] = "inline",
) -> None:
    """Does the shape of the path predict how well the network does? Shape metrics against final accuracy.

    Each run's Δ, monotone, B_lin, B_max, plateau α, L(0) (per group too) and distance against its final loss
    and accuracy, with Spearman's ρ across runs.
    """
    from .compare import compare_runs, write_comparison
    from .results import load_runs
    from .values import check_path

    out = check_path(out, "out")
    comparison = compare_runs(load_runs(runs, need_summary=True), label or (), split=split)
    with _output_dir(out, force) as directory:
        paths = write_comparison(comparison, directory, force=force, plotlyjs=plotlyjs)
    _compare_tables(comparison)
    for note in comparison.notes:
        err.print(f"note: {note}", soft_wrap=True)
    err.print(f"wrote {', '.join(str(p) for p in paths.values())}", soft_wrap=True)


def _compare_tables(comparison: Any) -> None:
    """The comparison on stdout: a row per run, then ρ per metric (the CSVs hold the same numbers)."""
    from rich.table import Table

    console = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 200)
    table = Table(title=f"runs ({comparison.split} split)", title_justify="left", header_style="bold")
    names = {"final_loss": "final loss", "final_accuracy": "final acc", **dict(comparison.metrics)}
    columns = ["run", "bn", "final_loss", "final_accuracy", *(c for c, _ in comparison.metrics)]
    for col in columns:
        table.add_column(names.get(col, col), justify="left" if col in ("run", "bn", "monotone") else "right")
    for row in comparison.table.to_dict("records"):
        cells = []
        for col in columns:
            value = row[col]
            if col == "monotone":  # a nullable boolean: True, False, or pd.NA (which has no truth value)
                cells.append(_yes_no(value))
            else:
                cells.append(value if isinstance(value, str) else _fmt(value))
        table.add_row(*cells)
    console.print(table)
    rho = Table(title="Spearman's ρ across runs", title_justify="left", header_style="bold")
    for col in ("metric", "ρ vs final loss", "ρ vs final acc", "n"):
        rho.add_column(col, justify="left" if col == "metric" else "right")
    by_metric = comparison.correlations.set_index(["metric", "outcome"])
    for metric, name in comparison.metrics:
        loss, acc = (by_metric.loc[(metric, o)] for o in ("final_loss", "final_accuracy"))
        rho.add_row(name, _fmt(loss["spearman"]), _fmt(acc["spearman"]), str(int(loss["n"])))
    console.print(rho)


def _say(message: str) -> None:
    err.print(render(message, FLAGS), soft_wrap=True)  # the library's messages name options: here, by flag


def _say_warning(message: str) -> None:
    """The log under --quiet: warnings still reach the user, progress notes do not."""
    if message.startswith("warning:"):
        _say(message)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while a scan runs, so that a killed job saves its finished work too."""
    import signal

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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


def _usage_error(exc: Exception) -> tuple[str, str, int] | None:
    """(message, command path, exit code) when ``exc`` is the command-line parser's own error (a bad flag, a
    missing argument, a value of the wrong type or outside its choices); None for anything else. Matched by the
    class's name, as Typer vendors its parser in some versions and uses click's in others."""
    if not any(cls.__name__ == "ClickException" for cls in type(exc).__mro__):
        return None
    message = str(exc.format_message()) if hasattr(exc, "format_message") else str(exc)  # type: ignore[attr-defined]
    message = message.replace("Value error, ", "")  # a prefix the argument validation adds
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", "") or "interpscan"
    return " ".join(message.split()), path, int(getattr(exc, "exit_code", 2))


def _unforeseen(exc: BaseException) -> tuple[str, str]:
    """One line and a hint for an exception no check turned into an InterpscanError: the system refusing
    something (a full disk, a file that vanished), memory running out, or a bug in interpscan. Never a
    traceback for the user; INTERPSCAN_DEBUG=1 shows it."""
    debug = "INTERPSCAN_DEBUG=1 shows the traceback"
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        cause = exc.strerror or str(exc) or type(exc).__name__
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"{cause}{where}", f"free some space, or write elsewhere (--out); {debug}"
        return f"{cause}{where}", debug
    if isinstance(exc, MemoryError):
        return "out of memory", f"lower --batch-size or --samples; {debug}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (
        f"internal error: {type(exc).__name__}" + (f": {text}" if text else ""),
        f"this is a bug in interpscan; please report it with the command you ran ({debug})",
    )


def _follower_rank() -> str | None:
    """This process's rank under torchrun, when it is not rank 0 (which reports as a single process does)."""
    rank = os.environ.get("RANK", "0")
    return None if rank in ("", "0") or "WORLD_SIZE" not in os.environ else rank


def main() -> None:
    """Console entry point: the one place where InterpscanError and the parser's usage errors become one line
    (plus a hint) and an exit code."""
    from rich.text import Text

    from .allocator import tune_allocator

    tune_allocator()  # faster CPU scans (see allocator.py and benchmarks)
    try:
        code = app(standalone_mode=False, prog_name="interpscan")
    except InterpscanError as exc:
        if os.environ.get("INTERPSCAN_DEBUG"):
            raise
        rank = _follower_rank()
        # under torchrun rank 0 reports; another rank only its own failure, not that it stopped for another's
        if rank is None or not isinstance(exc, (Stopped, Interrupted)):
            prefix = "" if rank is None else f"rank {rank}: "
            message, hint = exc.rendered(FLAGS)
            err.print(Text.assemble((f"{prefix}error: ", "bold red"), message), soft_wrap=True)
            if hint and rank is None:
                err.print(Text.assemble(("hint: ", "dim"), hint), soft_wrap=True)
        sys.exit(exc.exit_code)
    except Exception as exc:
        if type(exc).__name__ == "Abort":  # Ctrl-C while the parser ran
            err.print("interrupted")
            sys.exit(130)
        usage = _usage_error(exc)
        if usage is None:
            if os.environ.get("INTERPSCAN_DEBUG"):
                raise
            message, hint = _unforeseen(exc)
            err.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)
            err.print(Text.assemble(("hint: ", "dim"), hint), soft_wrap=True)
            sys.exit(1)
        message, path, exit_code = usage
        if message:  # empty when the parser already printed the help (a command given without arguments)
            err.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)
            err.print(
                Text.assemble(
                    ("hint: ", "dim"),
                    f"`{path} --help` lists the options",
                ),
                soft_wrap=True,
            )
        sys.exit(exit_code)
    if isinstance(code, int) and code:
        sys.exit(code)
