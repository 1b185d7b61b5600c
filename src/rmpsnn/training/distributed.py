"""Distributed data parallel on top of ``torch.distributed`` (launch with ``torchrun``).

``torchrun --nproc_per_node=N -m rmpsnn train --config ...`` starts N processes that find each
other through the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``).  Backend: NCCL when each process has a GPU, gloo on CPUs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from ..devices import resolve_device

__all__ = ["Dist", "init_distributed"]


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce(self, values: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """Sum (or max) a tensor over processes; a no-op in a single process."""
        if not self.enabled:
            return values
        t = values.to(self.device if self.device.type == "cuda" else "cpu").clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
        return t.to(values.device)

    def in_sync(self, model: torch.nn.Module) -> bool:
        """Whether every process holds exactly the same parameters (a position-weighted checksum
        of each process's weights, compared across processes)."""
        flat = torch.cat([p.detach().flatten().double().cpu() for p in model.parameters()])
        checks = torch.zeros(self.world_size, dtype=torch.float64)
        checks[self.rank] = flat.sum() + (flat * torch.arange(len(flat)) % 7).sum()
        checks = self.all_reduce(checks)
        return bool(torch.equal(checks, checks[0].expand_as(checks)))

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            # The gloo worker threads release the last collective's tensors after it completes, and
            # that needs the GIL.  Tearing the group down joins those threads; doing it while they
            # wait for the GIL this thread holds deadlocks (seen once in ~20 two-process runs:
            # ~ProcessGroupGloo joining a thread stuck in ~AsyncAllreduceWork).  Sleeping releases
            # the GIL so they finish first.
            time.sleep(0.1)
            dist.destroy_process_group()


def init_distributed(requested_device: str = "auto") -> Dist:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1), else one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(requested_device, option="run.device")
    if world <= 1:
        return Dist(device=device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
        # the processes share the machine's cores: give each its share instead of all of them
        per_proc = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world)))
        torch.set_num_threads(per_proc)
        try:
            import numba

            numba.set_num_threads(min(per_proc, numba.config.NUMBA_NUM_THREADS))
        except ImportError:  # pragma: no cover - numba is a dependency
            pass
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Dist(rank=rank, world_size=world, local_rank=local, device=device)
