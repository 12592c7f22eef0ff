"""One scan as several processes (torchrun): which batches each process evaluates, and how their sums and
batch-norm statistics are combined so that the result is the single process's.

A ``World`` is a value (rank, size); its methods are the only collective calls interpscan makes, each one a
no-op for a single process. Rank r evaluates a contiguous share of every split's batches (the batches are the
single process's: same boundaries, so every example's loss is computed in the same batch), the calibration
batches round robin. Sums are all-reduced; each split's kept per-example losses are gathered in rank order,
which is example order; BN statistics, each rank's cumulative average over its c_r calibration batches, are
reduced as sums c_r·mean_r and divided by Σ c_r, the cumulative average over all batches.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; ``join`` starts the process group from them (NCCL for CUDA
tensors, gloo for CPU ones) with a timeout, so that a rank that dies or hangs stops the others with one line.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, TypeVar

from .devices import resolve_device
from .errors import LostContact, UsageError, opt

if TYPE_CHECKING:
    import torch

    from .engine.snapshot import SplitSums

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 600.0  # a collective waits this long for the slowest rank (INTERPSCAN_DIST_TIMEOUT, seconds)


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one scan: ``rank`` of ``size``, ``local_rank`` on its node
    (its GPU). ``World()`` is the single process."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def leader(self) -> bool:
        """Rank 0: the one process that prints, shows progress and writes files."""
        return self.rank == 0

    def share(self, batches: int) -> range:
        """This rank's batches of a split of ``batches`` batches: a contiguous range (empty when there are fewer
        batches than ranks), so that the ranks' kept examples, concatenated in rank order, are in example order."""
        return range(self.rank * batches // self.size, (self.rank + 1) * batches // self.size)

    def owns_calibration(self, k: int) -> bool:
        """Whether the k-th calibration batch is this rank's (round robin: the order does not matter there)."""
        return k % self.size == self.rank

    def sum_ints(self, *values: int) -> tuple[int, ...]:
        """Each value summed over the ranks."""
        if self.size == 1:
            return values
        import torch

        t = torch.tensor(values, dtype=torch.int64)
        self._all_reduce(t)
        return tuple(int(v) for v in t.tolist())

    def all_ok(self, ok: bool) -> bool:
        """Whether every rank is ``ok``: a step that one rank alone can fail (the output directory, checked by
        rank 0) tells the others here."""
        return self.sum_ints(int(not ok))[0] == 0

    def barrier(self) -> None:
        self.sum_ints(0)

    def reduce_sums(self, sums: SplitSums) -> SplitSums:
        """One split's sums over every rank's share (in place), kept examples gathered in example order."""
        if self.size == 1:
            return sums
        for t in (sums.loss, sums.loss_sq, sums.correct):
            self._all_reduce(t)
        sums.n, sums.ignored = self.sum_ints(sums.n, sums.ignored)
        kept = sums.examples()
        # every rank takes part in the gather when any kept examples: a rank whose share of the split was empty
        # (fewer batches than processes: a few long sequences of a language model) kept none, and gives none
        (keeping,) = self.sum_ints(int(kept is not None))
        if keeping:
            losses, hits = kept if kept is not None else _no_examples(len(sums.loss))
            sums.kept[:] = [(self._gather_columns(losses), self._gather_columns(hits))]
        return sums

    def reduce_statistics(self, stats: dict[str, torch.Tensor], batches: int) -> tuple[dict[str, torch.Tensor], int]:
        """The cumulative average over every rank's calibration batches, from each rank's average over its own
        ``batches``; and the total count. Sums are reduced, not means: a rank with fewer batches weighs less."""
        if self.size == 1:
            return stats, batches
        (total,) = self.sum_ints(batches)
        if not total:  # no calibration batch anywhere: BatchNorm's initial statistics, as for one process
            return stats, 0
        out = {}
        for name, value in stats.items():
            if not value.is_floating_point():
                out[name] = value
                continue
            acc = value.double() * batches  # Σ of this rank's batch statistics
            self._all_reduce(acc)
            out[name] = (acc / total).to(value.dtype)
        return out, total

    def _gather_columns(self, t: torch.Tensor) -> torch.Tensor:
        """(P, n_r) on each rank -> (P, Σ n_r), ranks in order (a collective gathers equal shapes: padded, then
        cut; bool travels as uint8)."""
        import torch

        dtype = t.dtype
        t = t.to(torch.uint8) if dtype == torch.bool else t
        sizes = torch.zeros(self.size, dtype=torch.int64)
        sizes[self.rank] = t.shape[1]
        self._all_reduce(sizes)
        width = int(sizes.max())
        padded = t.new_zeros(t.shape[0], width)
        padded[:, : t.shape[1]] = t
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        self._call(lambda: _dist().all_gather(parts, padded.contiguous()))
        return torch.cat([p[:, : int(n)] for p, n in zip(parts, sizes.tolist(), strict=True)], 1).to(dtype)

    def _all_reduce(self, t: torch.Tensor) -> None:
        self._call(lambda: _dist().all_reduce(t))

    def _call(self, collective: Callable[[], object]) -> None:
        """A collective; a peer that died or timed out becomes one RunError line."""
        try:
            collective()
        except RuntimeError as exc:  # gloo and NCCL report a lost peer or a timeout as RuntimeError subclasses
            raise lost_contact(self, exc) from exc


def _no_examples(points: int) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    return torch.zeros(points, 0), torch.zeros(points, 0, dtype=torch.bool)


def lost_contact(world: World, exc: BaseException) -> LostContact:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return LostContact(
        f"rank {world.rank} of {world.size} lost contact with the other processes of the scan ({first[:160]})",
        hint="another rank stopped (its own error is above) or timed out (INTERPSCAN_DIST_TIMEOUT, seconds); "
        f"nothing was written: rerun the same command with {opt('resume', True)}",
    )


def _dist() -> ModuleType:
    import torch.distributed as dist

    return dist


def _int_env(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{name}={text!r} is not a whole number", hint="launch with torchrun, which sets it") from None


def world_from_env(env: Mapping[str, str] | None = None) -> World:
    """The World that torchrun's environment describes (RANK, WORLD_SIZE, LOCAL_RANK); a single process when
    they are not set.

    Raises:
        UsageError: values that are not whole numbers, or a rank outside the world.
    """
    env = os.environ if env is None else env
    size = _int_env(env, "WORLD_SIZE", 1)
    rank = _int_env(env, "RANK", 0)
    local = _int_env(env, "LOCAL_RANK", 0)
    if size < 1 or not 0 <= rank < size or local < 0:
        raise UsageError(f"RANK={rank} of WORLD_SIZE={size} is not a rank", hint="launch with torchrun")
    return World(rank, size, local)


def timeout_s(env: Mapping[str, str] | None = None) -> float:
    """Seconds a collective waits for the slowest rank: INTERPSCAN_DIST_TIMEOUT, else DEFAULT_TIMEOUT_S."""
    text = (os.environ if env is None else env).get("INTERPSCAN_DIST_TIMEOUT")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        value = -1.0
    if not value > 0 or value != value or value == float("inf"):
        raise UsageError(f"INTERPSCAN_DIST_TIMEOUT={text!r} is not a positive number of seconds")
    return value


@contextmanager
def joined(world: World, device: str) -> Iterator[World]:
    """The process group for ``world`` while the scan runs (nothing for a single process): gloo for CPU
    tensors, and NCCL too when the scan runs on CUDA (``device`` as --device names it; each rank on its
    LOCAL_RANK's GPU). Torn down after.

    Raises:
        UsageError: a device that is not there.
        LostContact: the rendezvous failed.
    """
    if world.size == 1:
        yield world
        return
    import torch
    import torch.distributed as dist

    cuda = resolve_device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(world.local_rank)
    backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
    try:
        dist.init_process_group(
            backend, rank=world.rank, world_size=world.size, timeout=datetime.timedelta(seconds=timeout_s())
        )
    except (RuntimeError, ValueError) as exc:  # the rendezvous failed: no peers, a bad address
        raise lost_contact(world, exc) from exc
    try:
        yield world
    finally:
        dist.destroy_process_group()


def rank_device(world: World, device: torch.device) -> torch.device:
    """The device this rank runs on: CUDA without an index means the rank's own GPU (LOCAL_RANK)."""
    import torch

    if world.size > 1 and device.type == "cuda" and device.index is None:
        return torch.device("cuda", world.local_rank)
    return device
