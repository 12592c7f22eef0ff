"""Importing the user's own code: ``path/to/file.py:name`` and ``package.module:name``, for --model, --data and
--loss alike, with errors that name the option and the closest names."""

from __future__ import annotations

import difflib
import importlib.util
import pkgutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import DataError, InterpscanError


def is_callable_spec(text: str) -> bool:
    """Whether ``text`` reads as ``path/to/file.py:name`` or ``package.module:name``."""
    target, sep, attr = text.rpartition(":")
    return bool(sep and target and attr.isidentifier() and not Path(text).exists())


def load_callable(text: str, *, flag: str, error: type[InterpscanError] = DataError) -> Callable[..., Any]:
    """Resolve ``path/to/file.py:name`` (imported from the file) or ``package.module:name`` (imported from the
    Python path, as ``pkgutil.resolve_name`` does) into the callable it names.

    Args:
        flag: the option it came from (``--data``, ``--loss``), for messages.
        error: the error class raised.

    Raises:
        error: the file or module is missing or fails to import, or the name is absent or not callable.
    """
    target, _, attr = text.rpartition(":")
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target)
        if not path.is_file():
            raise error(f"{flag} {text}: file not found: {path}", hint="check the path before the ':'")
        mod_name = f"interpscan_user_{path.stem}_{abs(hash(str(path.resolve())))}"
        loader_spec = importlib.util.spec_from_file_location(mod_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise error(f"{flag} {text}: cannot import {path} as a Python module")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[mod_name] = module
        try:
            loader_spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[mod_name]
            raise error(f"{flag} {text}: importing {path} failed: {type(exc).__name__}: {exc}") from exc
        obj = getattr(module, attr, None)
        if obj is None:
            names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
            close = difflib.get_close_matches(attr, names, n=3, cutoff=0.4)
            raise error(f"{flag} {text}: {path} has no {attr!r}" + (f"; closest: {', '.join(close)}" if close else ""))
    else:
        try:
            obj = pkgutil.resolve_name(text)
        except (ImportError, AttributeError, ValueError) as exc:
            raise error(f"{flag} {text}: cannot resolve it ({exc})", hint="is the package importable?") from exc
        except Exception as exc:  # the module itself raised while being imported
            raise error(f"{flag} {text}: importing {target} failed: {type(exc).__name__}: {exc}") from exc
    if not callable(obj):
        raise error(f"{flag} {text}: is a {type(obj).__name__}, not a function")
    return obj  # type: ignore[no-any-return]
