"""torch.distributed helpers that degrade to no-ops in a single process.

The learner uses torch.distributed directly (not Ray): Ray Train only sets up the process group.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_alone() -> bool:
    """One process: every collective is the identity, so none is run.

    A one-worker Ray Train run still has a gloo process group; a collective there costs more
    than nothing: gloo's worker thread then starts an OpenMP team of its own, and with two teams
    on a machine's cores libgomp stops spin-waiting: the quickstart trained at 292 img/s through
    Ray with the collectives, 349 without (bench/experiments/README.md#one-worker-collectives)."""
    return world_size() == 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    return rank() == 0


def all_gather_objects(obj) -> list:
    if is_alone():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, src: int = 0):
    if is_alone():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(values: list[float]) -> list[float]:
    if is_alone():
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def shard(indices: np.ndarray) -> np.ndarray:
    """This worker's share of `indices`, each index on exactly one worker (no padding)."""
    return indices[rank():: world_size()]


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DDP over the currently trainable parameters; re-wrapped whenever the model or phase changes."""
    if is_alone():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Rank 0's parameters of `module` on every worker: for a change made inside a phase, where DDP,
    which sends them only when it wraps the model, would leave the workers apart."""
    if is_alone():
        return
    with torch.no_grad():
        for parameter in module.parameters():
            dist.broadcast(parameter, src=0)


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm's running statistics) on every worker. DDP sends them at the start
    of each training forward, and each worker's own last forward then updates its copy: after a
    phase, without this, the workers would evaluate, herd and distil from different models."""
    if is_alone():
        return
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)
