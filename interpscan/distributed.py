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
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, TypeVar

from .devices import resolve_device
from .errors import Interrupted, LostContact, UsageError, opt
from .values import env_number

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
    return int(env_number(name, default, whole=True, hint="launch with torchrun, which sets it", env=env))


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
    return env_number("INTERPSCAN_DIST_TIMEOUT", DEFAULT_TIMEOUT_S, low=1e-3, env=env)


# what torchrun sets for each process: set by hand (or left over in a shell), they ask for peers that never come
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
JOIN_TIMEOUT_S = 60.0  # the processes wait this long for each other to start (INTERPSCAN_DIST_JOIN_TIMEOUT, seconds)
_POLL_S = 0.1  # the main thread's wait between looks at the rendezvous: Ctrl-C and SIGTERM are heard this often


def _launched_by(env: Mapping[str, str]) -> str:
    """The launch variables that are set, as the user would have to unset them: 'RANK=0, WORLD_SIZE=2, …'."""
    return ", ".join(f"{name}={env[name]}" for name in LAUNCH_VARIABLES if env.get(name, "").strip())


def _launch_hint(env: Mapping[str, str]) -> str:
    names = " ".join(name for name in LAUNCH_VARIABLES if env.get(name, "").strip())
    return f"start every process with torchrun (it sets them all), or `unset {names}` to scan in one process"


def _rendezvous_address(world: World, env: Mapping[str, str]) -> None:
    """MASTER_ADDR and MASTER_PORT, which torch's rendezvous reads (its ValueError about them is no one line).

    Raises:
        UsageError: one is not set, or the port is not a port.
    """
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not env.get(name, "").strip()]
    if missing:
        raise UsageError(
            f"{_launched_by(env)} ask for {world.size} processes, and {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set: these variables are torchrun's",
            hint=_launch_hint(env),
        )
    port = env_number("MASTER_PORT", 0, whole=True, env=env, hint="torchrun sets it to a free port")
    if port > 65535:
        raise UsageError(f"MASTER_PORT={port} is not a port (0 to 65535)", hint="torchrun sets it to a free port")


def _no_peers(world: World, env: Mapping[str, str], seconds: float, cause: str) -> UsageError | LostContact:
    """The other processes did not come: the user's launch when torchrun did not start this one, else a peer
    that died on its way (its own error is above)."""
    others = world.size - 1
    message = (
        f"rank {world.rank} of {world.size}: the other {others} process{'es' if others != 1 else ''} did not join "
        f"within {seconds:g} s ({_launched_by(env)}){f': {cause}' if cause else ''}"
    )
    if "TORCHELASTIC_RUN_ID" in env:  # torchrun started us: a peer failed to start
        return LostContact(
            message,
            hint="another rank stopped before joining (its error is above), or "
            "INTERPSCAN_DIST_JOIN_TIMEOUT (seconds) is too short for its start",
        )
    return UsageError(message + "; this process was not started by torchrun", hint=_launch_hint(env))


def _join(world: World, backend: str, device_index: int | None, env: Mapping[str, str]) -> None:
    """``init_process_group``, waited for by the main thread in short steps.

    torch waits for the peers inside one C++ call, where Python's signal handlers do not run: Ctrl-C and SIGTERM
    would go unheard for the whole wait. So the call runs in a daemon thread, bounded by the join timeout; the
    collectives' own, longer timeout (INTERPSCAN_DIST_TIMEOUT) is set once the group is up.

    Raises:
        UsageError | LostContact: the peers did not come (``_no_peers``), or the rendezvous failed.
        Interrupted: Ctrl-C or SIGTERM while waiting.
    """
    import torch
    import torch.distributed as dist
    from torch.distributed import distributed_c10d as c10d

    join_s = env_number("INTERPSCAN_DIST_JOIN_TIMEOUT", JOIN_TIMEOUT_S, low=1e-3, env=env)
    collective_s = timeout_s(env)
    settable = hasattr(c10d, "_set_pg_timeout")  # else the group keeps the timeout it was made with
    failed: list[BaseException] = []

    def init() -> None:
        try:
            if device_index is not None:  # the current CUDA device is the thread's own
                torch.cuda.set_device(device_index)
            wait = join_s if settable else collective_s
            dist.init_process_group(
                backend, rank=world.rank, world_size=world.size, timeout=datetime.timedelta(seconds=wait)
            )
        except BaseException as exc:  # handed to the main thread, which reports it
            failed.append(exc)

    thread = threading.Thread(target=init, name="interpscan-rendezvous", daemon=True)
    thread.start()
    deadline = time.monotonic() + join_s + 5  # torch's own timeout ends the call first; this, should it not
    try:
        while thread.is_alive():
            thread.join(_POLL_S)
            if thread.is_alive() and time.monotonic() > deadline:
                raise _no_peers(world, env, join_s, "")
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted while rank {world.rank} waited for the other processes to start; nothing was read or written"
        ) from None
    if failed:
        exc = failed[0]
        if not isinstance(exc, (RuntimeError, ValueError)):  # ours, or the system's: not a rendezvous problem
            raise exc
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160].rstrip(".")
        # torch's words for the wait running out add nothing to ours (and vary with its rounding)
        raise _no_peers(world, env, join_s, "" if "timed out" in first.lower() else first) from exc
    if settable:
        c10d._set_pg_timeout(datetime.timedelta(seconds=collective_s))


@contextmanager
def joined(world: World, device: str, env: Mapping[str, str] | None = None) -> Iterator[World]:
    """The process group for ``world`` while the scan runs (nothing for a single process): gloo for CPU
    tensors, and NCCL too when the scan runs on CUDA (``device`` as --device names it; each rank on its
    LOCAL_RANK's GPU). Torn down after.

    The processes wait for each other at most INTERPSCAN_DIST_JOIN_TIMEOUT seconds (JOIN_TIMEOUT_S): torchrun
    starts them together, while torchrun's variables set by hand, with no torchrun, ask for processes that
    never come; that is said in one line, naming the variables, and Ctrl-C or SIGTERM stop the wait.

    Raises:
        UsageError: a device that is not there; the launch variables without torchrun (no MASTER_ADDR, or no
            peer came).
        LostContact: under torchrun, a peer that did not come; the rendezvous failed.
        Interrupted: Ctrl-C or SIGTERM during the wait.
    """
    if world.size == 1:
        yield world
        return
    import torch.distributed as dist

    env = os.environ if env is None else env
    _rendezvous_address(world, env)
    cuda = resolve_device(device).type == "cuda"
    if cuda:
        import torch

        torch.cuda.set_device(world.local_rank)
    _join(world, "cpu:gloo,cuda:nccl" if cuda else "gloo", world.local_rank if cuda else None, env)
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
