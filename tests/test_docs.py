"""The docs stay true: docs/cli.md is what `--help` prints, links resolve, every flag the docs name exists, the
module map lists every module, measured speeds stay in benchmarks/README.md, and nothing cites a file outside
the repository."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
# The pages written by hand that describe interpscan (paper.md reports an experiment; bad-inputs.md and cli.md
# are generated).
GUIDES = [README, *(DOCS / n for n in ("guide.md", "checkpoints.md", "data.md", "scaling.md", "outputs.md"))]
GUIDES += [DOCS / n for n in ("library.md", "design.md", "development.md", "planes.md")]
MAX_README_LINES = 250


def _reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _options(text: str) -> dict[str, set[str]]:
    """Per section of docs/cli.md (or of its rendering): the long options its help lists."""
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    return {s.splitlines()[0]: set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", s)) for s in sections}


def test_cli_reference_is_current() -> None:
    reference = _reference()
    written = reference.TARGET.read_text(encoding="utf-8")
    rendered = reference.render()
    hint = "docs/cli.md differs from the CLI's --help: run python scripts/cli_reference.py"
    recorded = re.search(r"\(typer ([^,]+), rich ([^)]+)\)", written)
    assert recorded is not None, hint
    if recorded.groups() == reference.renderers():
        assert written == rendered, hint
    else:  # another typer or rich draws the same help differently: compare what it says, not how it looks
        assert _options(written) == _options(rendered), hint


def test_cli_reference_ignores_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Width, colour and CI variables change nothing: the file is the same wherever it is regenerated."""
    import typer.rich_utils

    reference = _reference()
    plain = reference.render()
    for name, value in {"COLUMNS": "50", "TERMINAL_WIDTH": "60", "FORCE_COLOR": "1", "GITHUB_ACTIONS": "true"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("NO_COLOR", raising=False)
    # what typer reads from those variables when it is imported under them
    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", 60)
    monkeypatch.setattr(typer.rich_utils, "FORCE_TERMINAL", True)
    assert reference.render() == plain
    assert "\x1b[" not in plain
    assert max(len(line) for line in plain.splitlines() if line.startswith(("│", "╭", "╰"))) == reference.WIDTH
    assert "## interpscan run\n" in plain
    assert "--bootstrap" in _options(plain)["interpscan run"]


def _cli_flags() -> set[str]:
    import typer

    from interpscan.cli import app

    group: Any = typer.main.get_command(app)
    root = group.make_context("interpscan", [], resilient_parsing=True)
    flags = set()
    for command in [group, *(group.get_command(root, n) for n in group.list_commands(root))]:
        for param in command.params:
            flags.update(o for o in [*param.opts, *param.secondary_opts] if o.startswith("--"))
    return flags | {"--help"}  # click adds --help to every command outside its parameters


# Flags of other programs the docs show: torchrun's, SLURM's, pip's, ruff's and the scripts'.
OTHER_FLAGS = {
    *("--standalone", "--nproc-per-node", "--nnodes", "--rdzv-backend", "--rdzv-endpoint", "--rdzv-id"),
    *("--nodes", "--ntasks-per-node", "--gpus-per-node", "--cpus-per-task"),
    "--index-url",
    "--check",  # ruff format --check
    "--table",  # tests/make_bad_inputs.py
}


def test_every_flag_the_docs_name_exists() -> None:
    known = _cli_flags() | OTHER_FLAGS
    unknown = {
        f"{page.relative_to(ROOT)}: {flag}"
        for page in GUIDES
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", page.read_text(encoding="utf-8"))
        if flag not in known
    }
    assert not unknown, f"flags no command has: {sorted(unknown)}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _headings(page: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    return re.findall(r"^#+ (.+)$", text, flags=re.M)


def _anchors(page: Path) -> set[str]:
    return {_slug(h) for h in _headings(page)}


@pytest.mark.parametrize("page", [*GUIDES, DOCS / "cli.md", DOCS / "paper.md"], ids=lambda p: p.name)
def test_links_resolve(page: Path) -> None:
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in _anchors(linked)):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


def test_slug_matches_github() -> None:
    assert _slug("Finding the cliff: `--refine`") == "finding-the-cliff---refine"
    assert _slug("The seed paper's findings") == "the-seed-papers-findings"
    assert _slug("per_example.npz") == "per_examplenpz"


def test_module_map_lists_every_module() -> None:
    text = (DOCS / "design.md").read_text(encoding="utf-8")
    section = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([\w/]+\.py)` \|", section, flags=re.M))
    package = ROOT / "interpscan"
    present = {p.relative_to(package).as_posix() for p in package.rglob("*.py")}
    assert listed == present, f"not in the map: {sorted(present - listed)}; gone: {sorted(listed - present)}"


def test_pointers_from_code_name_real_sections() -> None:
    """A comment that points to a section of a page under docs/ (the page, then the heading in quotes) names a
    heading the page has."""
    headings = {page.name: {_slug(h) for h in _headings(page)} for page in DOCS.glob("*.md")}
    pointers = re.compile(r'docs/([\w-]+\.md), "([^"]+)"')
    broken = [
        f"{path.relative_to(ROOT)}: {page}, {section!r}"
        for path in _sources()
        for page, section in pointers.findall(path.read_text(encoding="utf-8", errors="replace"))
        if _slug(section) not in headings.get(page, set())
    ]
    assert not broken, f"no such section: {broken}"


def test_readme_reads_in_one_sitting() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= MAX_README_LINES


TEXT = {".py", ".md", ".sh", ".toml", ".txt", ".json", ".cfg", ""}  # a suffix, or none (Makefile, .ci/run)


def _sources() -> list[Path]:
    """The repository's text files."""
    tops = ["interpscan", "tests", "examples", "scripts", "benchmarks", "docs", ".ci"]
    files = [p for top in tops for p in (ROOT / top).rglob("*") if p.is_file() and p.suffix in TEXT]
    return [*files, README, ROOT / "Makefile", ROOT / "pyproject.toml"]


def test_nothing_cites_files_outside_the_repository() -> None:
    """The science and the engine notes live in docs/design.md; a note kept elsewhere is not there for a reader."""
    # spelled in halves, so that this file does not cite them itself
    halves = [("DOMAIN", ".md"), ("ENGINE", "-NOTES"), ("ENGINE", "_NOTES"), ("STYLE", ".md"), ("/work/", "shared")]
    cited = re.compile("|".join(re.escape(a + b) for a, b in halves))
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in _sources()
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if cited.search(line)
    ]
    assert not found, f"cite docs/design.md (by section) instead: {found}"


def test_measured_speeds_stay_in_the_benchmarks() -> None:
    """Code, help and guides say "faster on CPU (see benchmarks)": a measured ratio copied into them goes stale."""
    ratio = re.compile(r"\d(?:[\d.]*)(?:\s*[–-]\s*[\d.]+)?\s*[×x]\s+(?:faster|slower)|about \d[\d.]*\s*[×x]\b")
    pages = [*GUIDES, DOCS / "cli.md"]
    code = list((ROOT / "interpscan").rglob("*.py"))
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in [*pages, *code]
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if ratio.search(line)
    ]
    assert not found, f"say 'faster on CPU (see benchmarks)' and put the numbers in benchmarks/README.md: {found}"
