"""The optional packages interpscan uses for some inputs and outputs, the extra that installs each
(``pip install 'interpscan[EXTRA]'``), and the one import that says which package is missing or broken."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType

from .errors import InterpscanError


@dataclass(frozen=True)
class Package:
    """An optional package: its import name, its name on PyPI, and interpscan's extra that installs it."""

    module: str  # top-level import name, e.g. PIL
    name: str  # what pip installs, e.g. Pillow
    extra: str
    built_for_torch: bool = False  # compiled against one torch version: a mismatch breaks its import


PACKAGES = {
    p.module: p
    for p in (
        Package("PIL", "Pillow", "images"),
        Package("transformers", "transformers", "hf"),
        Package("torchvision", "torchvision", "vision", built_for_torch=True),
        Package("timm", "timm", "vision"),
        Package("kaleido", "kaleido", "static"),
    )
}


def install_hint(module: str) -> str:
    """How to install the optional package whose import name is ``module``: its extra first."""
    package = PACKAGES[module.partition(".")[0]]
    return f"pip install 'interpscan[{package.extra}]' (or pip install {package.name})"


def import_optional(
    module: str, *, purpose: str, error: type[InterpscanError], instead: str | None = None
) -> ModuleType:
    """Import ``module`` of an optional package, for ``purpose`` (what needs it: "model 'timm:resnet18'");
    ``instead``: what the user can do without the package, added to the hint when it is missing.

    Raises:
        error: the package (or one it imports) is not installed: "PURPOSE needs NAME, which is not installed",
            the hint naming its extra; or it is installed and fails to import, naming the package whose import
            fails (torchvision built for another torch, when it is timm that imports it) and how to reinstall it.
    """
    top = module.partition(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = (exc.name or top).partition(".")[0]
        if missing == top or missing in PACKAGES:
            package = PACKAGES.get(missing)
            hint = install_hint(missing) if package else f"pip install {missing}"
            raise error(
                f"{purpose} needs {package.name if package else missing}, which is not installed",
                hint=f"{hint}, or {instead}" if instead else hint,
            ) from exc
        raise _broken(exc, top, purpose, error) from exc
    except Exception as exc:  # a broken install raises anything from ImportError to RuntimeError
        raise _broken(exc, top, purpose, error) from exc


def _broken(exc: BaseException, top: str, purpose: str, error: type[InterpscanError]) -> InterpscanError:
    """The error for ``top`` failing to import: it names the package in whose code the import failed."""
    culprit = _culprit(exc) or top
    package = PACKAGES.get(culprit)
    name = package.name if package else culprit
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    wanted = PACKAGES[top].name if top in PACKAGES else top
    what = f"{name}, which is installed" if culprit == top else f"{wanted}, and {name} (which it imports) is installed"
    if package is not None and package.built_for_torch:
        import torch

        hint = f"reinstall {name} in the version built for this torch ({torch.__version__})"
    else:
        hint = f"reinstall {name} (pip install --force-reinstall {name})"
    return error(f"{purpose} needs {what} but fails to import: {type(exc).__name__}: {text}", hint=hint)


def _culprit(exc: BaseException) -> str | None:
    """The optional package in whose code ``exc`` was raised (the innermost such frame, causes included)."""
    homes = {name: where for name in PACKAGES if (where := _home(name)) is not None}
    found = None
    for filename in _frames(exc):
        for name, where in homes.items():
            if Path(filename).resolve().is_relative_to(where):
                found = name
    return found


def _home(module: str) -> Path | None:
    """The folder a top-level package is imported from, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # ValueError: a module whose import failed left no spec behind
        return None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]).resolve() if locations else None


def _frames(exc: BaseException, seen: frozenset[int] = frozenset()) -> Iterator[str]:
    """The file of every frame ``exc`` passed through, outermost first, after those of its cause or context."""
    chained = exc.__cause__ or exc.__context__
    if chained is not None and id(chained) not in seen:
        yield from _frames(chained, seen | {id(exc)})
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        yield tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
