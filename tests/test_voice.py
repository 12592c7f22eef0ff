"""The library in its own words: its messages name parameters (``key='nope'``, ``groups``), and only the command
line speaks in flags (``--key nope``, ``--groups``), rendering the same messages with its table (errors.render).

The source check reads every module but cli.py with ``ast``: a string a module writes that spells a flag is a
message the library would show in the command line's words. Docstrings and comments may name flags (they document
the command line too); a message names an option with ``errors.opt``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import run_cli
from torch import nn

from interpscan import scan
from interpscan.errors import InterpscanError
from interpscan.options import COMMAND_FLAGS, flags

SOURCE = Path(__file__).resolve().parents[1] / "interpscan"
COMMAND_LINE = SOURCE / "cli.py"  # the command line itself: it speaks in flags
FLAGS = {f for f in [*flags().values(), *COMMAND_FLAGS.values()] if f.startswith("--")}
TOKEN = re.compile(r"--(?:no-)?[a-z0-9][a-z0-9-]*")

# Modules not yet held to the rule (none: every library module names options with errors.opt).
PENDING: frozenset[str] = frozenset()
# Constants that spell a flag and are no message, by module and name: run.json's model.source for a model the caller
# named, a value the output contract documents (docs/outputs.md).
ALLOWED = {("models/spec.py", "NAMED")}


def _docstrings(tree: ast.Module) -> set[int]:
    """The ids of the docstring constants of a module and its classes and functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _definitions(tree: ast.Module) -> set[int]:
    """The ids of the strings given as ``flag=`` to ``option``/``Option``: the registry's own spelling of a flag
    (options.py), the one place a flag is written down."""
    return {
        id(kw.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("option", "Option")
        for kw in node.keywords
        if kw.arg == "flag" and isinstance(kw.value, ast.Constant)
    }


def _allowed(tree: ast.Module, module: str) -> set[int]:
    """The ids of the module-level constants ALLOWED names for ``module``."""
    return {
        id(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name) and (module, target.id) in ALLOWED
    }


def flags_spelled(path: Path, module: str = "") -> Iterator[tuple[int, str]]:
    """(line, flag) for each flag spelled in a string constant or an f-string's literal part of ``path`` (the
    module ``module``, relative to interpscan/) that is neither a docstring, a flag's definition nor ALLOWED."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip = _docstrings(tree) | _definitions(tree) | _allowed(tree, module)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            for token in TOKEN.findall(node.value):
                if token in FLAGS or "--" + token.removeprefix("--no-") in FLAGS:
                    yield node.lineno, token


def library_modules() -> list[Path]:
    return sorted(p for p in SOURCE.rglob("*.py") if p != COMMAND_LINE)


def test_no_library_module_spells_a_flag() -> None:
    found = [
        f"interpscan/{rel}:{line}: {token}"
        for path in library_modules()
        if (rel := path.relative_to(SOURCE).as_posix()) not in PENDING
        for line, token in sorted(set(flags_spelled(path, rel)))
    ]
    assert not found, "name options with errors.opt, not as flags:\n" + "\n".join(found)


def test_no_message_holds_an_opt_call_outside_an_f_string() -> None:
    """``"use {opt('bn')}"`` without its ``f`` would print the call's text."""
    found = [
        f"interpscan/{path.relative_to(SOURCE).as_posix()}:{node.lineno}"
        for path in library_modules()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "{opt(" in node.value
    ]
    assert not found


def test_the_check_sees_flags_in_strings_and_f_strings_but_not_in_docstrings(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        '"""Module docs: --key."""\n'
        "def f(x):\n"
        '    """Function docs: --groups."""\n'
        '    a = "use --bn batch"  # comment: --hold\n'
        '    b = f"{x} --no-strict, --unknown-flag, --no-download"\n'
        '    return a, b, Option(flag="--split"), load(flag="--loss")\n',
        encoding="utf-8",
    )
    assert sorted(flags_spelled(module)) == [(4, "--bn"), (5, "--no-download"), (5, "--no-strict"), (6, "--loss")]
    modules = {p.relative_to(SOURCE).as_posix() for p in library_modules()}
    assert modules >= PENDING  # no stale names
    for module, name in ALLOWED:
        assert _allowed(ast.parse((SOURCE / module).read_text(encoding="utf-8")), module), (module, name)


# --------------------------------------------------------------------------- what a user sees: both voices


@pytest.fixture
def cnn(tmp_path: Path) -> dict[str, Any]:
    """Two cnn checkpoints (width 4), the arguments every scan below shares, and the command line's for them."""
    from interpscan.models import build_model, parse_model_spec

    spec = parse_model_spec("cnn", {"width": 4})
    torch.manual_seed(0)
    init, final = tmp_path / "init.pt", tmp_path / "final.pt"
    torch.save(build_model(spec).state_dict(), init)
    torch.save(build_model(spec).state_dict(), final)
    return {
        "init": init,
        "final": final,
        "library": {"model_args": {"width": 4}, "samples": 20, "alphas": 2},
        "cli": ["--model", "cnn", "--model-arg", "width=4", "--samples", "20", "--alphas", "2", "-q"],
    }


def _foreign_partial(out: Path) -> Path:
    """An output directory holding another scan's interrupted state."""
    from interpscan.atomic import OutputFolder
    from interpscan.engine import ScanSnapshot, Snapshot
    from interpscan.rundir import PartialSaver

    with OutputFolder.open(out) as folder:
        PartialSaver(folder, every=0).keep(ScanSnapshot("another scan", Snapshot(3, None, (), 0)).to_state())
    return out


def _test_split_only(tmp_path: Path) -> Path:
    path = tmp_path / "test-only.pt"
    gen = torch.Generator().manual_seed(0)
    torch.save({"x": torch.rand(8, 1, 28, 28, generator=gen), "y": torch.randint(0, 10, (8,), generator=gen)}, path)
    return path


# id: (library keywords, command-line flags, what the library says, what the command line says); the paths are
# made in tmp_path ({tmp}). Each text is found in the error's message or hint.
CASES: dict[str, tuple[dict[str, Any], list[str], str, str]] = {
    "a key naming no entry": (
        {"key": "nope"},
        ["--key", "nope"],
        "init.pt: no entry 'nope' for key='nope'",
        "init.pt: no entry 'nope' for --key nope",
    ),
    "normalize for three channels on grey images": (
        {"normalize": "0.5/0.5/0.5,0.2/0.2/0.2"},
        ["--normalize", "0.5/0.5/0.5,0.2/0.2/0.2"],
        "normalize has 3 values per channel but the fashion-mnist-small test inputs have shape [20, 1, 28, 28]",
        "--normalize has 3 values per channel but the fashion-mnist-small test inputs have shape [20, 1, 28, 28]",
    ),
    "groups matching nothing": (
        {"groups": "nothing*"},
        ["--groups", "nothing*"],
        "groups pattern 'nothing*' matched no module or tensor",
        "--groups pattern 'nothing*' matched no module or tensor",
    ),
    "recompute without a train split": (
        {"data": "{tmp}/test-only.pt", "bn": "recompute"},
        ["--data", "{tmp}/test-only.pt", "--bn", "recompute"],
        "bn='recompute' needs a train split to re-estimate statistics|use bn='interpolate' or bn='batch'",
        "--bn recompute needs a train split to re-estimate statistics|use --bn interpolate or --bn batch",
    ),
    "a model that does not match": (
        {"model_args": {"width": 8}},
        ["--model-arg", "width=8"],
        "check model and model_args (e.g. width",
        "check --model and --model-arg (e.g. width",
    ),
    "a dataset not found, without download": (
        {"data": "mnist", "data_root": "{tmp}/empty", "download": False},
        ["--data", "mnist", "--data-root", "{tmp}/empty", "--no-download"],
        "MNIST not found under data_root='{tmp}/empty' (looked in|and download=False is set|drop download=False",
        "MNIST not found under --data-root {tmp}/empty (looked in|and --no-download is set|drop --no-download",
    ),
    "an interrupted scan in the output directory": (
        {"out": "{tmp}/partial"},
        ["--out", "{tmp}/partial"],
        "holds an interrupted scan|add resume=True to finish it, or force=True to start afresh",
        "holds an interrupted scan|add --resume to finish it, or --force to start afresh",
    ),
    "a resume of another scan": (
        {"out": "{tmp}/partial", "resume": True},
        ["--out", "{tmp}/partial", "--resume"],
        "made with other inputs or options|or start afresh with force=True",
        "made with other inputs or options|or start afresh with --force",
    ),
    "nothing to resume": (
        {"out": "{tmp}/empty-out", "resume": True},
        ["--out", "{tmp}/empty-out", "--resume"],
        "nothing to resume in|run without resume=True",
        "nothing to resume in|run without --resume",
    ),
}


def _placed(value: Any, tmp: Path) -> Any:
    return value.replace("{tmp}", str(tmp)) if isinstance(value, str) else value


@pytest.mark.parametrize("case", list(CASES))
def test_a_user_mistake_is_named_by_parameter_in_the_library_and_by_flag_on_the_command_line(
    case: str, cnn: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    keywords, cli_flags, library_says, cli_says = CASES[case]
    _test_split_only(tmp_path)
    _foreign_partial(tmp_path / "partial")
    keywords = {k: _placed(v, tmp_path) for k, v in {**cnn["library"], **keywords}.items()}
    data = keywords.pop("data", "fashion-mnist-small")

    with pytest.raises(InterpscanError) as exc:
        scan("cnn", cnn["init"], cnn["final"], data, **keywords)
    said = f"{exc.value}\n{exc.value.hint}"
    assert "--" not in said
    for part in _placed(library_says, tmp_path).split("|"):
        assert part in said

    args = [_placed(a, tmp_path) for a in cli_flags]
    if "--data" not in args:
        args = ["--data", "fashion-mnist-small", *args]
    code, err = run_cli(monkeypatch, capsys, "run", str(cnn["init"]), str(cnn["final"]), *cnn["cli"], *args)
    assert code == exc.value.exit_code
    for part in _placed(cli_says, tmp_path).split("|"):
        assert part in err
    assert err.splitlines() == [f"error: {exc.value.rendered(flags())[0]}", f"hint: {exc.value.rendered(flags())[1]}"]


def test_the_library_names_its_own_parameters_where_the_command_line_has_no_flag(tmp_path: Path) -> None:
    from interpscan.models import build_model, parse_model_spec

    net = build_model(parse_model_spec("cnn", {"width": 4}))
    with pytest.raises(InterpscanError) as exc:  # a module passed in has no factory to call again
        scan(net, net.state_dict(), net.state_dict(), "fashion-mnist-small", random_init=0, samples=20, alphas=2)
    assert str(exc.value) == "random_init builds a fresh model from its factory, and the model passed in has none"
    assert exc.value.rendered(flags())[0].startswith("--random-init builds a fresh model")

    pickled = tmp_path / "module.pt"
    torch.save(nn.Linear(2, 2), pickled)  # a whole module: unpickling it would run code
    with pytest.raises(InterpscanError) as exc:
        scan("cnn", pickled, pickled, "fashion-mnist-small")
    assert "if you trust the file, pass unsafe_pickle=True, or save" in str(exc.value.hint)
    assert "pass --unsafe-pickle, or save" in str(exc.value.rendered(flags())[1])


def test_a_value_with_a_line_break_stays_on_one_line_in_both_voices() -> None:
    from interpscan.errors import UsageError, opt

    key = "a\nb"
    exc = UsageError(f"no entry for {opt('key', key)}", hint=f"leave {opt('key')} out")
    assert str(exc) == "no entry for key='a\\nb'"  # repr: the break is shown, not made
    assert exc.rendered(flags()) == ("no entry for --key a b", "leave --key out")  # as f"--key {key}" one-lined
