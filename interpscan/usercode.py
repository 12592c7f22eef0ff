"""Importing the user's own code: ``path/to/file.py:name`` and ``package.module:name``, for --model, --data and
--loss alike, with errors that name the option and the closest names.

User code that calls ``sys.exit`` (while imported, or in the function it names) would end interpscan silently with
its exit code: the SystemExit becomes an ExitCalled error here, which every caller of user code reports as it
reports any other exception the code raises.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import pkgutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import DataError, InterpscanError, opt
from .files import check_regular


class ExitCalled(RuntimeError):
    """The user's code called ``sys.exit`` (raised SystemExit): a function interpscan calls must return."""

    def __init__(self, code: object) -> None:
        super().__init__(f"it called sys.exit({'' if code is None else repr(code)}) instead of returning")
        self.code = code


def no_exit(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with SystemExit raised as ExitCalled (its signature kept, for inspect.signature)."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SystemExit as exc:
            raise ExitCalled(exc.code) from exc

    return call


def is_callable_spec(text: str) -> bool:
    """Whether ``text`` reads as ``path/to/file.py:name`` or ``package.module:name``."""
    target, sep, attr = text.rpartition(":")
    return bool(sep and target and attr.isidentifier() and not Path(text).exists())


def load_callable(text: str, *, option: str, error: type[InterpscanError] = DataError) -> Callable[..., Any]:
    """Resolve ``path/to/file.py:name`` (imported from the file) or ``package.module:name`` (imported from the
    Python path, as ``pkgutil.resolve_name`` does) into the callable it names.

    Args:
        option: the parameter it came from (``data``, ``loss``), for messages (errors.opt).
        error: the error class raised.

    Returns:
        the callable, with SystemExit raised as ExitCalled (no_exit).

    Raises:
        error: the file or module is missing, no regular file, or fails to import (or exits while imported), or
            the name is absent or not callable.
    """
    target, _, attr = text.rpartition(":")
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target)
        if not path.exists() and not path.is_symlink():
            raise error(f"{opt(option, text)}: file not found: {path}", hint="check the path before the ':'")
        check_regular(path, error, what="Python file")
        mod_name = f"interpscan_user_{path.stem}_{abs(hash(str(path.resolve())))}"
        loader_spec = importlib.util.spec_from_file_location(mod_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise error(f"{opt(option, text)}: cannot import {path} as a Python module")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[mod_name] = module
        try:
            no_exit(loader_spec.loader.exec_module)(module)
        except Exception as exc:
            del sys.modules[mod_name]
            raise error(f"{opt(option, text)}: importing {path} failed: {type(exc).__name__}: {exc}") from exc
        obj = getattr(module, attr, None)
        if obj is None:
            names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
            close = difflib.get_close_matches(attr, names, n=3, cutoff=0.4)
            raise error(
                f"{opt(option, text)}: {path} has no {attr!r}" + (f"; closest: {', '.join(close)}" if close else "")
            )
    else:
        try:
            obj = no_exit(pkgutil.resolve_name)(text)
        except (ImportError, AttributeError, ValueError) as exc:
            raise error(f"{opt(option, text)}: cannot resolve it ({exc})", hint="is the package importable?") from exc
        except Exception as exc:  # the module itself raised while being imported
            raise error(f"{opt(option, text)}: importing {target} failed: {type(exc).__name__}: {exc}") from exc
    if not callable(obj):
        raise error(f"{opt(option, text)}: is a {type(obj).__name__}, not a function")
    return no_exit(obj)
