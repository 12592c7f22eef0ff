"""A scan's progress as data: the running sums per split and point, and the re-estimated batch-norm statistics.

The engine keeps its sums in ``SplitSums``; after each batch it can hand out a ``Snapshot`` (copies), which a
later scan of the same points, data and options resumes from, giving the uninterrupted result. ``to_state`` and
``from_state`` turn a snapshot into plain tensors, numbers and lists (what ``torch.load(weights_only=True)``
reads back) and check it on the way in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..errors import UsageError, opt


@dataclass
class SplitSums:
    """Running sums over the examples seen so far of one split, one entry per distinct point."""

    loss: torch.Tensor  # (P,) float64: Σ per-example loss
    loss_sq: torch.Tensor  # (P,) float64: Σ loss²
    correct: torch.Tensor  # (P,) int64: Σ correct predictions
    n: int = 0  # examples counted (seen, less those the objective leaves out)
    ignored: int = 0  # examples left out (label -100 under cross-entropy)
    batches: int = 0  # batches finished
    checked: bool = field(default=False, compare=False)  # the model's output was checked against the targets
    kept: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list, compare=False)  # per batch

    def keep(self, losses: torch.Tensor, hits: torch.Tensor) -> None:
        """One batch's per-example losses and hits, (P, b) each (examples left out are not among them)."""
        self.kept.append((losses, hits))

    def examples(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Every kept example's loss and hit, (P, n) each; None when examples were not kept."""
        if not self.kept:
            return None
        if len(self.kept) > 1:
            self.kept[:] = [(torch.cat([k[0] for k in self.kept], 1), torch.cat([k[1] for k in self.kept], 1))]
        return self.kept[0]

    @classmethod
    def zeros(cls, points: int) -> SplitSums:
        return cls(
            torch.zeros(points, dtype=torch.float64),
            torch.zeros(points, dtype=torch.float64),
            torch.zeros(points, dtype=torch.int64),
        )

    def copy(self) -> SplitSums:
        return replace(
            self, loss=self.loss.clone(), loss_sq=self.loss_sq.clone(), correct=self.correct.clone(), kept=[*self.kept]
        )


@dataclass(frozen=True)
class Snapshot:
    """Everything a scan has finished: the BN statistics (when re-estimated) and the sums of each split begun,
    the last one possibly partial."""

    unique_points: int
    stats: dict[str, torch.Tensor] | None  # name -> (P, C) re-estimated running statistics, or None
    splits: tuple[SplitSums, ...]
    units: int  # (point, batch) evaluations done, for the progress bar

    def to_state(self) -> dict[str, Any]:
        """Tensors, numbers and lists only: safe to ``torch.save`` and to load with ``weights_only``."""
        return {
            "unique_points": self.unique_points,
            "stats": None if self.stats is None else dict(self.stats),
            "splits": [
                {
                    "loss": s.loss,
                    "loss_sq": s.loss_sq,
                    "correct": s.correct,
                    "n": s.n,
                    "ignored": s.ignored,
                    "batches": s.batches,
                    "examples": list(e) if (e := s.examples()) is not None else None,
                }
                for s in self.splits
            ],
            "units": self.units,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Snapshot:
        """Read ``to_state``'s output back, checking every field.

        Raises:
            UsageError: a field is missing or of the wrong kind or shape (a damaged or foreign file).
        """
        try:
            points = int(state["unique_points"])
            stats = state["stats"]
            if stats is not None and not (
                isinstance(stats, Mapping)
                and all(isinstance(v, torch.Tensor) and v.shape[:1] == (points,) for v in stats.values())
            ):
                raise ValueError("statistics")
            splits = []
            for entry in state["splits"]:
                sums = SplitSums(
                    entry["loss"],
                    entry["loss_sq"],
                    entry["correct"],
                    int(entry["n"]),
                    int(entry.get("ignored", 0)),
                    int(entry["batches"]),
                )
                if (kept := entry.get("examples")) is not None:
                    losses, hits = kept
                    if not (
                        isinstance(losses, torch.Tensor)
                        and isinstance(hits, torch.Tensor)
                        and losses.shape == hits.shape == (points, sums.n)
                    ):
                        raise ValueError("per-example losses")
                    sums.keep(losses, hits)
                tensors = (sums.loss, sums.loss_sq, sums.correct)
                if not all(isinstance(t, torch.Tensor) and t.shape == (points,) for t in tensors):
                    raise ValueError("sums")
                splits.append(sums)
            return cls(points, None if stats is None else dict(stats), tuple(splits), int(state["units"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(
                f"the saved partial scan is damaged ({type(exc).__name__}: {exc})",
                hint=f"start afresh with {opt('force', True)}",
            ) from exc


@dataclass(frozen=True)
class ScanSnapshot:
    """A scan's Snapshot with the fingerprint of what it was made from (inputs, points, options): a scan resumes
    only from a snapshot of itself. A scan that calls the engine more than once (a path through several
    checkpoints, one call per segment; refinement rounds) keeps the whole Snapshot of every call it finished in
    ``finished``, in order, and ``engine`` is the call under way."""

    fingerprint: str
    engine: Snapshot
    finished: tuple[Snapshot, ...] = ()

    def to_state(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "engine": self.engine.to_state(),
            "finished": [s.to_state() for s in self.finished],
        }

    @classmethod
    def from_state(cls, state: Any) -> ScanSnapshot:
        """Raises: UsageError: not a scan's snapshot, or a damaged one."""
        if not isinstance(state, Mapping) or not isinstance(state.get("fingerprint"), str) or "engine" not in state:
            raise UsageError(
                "the saved partial scan is not one interpscan wrote", hint=f"start afresh with {opt('force', True)}"
            )
        finished = state.get("finished", [])
        if not isinstance(finished, list):
            raise UsageError(
                "the saved partial scan is damaged (finished)", hint=f"start afresh with {opt('force', True)}"
            )
        return cls(
            state["fingerprint"],
            Snapshot.from_state(state["engine"]),
            tuple(Snapshot.from_state(s) for s in finished),
        )
