"""Layer groups: resolve ``--groups`` patterns into named sets of tensors that move together.

Patterns are globs (``fnmatch.fnmatchcase``: case-sensitive, ``*`` crosses dots) matched against every module
path and every tensor name. Without a module tree (a bare state dict), module paths are the dotted prefixes of
the tensor names.

- ``PATTERN``: each distinct module it matches is one group named after it, holding every tensor beneath it
  (the shortest matching prefix wins, so ``layer*`` gives ``layer1``…, not ``layer1.0``); a tensor matched
  directly, outside every matched module, is a group of its own.
- ``NAME=PATTERN[,PATTERN…]``: everything any pattern matches is one group NAME; ``!PATTERN`` removes.
- Presets: ``@top`` (each top-level module), ``@leaves`` (each module that owns tensors directly), ``@depth:N``
  (tensors grouped by the first N components of their module path).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from .errors import UsageError, opt

RESERVED = ("all", "rest")


def natural_key(text: str) -> list[Any]:
    """Sort key that puts layer10 after layer9."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


@dataclass(frozen=True)
class Group:
    """A named set of tensors (state-dict names, in model order) and the pattern it came from."""

    name: str
    tensors: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class Grouping:
    """Resolved groups, in the order the user gave them, and the tensors in none of them."""

    groups: tuple[Group, ...]
    rest: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.groups)


@dataclass(frozen=True)
class ModuleTree:
    """Tensor names in state-dict order and module paths (without the root), as the patterns see them."""

    tensors: tuple[str, ...]
    modules: tuple[str, ...]

    @classmethod
    def from_model(cls, model: Any) -> ModuleTree:
        tensors = tuple(model.state_dict())
        return cls(tensors, tuple(name for name, _ in model.named_modules() if name))

    @classmethod
    def from_names(cls, names: Iterable[str]) -> ModuleTree:
        tensors = tuple(names)
        modules: dict[str, None] = {}
        for name in tensors:
            parts = name.split(".")
            for i in range(1, len(parts)):
                modules[".".join(parts[:i])] = None
        return cls(tensors, tuple(modules))

    def under(self, module: str) -> list[str]:
        prefix = module + "."
        return [t for t in self.tensors if t.startswith(prefix)]

    def owner(self, tensor: str) -> str:
        """The module path that holds ``tensor`` directly ("" for a top-level tensor)."""
        return tensor.rpartition(".")[0]


def _no_match(pattern: str, tree: ModuleTree) -> UsageError:
    literal = pattern.replace("*", "").replace("?", "")
    candidates = sorted({*tree.modules, *tree.tensors}, key=natural_key)
    close = difflib.get_close_matches(literal, candidates, n=3, cutoff=0.3) if literal else []
    if not close:
        close = [m for m in tree.modules if "." not in m][:5]
    return UsageError(
        f"{opt('groups')} pattern {pattern!r} matched no module or tensor"
        + (f"; closest: {', '.join(close)}" if close else ""),
        hint="`interpscan layers CKPT` shows the names patterns can match",
    )


def _expand(pattern: str, tree: ModuleTree) -> list[tuple[str, list[str]]]:
    """(group name, tensors) for each distinct module or tensor an unnamed pattern matches."""
    matched = [m for m in tree.modules if fnmatchcase(m, pattern) and tree.under(m)]
    # the shortest matching prefix wins: drop modules inside another matched module
    outer = [m for m in matched if not any(m.startswith(o + ".") for o in matched if o != m)]
    covered = {t for m in outer for t in tree.under(m)}
    direct = [t for t in tree.tensors if fnmatchcase(t, pattern) and t not in covered]
    found = [(m, tree.under(m)) for m in outer] + [(t, [t]) for t in direct]
    return sorted(found, key=lambda item: natural_key(item[0]))


def _matched_tensors(pattern: str, tree: ModuleTree) -> list[str]:
    found = _expand(pattern, tree)
    if not found:
        raise _no_match(pattern, tree)
    return [t for _, ts in found for t in ts]


def _preset(spec: str, tree: ModuleTree) -> list[tuple[str, list[str]]]:
    if spec == "@top":
        spec = "@depth:1"  # each top-level module, and each tensor the root module owns itself
    if spec == "@leaves":
        owners: dict[str, list[str]] = {}
        for t in tree.tensors:
            owners.setdefault(tree.owner(t) or t, []).append(t)
        return list(owners.items())
    if spec.startswith("@depth:"):
        try:
            depth = int(spec.removeprefix("@depth:"))
        except ValueError:
            depth = 0
        if depth < 1:
            raise UsageError(f"preset {spec!r}: N must be a positive integer", hint="e.g. @depth:2")
        by_prefix: dict[str, list[str]] = {}
        for t in tree.tensors:
            path = tree.owner(t).split(".") if tree.owner(t) else []
            key = ".".join(path[:depth]) or t
            by_prefix.setdefault(key, []).append(t)
        return list(by_prefix.items())
    raise UsageError(f"unknown preset {spec!r}", hint="presets: @top, @leaves, @depth:N")


def split_specs(values: Sequence[str]) -> list[str]:
    """Each ``--groups`` value is one ``NAME=…`` group, or a comma-separated list of patterns and presets."""
    specs: list[str] = []
    for value in values:
        value = value.strip()
        if "=" in value.split(",")[0]:
            specs.append(value)
        else:
            specs.extend(v.strip() for v in value.split(",") if v.strip())
    return specs


def resolve_groups(values: Sequence[str], tree: ModuleTree) -> Grouping:
    """Resolve ``--groups`` values against a model's tensors (see the module docstring).

    Raises:
        UsageError: a pattern that matches nothing (with the closest names), a tensor in two groups, a name
            used twice or reserved (``all``, ``rest``), or an empty named group.
    """
    order = {t: i for i, t in enumerate(tree.tensors)}
    raw: list[tuple[str, list[str], str]] = []
    for spec in split_specs(values):
        if "=" in spec.split(",")[0]:
            name, _, body = spec.partition("=")
            name = name.strip()
            if not name:
                raise UsageError(f"group {spec!r} has no name before '='")
            include: list[str] = []
            exclude: set[str] = set()
            for pattern in (p.strip() for p in body.split(",") if p.strip()):
                if pattern.startswith("!"):
                    exclude.update(_matched_tensors(pattern[1:], tree))
                else:
                    include.extend(_matched_tensors(pattern, tree))
            members = [t for t in dict.fromkeys(include) if t not in exclude]
            if not members:
                raise UsageError(f"group {name!r} is empty after its exclusions ({spec!r})")
            raw.append((name, members, spec))
        elif spec.startswith("@"):
            found = _preset(spec, tree)
            raw.extend((n, ts, spec) for n, ts in found)
        else:
            found = _expand(spec, tree)
            if not found:
                raise _no_match(spec, tree)
            raw.extend((n, ts, spec) for n, ts in found)

    seen_names: dict[str, str] = {}
    owner: dict[str, str] = {}
    clashes: dict[tuple[str, str], list[str]] = {}  # (first group, second group) -> shared tensors
    groups = []
    for name, members, spec in raw:
        if name in RESERVED:
            raise UsageError(f"a group cannot be called {name!r} (reserved)", hint=f"use e.g. {name}_=... instead")
        if name in seen_names:
            raise UsageError(f"group {name!r} is defined twice (by {seen_names[name]!r} and {spec!r})")
        seen_names[name] = spec
        for t in members:
            if t in owner:
                clashes.setdefault((owner[t], name), []).append(t)
            else:
                owner[t] = name
        groups.append(Group(name, tuple(sorted(members, key=order.__getitem__)), spec))
    if clashes:
        listed = "; ".join(
            f"{len(ts)} in both {a} and {b} ({', '.join(ts[:3])}{', …' if len(ts) > 3 else ''})"
            for (a, b), ts in clashes.items()
        )
        raise UsageError(
            f"groups overlap: {listed}",
            hint="a tensor can move in one group only; make the patterns disjoint or exclude with NAME=PAT,!PAT",
        )
    rest = tuple(t for t in tree.tensors if t not in owner)
    return Grouping(tuple(groups), rest)


BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def parameter_names(tensors: Mapping[str, Any], model: Any | None = None) -> list[str]:
    """The trainable parameters among ``tensors``: the model's when there is one, else every floating tensor
    that is not a batch-norm statistic (a bare state dict does not say which are buffers)."""
    if model is not None:
        return [n for n, _ in model.named_parameters() if n in tensors]
    return [n for n, t in tensors.items() if t.is_floating_point() and n.rpartition(".")[2] not in BUFFER_SUFFIXES]


def group_table(
    grouping: Grouping,
    start: Mapping[str, Any],
    end: Mapping[str, Any] | None,
    parameters: Sequence[str],
) -> list[dict[str, Any]]:
    """One row per group (and ``rest`` when non-empty): tensors, parameter count and share, and — given ``end``
    — ‖θ_T−θ_0‖, relative change and cosine over the group's parameters (running statistics excluded)."""
    from .metrics import distances

    params = set(parameters)
    total = sum(int(start[p].numel()) for p in params)
    rows = []
    entries = [(g.name, g.tensors) for g in grouping.groups]
    if grouping.rest:
        entries.append(("rest", grouping.rest))
    for name, tensors in entries:
        own = [t for t in tensors if t in params]
        count = sum(int(start[t].numel()) for t in own)
        row: dict[str, Any] = {
            "group": name,
            "tensors": len(tensors),
            "names": list(tensors),
            "parameters": count,
            "share": count / total if total else float("nan"),
        }
        if end is not None:
            d = distances(start, end, own)
            row.update(distance=d.distance, relative_distance=d.relative_distance, cosine=d.cosine)
        rows.append(row)
    return rows
