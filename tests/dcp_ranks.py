"""A sharded torch.distributed.checkpoint save from several gloo processes, for tests/test_distcp.py and the
bad-input corpus (tests/bad_inputs/formats.py)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Shard, distribute_tensor


def save_rank(rank: int, world: int, store: str, state: dict[str, torch.Tensor], out: str) -> None:
    """One rank of a sharded save: each tensor split along dim 0 across the ranks (FSDP2's layout for parameters);
    a scalar (batch norm's step count) is a plain tensor every rank holds, as FSDP2 keeps buffers."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        mesh = init_device_mesh("cpu", (world,))
        sharded = {k: distribute_tensor(v, mesh, [Shard(0)]) if v.dim() else v for k, v in state.items()}
        dcp.save({"model": sharded, "step": 9}, checkpoint_id=out)
    finally:
        dist.destroy_process_group()
