"""The optional packages interpscan uses for some inputs and outputs, the extra that installs each
(``pip install 'interpscan[EXTRA]'``), and the one import that says which package is missing or broken."""

from __future__ import annotations

import importlib
import importlib.machinery
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
        if _culprit(exc) in (None, top) and top in PACKAGES:
            # a dependency of the package, not an optional package of interpscan's: named, and the extra that
            # installs the package with its dependencies
            raise error(
                f"{purpose} needs {PACKAGES[top].name}, and {missing} (which it imports) is not installed",
                hint=f"pip install {missing}, or reinstall {PACKAGES[top].name} with its dependencies: "
                f"{install_hint(top)}",
            ) from exc
        raise _broken(exc, top, purpose, error) from exc
    except Exception as exc:  # a broken install raises anything from ImportError to RuntimeError
        raise _broken(exc, top, purpose, error) from exc


def broken_dependency(
    exc: BaseException, using: str, purpose: str, error: type[InterpscanError]
) -> InterpscanError | None:
    """The error for ``exc``, raised while ``using`` (an optional package's import name) ran, when it comes from
    another optional package that fails (timm building a model calls into a torchvision built for another torch);
    None when it does not.
    """
    culprit = _culprit(exc)
    if culprit is None or culprit == using.partition(".")[0]:
        return None
    return _broken(exc, using.partition(".")[0], purpose, error, verb="fails")


def _broken(
    exc: BaseException, top: str, purpose: str, error: type[InterpscanError], verb: str = "fails to import"
) -> InterpscanError:
    """The error for ``top`` failing: it names the package in whose code it failed, and how to reinstall that."""
    culprit = _culprit(exc) or top
    package = PACKAGES.get(culprit)
    name = package.name if package else culprit
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    wanted = PACKAGES[top].name if top in PACKAGES else top
    what = f"{name}, which is installed" if culprit == top else f"{wanted}, and {name} (which it imports) is installed"
    if package is not None and package.built_for_torch:
        import torch

        hint = (
            f"reinstall {name} in the version built for this torch ({torch.__version__}); "
            f"{install_hint(culprit)} picks it when the index has it"
        )
    elif package is not None:
        hint = f"reinstall {name}: pip install --force-reinstall {name} (interpscan's extra: '{package.extra}')"
    else:
        hint = f"reinstall {name} (pip install --force-reinstall {name})"
    return error(f"{purpose} needs {what} but {verb}: {type(exc).__name__}: {text}", hint=hint)


def _culprit(exc: BaseException) -> str | None:
    """The optional package whose code ``exc`` comes from: the innermost frame in one (causes included), else, for
    an ImportError raised in the importer's code ("cannot import name 'x' from 'torchvision.ops'"), the package it
    names."""
    homes = {name: where for name in PACKAGES if (where := _home(name)) is not None}
    found = None
    for filename in _frames(exc):
        for name, where in homes.items():
            if Path(filename).resolve().is_relative_to(where):
                found = name
    named = _imported_from(exc)
    if named is not None and named in PACKAGES and named != found:
        return named
    return found


def _imported_from(exc: BaseException) -> str | None:
    """The top-level package an ImportError (or one it was raised from) could not import a name from."""
    current: BaseException | None = exc
    for _ in range(32):  # a chain of causes is short; a crafted cycle must not hang
        if current is None:
            break
        if isinstance(current, ImportError) and not isinstance(current, ModuleNotFoundError) and current.name:
            return current.name.partition(".")[0]
        current = current.__cause__ or current.__context__
    return None


def _home(module: str) -> Path | None:
    """The folder a top-level package is imported from, found on sys.path without importing it (and whatever a
    failed import left in sys.modules)."""
    try:
        spec = importlib.machinery.PathFinder.find_spec(module)
    except (ImportError, ValueError):
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
