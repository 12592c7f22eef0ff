"""State dicts by their names: the wrapper prefixes training code adds (``module.``, ``model.``, ``_orig_mod.``),
stripped to match a model's names, and a census of dtypes. Below both the checkpoint reader and the models, so
that reading a checkpoint never imports a model architecture."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# Wrapper prefixes added by DDP / DataParallel, Lightning-style wrappers and torch.compile.
WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")


def strip_prefixes(names: Iterable[str], model_names: set[str]) -> tuple[dict[str, str], tuple[str, ...]]:
    """Map each checkpoint name to the model's name by stripping wrapper prefixes at any nesting.

    A prefix is stripped only while the name is not already one of the model's names, so a model whose own
    attribute is called ``model`` keeps its keys. Then, for a first name component the model has no tensors
    under (a Lightning module's ``net.``, say), it is stripped when that makes every name under it one of the
    model's. Returns (old name -> new name, prefixes stripped).
    """

    def strip(name: str) -> tuple[str, list[str]]:
        new, removed = name, []
        while new not in model_names:
            prefix = next((p for p in WRAPPER_PREFIXES if new.startswith(p)), None)
            if prefix is None:
                break
            new = new[len(prefix) :]
            removed.append(prefix)
        return new, removed

    mapping: dict[str, str] = {}
    stripped: set[str] = set()
    unmatched: dict[str, list[str]] = {}  # first component -> names under it that match nothing
    for name in names:
        new, removed = strip(name)
        if new in model_names:
            mapping[name] = new
            stripped.update(removed)
        else:
            mapping[name] = name
            head, dot, _ = name.partition(".")
            if dot:
                unmatched.setdefault(head, []).append(name)
    model_heads = {n.partition(".")[0] for n in model_names}
    for head, group in unmatched.items():
        if head in model_heads or any(mapping[n] != n and n.startswith(head + ".") for n in mapping):
            continue
        renamed = {n: strip(n[len(head) + 1 :]) for n in group}
        if all(new in model_names for new, _ in renamed.values()):
            for n, (new, removed) in renamed.items():
                mapping[n] = new
                stripped.update([head + ".", *removed])
    return mapping, tuple(sorted(stripped))


def dtype_counts(tensors: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """How many tensors of each dtype (``float32``, ``int64``, …), sorted by name: run.json records it."""
    counts: dict[str, int] = {}
    for t in tensors.values():
        name = str(t.dtype).removeprefix("torch.")
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))
