"""interpscan's modules in layers: the import graph, read from the source with ``ast``, has no cycle, and no
module imports one from a layer above its own; the lowest layers import neither torch, pandas nor plotly; and no
function is longer than MAX_FUNCTION_LINES.

Both module-level and function-local imports count (a function-local import is still a dependency, only a later
one); imports under ``if TYPE_CHECKING:`` do not (they never run). Importing ``interpscan.a.b`` runs
``interpscan/a/__init__.py`` first, so it counts as importing the package ``interpscan.a`` too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "interpscan"

# The layers, bottom to top, each a group of modules: a module may import modules of its own layer and of the
# layers below it, never of one above. ``name.*`` is a package with all its modules. A new module goes in the layer
# that says what it is (the test fails until it is placed); a module that needs one from above is in the wrong
# layer, or holds a piece that belongs lower down.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # The vocabulary: the error hierarchy, and the package root (at run time only __version__: the public names
    # it offers are imported on first use through importlib, which is no import statement).
    ("vocabulary", ("interpscan", "interpscan.errors")),
    # Foundations, torch-free (checked below) so that the CLI can build its signatures and say --help without
    # torch: the options and their checks, the CSV schema and run.json's typed manifest, state-dict names, the
    # device and the processes of a scan, files (safe reading, atomic writing, downloads), the user's code, pure
    # functions of curves, and where progress is shown.
    (
        "foundations",
        (
            "interpscan.options",
            "interpscan.values",
            "interpscan.optional",
            "interpscan.schema",
            "interpscan.manifest",
            "interpscan.statedict",
            "interpscan.devices",
            "interpscan.distributed",
            "interpscan.files",
            "interpscan.atomic",
            "interpscan.download",
            "interpscan.usercode",
            "interpscan.allocator",
            "interpscan.metrics",
            "interpscan.paths",
            "interpscan.refine",
            "interpscan.progress",
        ),
    ),
    # Reading what the user names: tensor files, checkpoints (Hugging Face, PEFT and DCP folders among them),
    # datasets, what a scan measures, and --groups resolved against tensor names.
    (
        "inputs",
        (
            "interpscan.tensorfile",
            "interpscan.huggingface",
            "interpscan.adapters",
            "interpscan.distcp",
            "interpscan.checkpoints",
            "interpscan.data.*",
            "interpscan.objectives",
            "interpscan.groups",
        ),
    ),
    # The networks a scan evaluates and states checked against them: above checkpoints, so that reading a
    # checkpoint never imports a model architecture.
    ("models", ("interpscan.models.*",)),
    # The scan itself: points × batches -> sums, no files, no printing.
    ("engine", ("interpscan.engine.*",)),
    # A scan put together: its inputs resolved, the choices made for the user, its numbers as tables with
    # intervals; and the small training loop that makes checkpoints for the demo and examples.
    (
        "scan",
        (
            "interpscan.inputs",
            "interpscan.decisions",
            "interpscan.tables",
            "interpscan.sanity",
            "interpscan.uncertainty",
            "interpscan.train",
            "interpscan.planes",
        ),
    ),
    # Outputs: runs read back, figures, the HTML page, the run directory, comparisons across runs.
    (
        "outputs",
        (
            "interpscan.results",
            "interpscan.plots",
            "interpscan.plots_plane",
            "interpscan.report",
            "interpscan.rundir",
            "interpscan.compare",
        ),
    ),
    # The library's entry points: a scan as one call, the layers report.
    ("library", ("interpscan.api", "interpscan.layers")),
    # The command line, and the demo it runs.
    ("cli", ("interpscan.cli", "interpscan.demo", "interpscan.__main__")),
]
# The layers that may not import these at module level (a function may, when it needs them).
TORCH_FREE = ("vocabulary", "foundations")
HEAVY = ("torch", "pandas", "plotly")

MAX_FUNCTION_LINES = 120  # end_lineno - lineno of the def line (decorators excluded, docstring included)
# Files whose functions may still be longer (none: every function of interpscan fits the bound).
LONG_FUNCTIONS_ALLOWED_IN: tuple[str, ...] = ()


@dataclass(frozen=True)
class Import:
    target: str  # the interpscan module imported
    line: int
    local: bool  # inside a function
    direct: bool  # named in the statement (not only a package run on the way to it)


def modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    found = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(nodes: Iterable[ast.AST], local: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement among ``nodes`` and inside them that runs, and whether it is inside a function."""
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, local
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _statements(node.orelse, local)
        else:
            inner = local or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            yield from _statements(ast.iter_child_nodes(node), inner)


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]


def imports_of(name: str, path: Path, known: set[str]) -> list[Import]:
    """The interpscan modules ``name`` imports (and the packages that run on the way to them)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node, local in _statements([ast.parse(path.read_text(), str(path))]):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            if not target.startswith("interpscan"):
                continue
            while target and target not in known:  # `from interpscan.x import attr`: the module that holds it
                target = target.rpartition(".")[0]
            mine = {*_ancestors(name), name}
            found.append(Import(target, node.lineno, local, True))
            found += [Import(a, node.lineno, local, False) for a in _ancestors(target) if a not in mine]
    return sorted({i for i in found if i.target != name}, key=lambda i: (i.line, i.target))


def layer_of(name: str) -> list[str]:
    """The layers whose entries name ``name``."""
    return [
        layer
        for layer, entries in LAYERS
        for entry in entries
        if entry == name or (entry.endswith(".*") and (name == entry[:-2] or name.startswith(entry[:-1])))
    ]


def graph() -> dict[str, list[Import]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def test_every_module_has_one_layer() -> None:
    found = modules()
    unplaced = [name for name in found if not layer_of(name)]
    assert not unplaced, (
        f"{', '.join(unplaced)}: not in LAYERS; add each to the layer in tests/test_layering.py that says what it is "
        "(the modules it imports must be in that layer or below it)"
    )
    twice = {name: layer_of(name) for name in found if len(layer_of(name)) > 1}
    assert not twice, f"in more than one layer: {twice}"
    stale = [
        entry
        for _, entries in LAYERS
        for entry in entries
        if not any(entry == name or (entry.endswith(".*") and name.startswith(entry[:-1])) for name in found)
    ]
    assert not stale, f"LAYERS names modules that do not exist: {', '.join(stale)}"


def _cycle_through(start: str, edges: dict[str, set[str]], within: set[str]) -> list[str]:
    """One cycle from ``start`` back to it, inside the strongly connected set ``within``."""
    path, seen = [start], {start}
    while True:
        here = path[-1]
        if start in edges[here] and len(path) > 1:
            return [*path, start]
        step = next((n for n in sorted(edges[here]) if n in within and n not in seen), None)
        if step is None:  # every neighbour visited: the start is one of them (strongly connected)
            return [*path, start]
        path.append(step)
        seen.add(step)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """A cycle through each strongly connected group of modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return [_cycle_through(min(g), edges, g) for g in groups]


def test_no_import_cycles() -> None:
    edges = {name: {i.target for i in found} for name, found in graph().items()}
    found = cycles(edges)
    assert not found, "import cycles (move the piece both sides need into a module below them):\n" + "\n".join(
        " -> ".join(c) for c in found
    )


def test_imports_point_down_the_layers() -> None:
    rank = {layer: k for k, (layer, _) in enumerate(LAYERS)}
    upward = []
    for name, found in graph().items():
        if not layer_of(name):
            continue  # test_every_module_has_one_layer says where
        mine = layer_of(name)[0]
        for i in found:
            theirs = layer_of(i.target)[0] if layer_of(i.target) else mine
            if rank[theirs] > rank[mine]:
                how = ("in a function, " if i.local else "") + ("" if i.direct else "through its package, ")
                upward.append(f"{name} ({mine}) imports {i.target} ({theirs}), {how}line {i.line}")
    assert not upward, "imports from a higher layer:\n" + "\n".join(sorted(upward))


def test_the_lowest_layers_import_no_heavy_library_at_module_level() -> None:
    heavy = []
    for name, path in modules().items():
        if not set(layer_of(name)) & set(TORCH_FREE):
            continue
        for node, local in _statements([ast.parse(path.read_text())]):
            spelled = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            heavy += [f"{name}: {s}, line {node.lineno}" for s in spelled if not local and s.split(".")[0] in HEAVY]
    assert not heavy, f"module-level imports of {', '.join(HEAVY)} in the torch-free layers:\n" + "\n".join(heavy)


def long_functions() -> list[tuple[int, str]]:
    """(lines, 'file:line name') of every function longer than MAX_FUNCTION_LINES."""
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno
                if lines > MAX_FUNCTION_LINES:
                    found.append((lines, f"{path.relative_to(SOURCE.parent)}:{node.lineno} {node.name}"))
    return sorted(found, reverse=True)


def test_no_function_is_longer_than_the_limit() -> None:
    allowed = set(LONG_FUNCTIONS_ALLOWED_IN)
    missing = [f for f in allowed if not (SOURCE.parent / f).is_file()]
    assert not missing, f"LONG_FUNCTIONS_ALLOWED_IN names files that are not there: {', '.join(missing)}"
    too_long = [f"{where} ({n} lines)" for n, where in long_functions() if where.partition(":")[0] not in allowed]
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines (split them):\n" + "\n".join(too_long)


# --- the checks themselves, on small made-up graphs and files --------------------------------------------------


def test_cycles_are_found_and_spelled_out() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(edges) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_are_read_with_their_kind(tmp_path: Path) -> None:
    package = tmp_path / "interpscan"
    (package / "sub").mkdir(parents=True)
    source = package / "sub" / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "from ..errors import UsageError\n"
        "if TYPE_CHECKING:\n"
        "    from ..engine import core\n"
        "else:\n"
        "    import interpscan.results\n"
        "def f():\n"
        "    from ..plots import path_figure\n"
    )
    known = {"interpscan", "interpscan.sub", "interpscan.sub.mod", "interpscan.sub.sibling", "interpscan.errors"}
    known |= {"interpscan.engine", "interpscan.engine.core", "interpscan.results", "interpscan.plots"}
    found = imports_of("interpscan.sub.mod", source, known)
    assert {(i.target, i.line, i.local, i.direct) for i in found} == {
        ("interpscan.sub.sibling", 2, False, True),
        ("interpscan.errors", 3, False, True),
        ("interpscan.results", 7, False, True),
        ("interpscan.plots", 9, True, True),
    }
    # a module of another package runs that package's __init__ first
    other = package / "user.py"
    other.write_text("from .engine.core import scan_points\n")
    assert {(i.target, i.direct) for i in imports_of("interpscan.user", other, known)} == {
        ("interpscan.engine.core", True),
        ("interpscan.engine", False),
    }


def test_a_module_is_placed_by_its_name_or_its_package() -> None:
    assert layer_of("interpscan.errors") == ["vocabulary"]
    assert layer_of("interpscan.data") == layer_of("interpscan.data.batches") == ["inputs"]
    assert layer_of("interpscan.engine.core") == ["engine"]
    assert layer_of("interpscan.brand_new") == []
