"""Training under `torchrun` (DistributedDataParallel): the process group and the few
collective operations the pipeline needs. Without torchrun every function here is the
single-process identity, so the same code trains on one device or many.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE for each process; NCCL joins processes on
GPUs, gloo on CPUs. Rank 0 alone owns the W&B run and the artifacts (app/pipelines/train.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def setup(device: torch.device) -> Group:
    """Join torchrun's process group, when launched by torchrun with more than one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Group()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Group(rank=dist.get_rank(), world_size=dist.get_world_size(),
                 local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def device_for(requested: torch.device) -> torch.device:
    """Under torchrun each process takes the GPU of its LOCAL_RANK."""
    if requested.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return requested


def broadcast(group: Group, value):
    """Rank 0's `value` on every rank (a small picklable object)."""
    if not group.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(group: Group, tensor: torch.Tensor) -> torch.Tensor:
    """The sum over all ranks, in place."""
    if group.active:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def shutdown(group: Group) -> None:
    if group.active and dist.is_initialized():
        dist.destroy_process_group()
