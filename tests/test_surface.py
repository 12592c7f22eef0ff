"""One definition per option: the command line's flags, the library's keyword arguments and their defaults all
come from (or are checked against) the fields of interpscan.options; the library speaks in its own parameter
names and the CLI in flags; type checkers see the public API."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest
import typer
from conftest import run_cli

import interpscan
from interpscan import api, options
from interpscan.api import ScanConfig, scan
from interpscan.cli import RUN_OPTIONS, app
from interpscan.errors import InterpscanError, UsageError, render
from interpscan.options import (
    OPTION_CLASSES,
    BNPolicy,
    DType,
    Hold,
    Inputs,
    MemoryFormat,
    Mode,
    OutputOptions,
    ReadOptions,
    ScanOptions,
    Strategy,
    all_params,
    flags,
)

CLI_ONLY = {"checkpoints", "quiet"}  # the path's files as arguments; the terminal's progress bar and table
# init/final: the path (the CLI's CHECKPOINT arguments); model, data: positional (objects too); the rest objects
LIBRARY_ONLY = {"model", "init", "final", "data", "calibration", "progress", "log"}


def _command(name: str) -> Any:
    """The click command typer builds (typer vendors click in some versions: no isinstance checks here)."""
    return typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]


def _run_params() -> dict[str, Any]:
    return {p.name: p for p in _command("run").params if p.name and p.name != "help"}


def test_every_option_is_a_flag_of_run_and_a_keyword_of_scan_and_nothing_else_is() -> None:
    registry = all_params()
    cli = _run_params()
    library = inspect.signature(scan).parameters
    assert set(cli) - CLI_ONLY == set(registry), "a flag of `run` without an option field, or the reverse"
    assert set(library) - LIBRARY_ONLY == set(registry) - {"model", "data"}, "scan() and the fields disagree"
    assert set(RUN_OPTIONS) == set(registry)
    for name, p in registry.items():
        assert p.flag in cli[name].opts, (name, cli[name].opts)


def test_the_surfaces_agree_on_every_default() -> None:
    registry = all_params()
    library = inspect.signature(scan).parameters
    assert library["model"].default is inspect.Parameter.empty  # positional: a module, a spec or None
    assert library["data"].default is None  # what the checkpoints record
    for cls in (ReadOptions, ScanOptions, OutputOptions):  # each default as the option reads it
        for p in options.params(cls):
            given = library[p.name].default
            assert getattr(cls(**{p.name: given}), p.name) == getattr(cls(), p.name), f"scan({p.name}={given!r})"
    cli = _run_params()
    # what the command line's defaults become, option by option, against the library's defaults
    from_cli = ScanConfig.from_values(["a.pt", "b.pt"], {name: cli[name].default for name in registry})
    library_defaults = ScanConfig(("a.pt", "b.pt"))
    differ = set()
    for cls, attr in ((ReadOptions, "read"), (ScanOptions, "options"), (OutputOptions, "output")):
        for p in options.params(cls):
            got, want = getattr(getattr(from_cli, attr), p.name), getattr(getattr(library_defaults, attr), p.name)
            if got != want:
                differ.add(p.name)
                assert p.meta.cli_default is not options.SAME, (
                    f"--{p.name}: the command line's {got!r}, the library's {want!r}"
                )
    assert differ == {"out"}  # declared where it is defined: --out writes to interpscan-out, the library nothing


def test_the_literal_spellings_are_the_choices() -> None:
    for enum, names in (
        (Strategy, options.StrategyName),
        (MemoryFormat, options.MemoryFormatName),
        (BNPolicy, options.BNPolicyName),
        (DType, options.DTypeName),
        (Hold, options.HoldName),
        (Mode, options.ModeName),
    ):
        assert get_args(names) == tuple(m.value for m in enum)


# One row per flag of `run`: the words on the command line, and where their value lands in the ScanConfig.
LANDS: dict[str, tuple[list[str], str, Any]] = {
    "model": (["--model", "cnn"], "model", "cnn"),
    "data": (["--data", "id=a.pt", "-d", "ood=b.pt"], "data", ("id=a.pt", "ood=b.pt")),
    "model_args": (["-a", "width=4", "--model-arg", "bn=false"], "read.model_args", {"width": 4, "bn": False}),
    "key": (["--key", "model_ema"], "read.key", "model_ema"),
    "unsafe_pickle": (["--unsafe-pickle"], "read.unsafe_pickle", True),
    "strict": (["--no-strict"], "read.strict", False),
    "trust_recorded_code": (["--trust-recorded-code"], "read.trust_recorded_code", True),
    "data_root": (["--data-root", "some/where"], "read.data_root", Path("some/where")),
    "download": (["--no-download"], "read.download", False),
    "data_keys": (["--data-keys", "images, labels"], "read.data_keys", ("images", "labels")),
    "normalize": (["--normalize", "0.5,0.25"], "read.normalize", "0.5,0.25"),
    "workers": (["--workers", "3"], "read.workers", 3),
    "resize": (["--resize", "64"], "read.resize", 64),
    "crop": (["--crop", "32"], "read.crop", 32),
    "splits": (["--split", "train,test"], "options.splits", ("train", "test")),
    "samples": (["--samples", "100"], "options.samples", 100),
    "seed": (["--seed", "7"], "options.seed", 7),
    "loss": (["--loss", "mse"], "options.loss", "mse"),
    "alphas": (["--alphas", "0,0.5,1"], "options.grid.alphas", (0.0, 0.5, 1.0)),
    "alpha_range": (["--alphas", "5", "--alpha-range", "-1,1"], "options.grid.alphas", (-1.0, -0.5, 0.0, 0.5, 1.0)),
    "refine": (["--refine", "3"], "options.refine", 3),
    "random_init": (["--random-init", "4"], "options.random_init", 4),
    "groups": (["-g", "layer*", "--groups", "fc"], "options.groups", ("layer*", "fc")),
    "hold": (["-g", "fc", "--hold", "init"], "options.hold", Hold.INIT),
    "mode": (["-g", "fc", "--mode", "all-but"], "options.mode", Mode.ALL_BUT),
    "bn": (["--bn", "recompute"], "options.bn", BNPolicy.RECOMPUTE),
    "bn_samples": (["--bn-samples", "64"], "options.bn_samples", 64),
    "tol": (["--tol", "0.1"], "options.tol", 0.1),
    "bootstrap": (["--bootstrap", "0"], "options.bootstrap", 0),
    "strategy": (["--strategy", "prefix"], "options.strategy", Strategy.PREFIX),
    "memory_format": (["--memory-format", "contiguous"], "options.memory_format", MemoryFormat.CONTIGUOUS),
    "device": (["--device", "CPU"], "options.device", "cpu"),
    "batch_size": (["--batch-size", "32"], "options.batch_size", 32),
    "chunk_size": (["--chunk-size", "4"], "options.chunk_size", 4),
    "dtype": (["--dtype", "bfloat16"], "options.dtype", DType.BFLOAT16),
    "per_example": (["--save-per-example"], "options.per_example", True),
    "out": (["-o", "elsewhere"], "output.out", Path("elsewhere")),
    "force": (["--force"], "output.force", True),
    "resume": (["--resume"], "output.resume", True),
    "html": (["--no-html"], "output.html", False),
}


class _Landed(InterpscanError):
    """What the patched run_scan raises: the config reached it, nothing ran."""


def _landed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], runner: str, args: list[str], where: str
) -> Any:
    """The value at ``where`` (dotted) of the config the command ``args`` hands api's ``runner``."""
    seen: list[Any] = []

    def captured(config: Any, hooks: object = None) -> None:
        seen.append(config)
        raise _Landed("landed")

    monkeypatch.setattr(api, runner, captured)
    code, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2, err
    assert "landed" in err
    value: Any = seen[0]
    for attr in where.split("."):
        value = getattr(value, attr)
    return value


def test_every_flag_has_a_landing_case() -> None:
    assert set(LANDS) == set(all_params())


@pytest.mark.parametrize("name", sorted(LANDS))
def test_each_flag_lands_in_its_field(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("interpscan.cli._warm_up", lambda page: None)
    words, where, expected = LANDS[name]
    assert _landed(monkeypatch, capsys, "run_scan", ["run", "init.pt", "final.pt", *words], where) == expected
    defaults = ScanConfig(("a.pt", "b.pt"))
    if where.count(".") == 1 and not where.startswith("options.grid"):
        part, attr = where.split(".")
        assert getattr(getattr(defaults, part), attr) != expected  # the flag changed something


def test_the_library_speaks_in_its_parameters_and_the_cli_in_flags(
    ckpts: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    init, final = ckpts
    with pytest.raises(UsageError) as exc:
        scan("cnn", init, final, "fashion-mnist-small", model_args={"width": 4}, hold="init")
    assert str(exc.value) == "hold='init' applies to layer groups, and no groups was given"
    assert exc.value.hint == "add groups (see `interpscan layers`), or drop hold"
    assert "--" not in str(exc.value) + str(exc.value.hint)
    with pytest.raises(UsageError, match=r"^batch_size must be at least 1, got 0$"):
        scan("cnn", init, final, "fashion-mnist-small", batch_size=0)
    code, err = run_cli(monkeypatch, capsys, "run", str(init), str(final), "--hold", "init", "-o", str(tmp_path / "o"))
    assert code == 2
    assert err.splitlines() == [
        "error: --hold init applies to layer groups, and no --groups was given",
        "hint: add --groups (see `interpscan layers`), or drop --hold",
    ]


def test_render_names_an_option_with_or_without_its_value() -> None:
    from interpscan.errors import opt

    text = f"{opt('strict', False)} {opt('alphas', (0, 1))} {opt('bn', BNPolicy.BATCH)} {opt('out')} {opt('init')}"
    assert render(text) == "strict=False alphas=(0, 1) bn='batch' out init"
    assert render(text, flags()) == "--no-strict --alphas 0,1 --bn batch --out INIT"
    assert render("a value holding the markers \ue000[1]\ue001 stays") == "a value holding the markers 1 stays"


def test_every_help_text_renders_without_markers() -> None:
    for p in all_params().values():
        for voice in (None, flags()):
            text = render(p.meta.help, voice)
            assert "\ue000" not in text, p.name
            assert "\ue001" not in text, p.name
        assert "\\[" not in p.meta.help, f"{p.name}: a default belongs in default_text, not in the help text"
    assert scan.__doc__ is not None
    for name in set(all_params()) - {"model", "data"}:
        assert f"\n        {name}: " in scan.__doc__, f"scan's docstring lacks {name}"


def test_option_classes_cover_the_registry_once() -> None:
    names = [p.name for cls in OPTION_CLASSES for p in options.params(cls)]
    assert len(names) == len(set(names))
    assert [p.name for p in options.params(Inputs)] == ["model", "data"]


def test_command_words_give_back_the_same_options() -> None:
    values = {
        "data": "cifar10",
        "model_args": {"width": 4},
        "strict": False,
        "splits": ("train", "test"),
        "samples": 100,
        "alphas": "0,0.5,1",
        "groups": ("layer*", "fc"),
        "hold": "init",
        "bn": "recompute",
        "per_example": True,
        "html": False,
    }
    config = ScanConfig.from_values(["a.pt", "b.pt"], values)
    words = options.command_words(config.read, config.options, config.output)
    ctx = _command("run").make_context("run", ["a.pt", "b.pt", "--data", "cifar10", *words])
    seen = {k: v for k, v in ctx.params.items() if k in all_params()}
    again = ScanConfig.from_values(["a.pt", "b.pt"], seen)
    assert (again.read, again.options) == (config.read, config.options)
    assert again.output.html is False


# ------------------------------------------------------------------------------------------ what tools see


def _type_checking_imports() -> dict[str, str]:
    tree = ast.parse(Path(interpscan.__file__).read_text())
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom)
                assert imp.module
                for alias in imp.names:
                    assert alias.asname == alias.name, "a re-export for type checkers is `name as name`"
                    found[alias.name] = imp.module
    return found


def test_static_and_lazy_exports_are_the_same() -> None:
    assert _type_checking_imports() == interpscan._API
    for name, module in interpscan._API.items():
        assert getattr(interpscan, name) is getattr(__import__(f"interpscan.{module}", fromlist=[name]), name)


@pytest.mark.slow
def test_mypy_sees_the_library(tmp_path: Path) -> None:
    """Under mypy --strict, a misspelled keyword to scan() is an error and scan() returns a ScanResult."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import interpscan\n"
        "result = interpscan.scan(None, 'a.pt', 'b.pt', 'cifar10', alpahs=5)\n"
        "reveal_type(interpscan.scan(None, 'a.pt', 'b.pt', 'cifar10', hold='init', groups='fc'))\n"
        "interpscan.scan(None, 'a.pt', 'b.pt', bn='recompte')\n"
    )
    root = Path(interpscan.__file__).parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "--cache-dir", str(root / ".mypy_cache"),
         "--config-file", str(root / "pyproject.toml"), str(probe)],
        capture_output=True, text=True, cwd=root, timeout=600,
    )  # fmt: skip
    # by the file's name: mypy reports a module it finds unchanged in its cache under the path it had then
    lines = [line.split(": ", 1)[1] for line in done.stdout.splitlines() if line.split(":", 1)[0].endswith("probe.py")]
    errors = [line for line in lines if line.startswith("error:")]
    assert errors[0].startswith('error: Unexpected keyword argument "alpahs" for "scan"'), done.stdout
    assert 'note: Revealed type is "interpscan.results.ScanResult"' in lines, done.stdout
    assert errors[1].startswith('error: Argument "bn" to "scan" has incompatible type "Literal[\'recompte\']"')
    assert len(errors) == 2, done.stdout


# One row per option `plane` adds: its words (after one checkpoint) and where it lands.
PLANE_LANDS: dict[str, tuple[list[str], str, Any]] = {
    "grid": (["--grid", "5"], "plane.grid", 5),
    "margin": (["b.pt", "d.pt", "--margin", "0.5"], "plane.margin", 0.5),  # three checkpoints: a margin applies
    "directions": (["--directions", "layer"], "plane.directions", options.Directions.LAYER),
    "keep_1d": (["--keep-1d"], "plane.keep_1d", True),
    "xy_range": (["--range", "-2,3"], "plane.xy_range", (-2.0, 3.0)),
    "dims": (["--dims", "1"], "plane.dims", 1),
    "bn": (["--bn", "recompute"], "scan.options.bn", BNPolicy.RECOMPUTE),  # a scan's option, shared
}


def test_every_plane_option_has_a_landing_case_and_a_keyword() -> None:
    from interpscan.api import plane as plane_fn
    from interpscan.api import trajectory as trajectory_fn
    from interpscan.cli import PLANE_OPTIONS, TRAJECTORY_OPTIONS

    assert set(PLANE_LANDS) - {"bn"} == set(options.plane_params())
    library = set(inspect.signature(plane_fn).parameters) - {"checkpoints"} - LIBRARY_ONLY
    assert library == set(PLANE_OPTIONS) - {"model", "data"}
    library = set(inspect.signature(trajectory_fn).parameters) - {"checkpoints"} - LIBRARY_ONLY
    assert library == set(TRAJECTORY_OPTIONS) - {"model", "data"}


@pytest.mark.parametrize("name", sorted(PLANE_LANDS))
def test_each_plane_flag_lands_in_its_field(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    words, where, expected = PLANE_LANDS[name]
    assert _landed(monkeypatch, capsys, "run_plane", ["plane", "c.pt", *words], where) == expected


def test_plane_refuses_directions_with_three_checkpoints(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_cli(monkeypatch, capsys, "plane", "a.pt", "b.pt", "c.pt", "--directions", "filter")
    assert code == 2
    assert err.splitlines()[0] == "error: --directions draws random directions around one checkpoint, and 3 were given"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["a.pt", "b.pt", "c.pt", "--dims", "1"], "error: --dims 1 applies to random directions around one checkpoint"),
        (["a.pt", "--margin", "0.5"], "error: --margin 0.5 applies to a plane through checkpoints, not to this one"),
    ],
)
def test_plane_options_only_where_they_apply(
    args: list[str], line: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_cli(monkeypatch, capsys, "plane", *args)
    assert code == 2
    assert err.splitlines()[0].startswith(line)
