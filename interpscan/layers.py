"""``interpscan layers``: how ``--groups`` patterns resolve against a checkpoint, before any scan (no data).

The model is found the way a scan finds it (inputs.py: ``--model``, the forward a file brings, a record — code
only when trusted — or the one matching zoo model), so ``layers`` shows exactly the groups ``run`` would scan;
with no model to be had, patterns resolve against the tensor names' dotted prefixes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ModelError, opt
from .groups import Grouping, ModuleTree, group_table, parameter_names, resolve_groups
from .inputs import StateLike, as_checkpoint
from .models import check_against, find_model


@dataclass(frozen=True)
class LayerReport:
    """What ``interpscan layers`` shows: the resolved groups with sizes and (given FINAL) distances."""

    rows: list[dict[str, Any]]
    grouping: Grouping
    model: str | None  # the model spec whose module tree was used, None for the tensor names alone


def layer_report(
    init: StateLike,
    final: StateLike | None,
    groups: Sequence[str],
    model: str | None = None,
    model_args: Mapping[str, Any] | None = None,
    *,
    key: str | None = None,
    unsafe_pickle: bool = False,
    trust_recorded_code: bool = False,
) -> LayerReport:
    """Resolve ``groups`` against a checkpoint (and, given ``final``, measure each group's distance).

    Raises:
        InterpscanError: unreadable checkpoints, a model that does not match them, or bad patterns.
    """
    init_ck = as_checkpoint(init, "init", key=key, unsafe_pickle=unsafe_pickle)
    final_ck = as_checkpoint(final, "final", key=key, unsafe_pickle=unsafe_pickle) if final is not None else None
    reference = final_ck or init_ck
    resolved = find_model(model, model_args or {}, reference, init_ck, trust_recorded_code=trust_recorded_code)
    module = None
    if resolved is not None:
        from .checkpoints import align_to_model

        module = resolved.model
        names = list(module.state_dict())
        init_ck = align_to_model(init_ck, names)
        final_ck = align_to_model(final_ck, names) if final_ck is not None else None
        check_against(module, {"init": init_ck.tensors, **({"final": final_ck.tensors} if final_ck else {})})
        tree = ModuleTree.from_model(module)
    else:
        if final_ck is not None and set(final_ck.tensors) != set(init_ck.tensors):
            only = sorted(set(init_ck.tensors) ^ set(final_ck.tensors))
            raise ModelError(
                f"the checkpoints hold different tensors ({len(only)} in one only: {', '.join(only[:5])})",
                hint=f"pass {opt('model')} so wrapper prefixes can be resolved against the model's names",
            )
        tree = ModuleTree.from_names(init_ck.tensors)
    grouping = resolve_groups(groups, tree)
    rows = group_table(
        grouping,
        init_ck.tensors,
        final_ck.tensors if final_ck is not None else None,
        parameter_names(init_ck.tensors, module),
    )
    return LayerReport(rows, grouping, resolved.spec.text if resolved is not None else None)
