"""Distributed training under ``torchrun``: process group, devices, and how work is split.

``torchrun --nproc_per_node=N -m mska_core train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`setup` then joins the process group (``gloo`` on CPU, ``nccl`` on CUDA) and the
model is wrapped in DistributedDataParallel.

- Training: every rank walks the same global batches (the epoch's seeded permutation cut into
  ``train.batch_size`` clips) and takes its own contiguous slice of each. Each rank's loss is scaled by
  its share of the batch, so the gradient DDP averages is the gradient of the mean over the global batch:
  two processes give what one process gives on the same global batch.
- Evaluation: the split is cut into one contiguous shard per rank with no padding, so each clip is
  decoded once; the predictions are gathered and scored together.
- Only rank 0 writes files and prints.
"""

from __future__ import annotations

import os
from typing import Any

import attrs


@attrs.frozen
class DistInfo:
    """This process's place in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment() -> DistInfo:
    """Rank and world size as ``torchrun`` sets them (a single process when unset)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return DistInfo(rank=int(os.environ.get("RANK", "0")), world_size=world,
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(requested: str, info: DistInfo) -> Any:
    """The torch device of ``[run] device`` (``auto``: CUDA when available); one GPU per local rank."""
    import torch

    from mska_core.errors import ConfigError

    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"run.device: {requested!r} but CUDA is not available; use \"cpu\" or \"auto\"")
        if info.enabled or requested == "cuda":
            return torch.device("cuda", info.local_rank if info.enabled else 0)
    return torch.device(requested)


def setup(requested_device: str, *, single_process: str | None = None) -> tuple[DistInfo, Any]:
    """Join the process group when launched by torchrun; return this process's info and device.

    Both loops set up their device here. ``single_process`` names a command that runs in one process
    only: launched by torchrun, it is refused in one line instead of every rank writing one folder.
    """
    import torch
    import torch.distributed as dist

    info = from_environment()
    if single_process and info.enabled:
        from mska_core.errors import ConfigError

        raise ConfigError(
            f"{single_process} runs in one process, but WORLD_SIZE is {info.world_size} (torchrun); "
            "start it without torchrun"
        )
    device = resolve_device(requested_device, info)
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
        info = attrs.evolve(info, backend=backend)
    return info, device


def teardown(info: DistInfo) -> None:
    import torch.distributed as dist

    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def local_slice(global_batch: list[int], info: DistInfo) -> list[int]:
    """This rank's contiguous part of a global batch (sizes differ by at most one)."""
    n, world = len(global_batch), info.world_size
    start = info.rank * n // world
    stop = (info.rank + 1) * n // world
    return global_batch[start:stop]


def shard(count: int, info: DistInfo) -> range:
    """This rank's indices of an evaluation split: contiguous, disjoint, covering every index once."""
    return range(info.rank * count // info.world_size, (info.rank + 1) * count // info.world_size)


def gather(values: list[Any], info: DistInfo) -> list[Any]:
    """Every rank's ``values`` concatenated in rank order (the same list on every rank)."""
    if not info.enabled:
        return values
    import torch.distributed as dist

    parts: list[Any] = [None] * info.world_size
    dist.all_gather_object(parts, values)
    return [v for part in parts for v in part]


def all_sum(values: list[float], info: DistInfo, device: Any = None) -> list[float]:
    """Each number summed over ranks (one collective for the whole list)."""
    if not info.enabled:
        return list(values)
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()
