"""Checkpoint states against a model: every missing, unexpected, mis-shaped or mistyped tensor at once, tied
weights, and what ``--no-strict`` filled or dropped."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ModelError, opt
from ..statedict import dtype_counts


def tied_names(model: nn.Module) -> tuple[tuple[str, ...], ...]:
    """Groups of state-dict names that are one tensor in the model (tied weights, e.g. embedding and decoder)."""
    groups: dict[int, list[str]] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(t), []).append(name)
    return tuple(tuple(g) for g in groups.values() if len(g) > 1)


# --no-strict refuses to fill more than this share of the model's elements with its own (random) initial values:
# beyond it the scan would measure mostly a random network, and exit 0 with a wrong curve.
MAX_FILLED_SHARE = 0.05


def _kind(t: torch.Tensor) -> str:
    return "floating" if t.is_floating_point() else "complex" if t.is_complex() else "integer"


@dataclass(frozen=True)
class StateMatch:
    """Checkpoint states renamed and completed to exactly the model's names, and what that took."""

    states: dict[str, dict[str, torch.Tensor]]  # label ("init", "final") -> the model's names -> tensors
    tied: tuple[tuple[str, ...], ...]  # names that share one tensor in the model
    filled: dict[str, dict[str, str]]  # label -> name -> where its value came from
    ignored: dict[str, tuple[str, ...]]  # label -> names the model does not have, dropped (--no-strict)
    model_dtypes: dict[str, int]  # the model's own tensors, which each point's weights are written into

    def to_json(self) -> dict[str, Any]:
        """run.json's account of the weights: ties, what was filled or dropped, and the dtype story."""
        return {
            "tied": [list(g) for g in self.tied],
            "filled": {k: dict(sorted(v.items())) for k, v in self.filled.items() if v},
            "ignored": {k: list(v) for k, v in self.ignored.items() if v},
            "dtypes": {
                **{label: dtype_counts(t) for label, t in self.states.items()},
                "model": self.model_dtypes,
                # the engine lerps floating tensors in float32 whatever the files hold (exact at α=0 and 1 for
                # float16/bfloat16 inputs); integer tensors (num_batches_tracked) come from the final state
                "interpolated_in": "float32",
                "integers_from": "final",
            },
        }

    def notes(self) -> list[str]:
        """One line per checkpoint that needed --no-strict, for the log."""
        out = []
        for label in self.states:
            parts = []
            if self.ignored.get(label):
                parts.append(f"ignored {len(self.ignored[label])} tensors the model lacks")
            tolerated = [k for k, v in self.filled.get(label, {}).items() if not v.startswith("tied")]
            if tolerated:
                shown = ", ".join(tolerated[:3]) + (", …" if len(tolerated) > 3 else "")
                parts.append(f"filled {len(tolerated)} missing tensors ({shown})")
            if parts:
                out.append(f"{label}: {'; '.join(parts)} ({opt('strict', False)}; listed in run.json)")
        return out


def match_states(
    model: nn.Module, checkpoints: Mapping[str, Mapping[str, torch.Tensor]], *, strict: bool = True
) -> StateMatch:
    """Check every checkpoint against the model and against each other, all problems at once.

    A tied name (one tensor under two names in the model) that a checkpoint stores once — as safetensors'
    ``save_model`` does — takes its partner's value. With ``strict=False``, a missing tensor takes the other
    checkpoint's value (so it does not move), else the model's own; a tensor the model lacks is dropped.

    Args:
        model: the model whose ``state_dict()`` defines the expected names, shapes and dtype kinds.
        checkpoints: label (e.g. "init", "final") -> tensors, already aligned with ``align_to_model``.
        strict: missing and unexpected tensors are errors (the default) or are tolerated and recorded.

    Raises:
        ModelError: listing, per checkpoint and sorted, every missing, unexpected (with the nearest model names),
            mis-shaped and differing tied tensor, then every tensor whose dtype kind (floating, integer, complex)
            differs between the checkpoints and the model.
    """
    expected = model.state_dict()
    tied = tied_names(model)
    states = {label: dict(tensors) for label, tensors in checkpoints.items()}
    filled: dict[str, dict[str, str]] = {label: {} for label in states}
    problems: list[str] = []
    tolerable = 0
    for label, tensors in states.items():
        tie_problems = []
        for group in tied:
            present = [n for n in group if n in tensors]
            if not present:
                continue
            first = tensors[present[0]]
            if any(tensors[n].shape != first.shape or not torch.equal(tensors[n], first) for n in present[1:]):
                tie_problems.append(f"{label}: tied tensors {', '.join(present)} hold different values")
            for n in group:
                if n not in tensors:
                    tensors[n] = first
                    filled[label][n] = f"tied to {present[0]}"
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        shapes = sorted(k for k in set(expected) & set(tensors) if tensors[k].shape != expected[k].shape)
        tolerable += len(missing) + len(unexpected)
        if strict:
            for k in missing:
                problems.append(f"{label}: missing {k} {list(expected[k].shape)}")
            for k in unexpected:
                close = difflib.get_close_matches(k, expected, n=2, cutoff=0.6)
                near = f" (closest model names: {', '.join(close)})" if close else ""
                problems.append(f"{label}: unexpected {k} {list(tensors[k].shape)}{near}")
        for k in shapes:
            problems.append(f"{label}: shape of {k} is {list(tensors[k].shape)}, model has {list(expected[k].shape)}")
        problems += tie_problems
    for k in sorted(expected):
        by_label = {label: tensors[k] for label, tensors in states.items() if k in tensors}
        if any(_kind(t) != _kind(expected[k]) for t in by_label.values()):
            kinds = ", ".join(f"{label} {str(t.dtype).removeprefix('torch.')}" for label, t in by_label.items())
            problems.append(f"dtype of {k}: {kinds}, model {str(expected[k].dtype).removeprefix('torch.')}")
    if problems:
        shown = problems[:40]
        more = f"; … and {len(problems) - 40} more" if len(problems) > 40 else ""
        renamed = _renamed(expected, states)
        only_names = strict and tolerable == len(problems) and not renamed
        hint = f"check {opt('model')} and {opt('model_args')} (e.g. width, num_classes, in_channels; timm: in_chans)"
        if renamed:
            # --no-strict would fill these from the model's random init: never suggest it for renamed tensors
            old, new = renamed[0]
            hint += (
                f"; {len(renamed)} tensors look renamed (the same shape under another name, e.g. {old} in the file, "
                f"{new} in the model): saved by other code than the model's? A Hugging Face model is read right "
                "from its save_pretrained folder (with config.json)"
            )
        raise ModelError(
            f"the model does not match the checkpoints ({len(problems)} problems): " + "; ".join(shown) + more,
            hint=hint + (f"; {opt('strict', False)} tolerates missing and unexpected tensors" if only_names else ""),
        )
    ignored: dict[str, tuple[str, ...]] = {}
    for label, tensors in states.items():
        ignored[label] = tuple(sorted(set(tensors) - set(expected)))
        for k in ignored[label]:
            del tensors[k]
        for k in sorted(set(expected) - set(tensors)):
            other = next((lbl for lbl, t in states.items() if lbl != label and k in checkpoints[lbl]), None)
            if other is not None:
                tensors[k] = states[other][k]
                filled[label][k] = f"from {other} (does not move)"
            else:
                tensors[k] = expected[k].detach().clone()
                filled[label][k] = "the model's own value"
    _check_filled_share(expected, filled)
    return StateMatch(states, tied, filled, ignored, dtype_counts(expected))


def _renamed(
    expected: Mapping[str, torch.Tensor], states: Mapping[str, Mapping[str, torch.Tensor]]
) -> list[tuple[str, str]]:
    """(name in the file, name in the model) for each missing tensor that an unexpected one of the same shape
    (and the nearest name among those) could be: tensors stored under other names, not absent."""
    pairs: list[tuple[str, str]] = []
    for tensors in states.values():
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        for k in missing:
            same = [u for u in unexpected if tensors[u].shape == expected[k].shape]
            if same:
                close = difflib.get_close_matches(k, same, n=1, cutoff=0.0)
                pairs.append((close[0] if close else same[0], k))
        if pairs:
            break
    return pairs


def _check_filled_share(expected: Mapping[str, torch.Tensor], filled: Mapping[str, Mapping[str, str]]) -> None:
    """Refuse a --no-strict scan whose checkpoint would be more than MAX_FILLED_SHARE the model's own values.

    Raises:
        ModelError: listing the tensors that would be filled.
    """
    total = sum(t.numel() for t in expected.values() if t.is_floating_point()) or 1
    for label, where in filled.items():
        own = sorted(k for k, v in where.items() if v == "the model's own value")
        share = sum(expected[k].numel() for k in own if expected[k].is_floating_point()) / total
        if share > MAX_FILLED_SHARE:
            shown = ", ".join(own[:12]) + (", …" if len(own) > 12 else "")
            raise ModelError(
                f"{opt('strict', False)} would fill {len(own)} tensors of {label}, {share:.0%} of the model's values, "
                f"from the model's random initialization, so the scan would measure mostly a random network: {shown}",
                hint=f"{opt('strict', False)} tolerates a few missing tensors (at most {MAX_FILLED_SHARE:.0%} of the "
                "values); check that the checkpoint belongs to this model (`interpscan inspect` lists its tensors)",
            )


def check_against(model: nn.Module, checkpoints: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
    """Strict ``match_states``: raise when any checkpoint does not match the model exactly.

    Raises:
        ModelError: see match_states.
    """
    match_states(model, checkpoints, strict=True)


def split_ties(groups: Mapping[str, Sequence[str]], tied: Sequence[Sequence[str]]) -> list[str]:
    """Groups that hold some but not all names of a tied tensor, which would have to move and stay at once.

    Returns one line per such group (empty when none), e.g. "group dec holds dec.weight but not enc.weight,
    one tensor in the model".
    """
    out = []
    for name, members in groups.items():
        held = set(members)
        for tie in tied:
            inside = [n for n in tie if n in held]
            if inside and len(inside) < len(tie):
                outside = [n for n in tie if n not in held]
                out.append(
                    f"group {name} holds {', '.join(inside)} but not {', '.join(outside)}, one tensor in the model"
                )
    return out
