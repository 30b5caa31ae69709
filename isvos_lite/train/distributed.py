"""Multi-process training through ``torchrun`` (DistributedDataParallel), or a single process.

``torchrun --nproc_per_node=N -m isvos_lite.cli train ...`` starts N copies of the trainer with the environment
variables RANK, LOCAL_RANK and WORLD_SIZE set. ``DistributedContext.from_environment`` reads them, joins the
process group (NCCL on CUDA, gloo on CPU) and pins each process to its GPU. Batch sizes in the training config
are totals over all processes (as in XMem), so each process draws ``batch_size / world_size`` clips.
A job that ``torchrun`` starts with one process (``--nproc_per_node=1``) is a real one-process DDP job too (process
group, DistributedDataParallel wrapper, barriers): what ``scripts/gpu_check.sh`` uses to check NCCL on one GPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistributedContext"]


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_process_group: bool = False      # True when this context created the group (and must destroy it)

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1 or self.owns_process_group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: str) -> "DistributedContext":
        """Single process unless launched by torchrun (any WORLD_SIZE, 1 included); joins or reuses the process group."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
        launched_by_torchrun = "TORCHELASTIC_RUN_ID" in os.environ and "MASTER_ADDR" in os.environ
        if world_size <= 1 and not launched_by_torchrun:
            return cls()
        if not dist.is_available():
            raise RuntimeError("launched by torchrun, but this PyTorch build has no torch.distributed")
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
        return cls(rank, world_size, local_rank, owns_process_group=True)

    def device_for(self, device: str) -> torch.device:
        """The device of this process: cuda:LOCAL_RANK when training on CUDA with several processes."""
        if device.startswith("cuda") and self.is_distributed:
            return torch.device("cuda", self.local_rank)
        return torch.device(device)

    def per_process(self, total: int, what: str) -> int:
        if total % self.world_size:
            raise ValueError(f"{what} ({total}) must be divisible by the number of processes ({self.world_size})")
        return total // self.world_size

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()

    def any_true(self, flag: bool, device: torch.device) -> bool:
        """True on every process if ``flag`` is true on any of them."""
        if not self.is_distributed:
            return flag
        value = torch.tensor(float(flag), device=device)
        dist.all_reduce(value)
        return bool(value.item() > 0)

    def mean(self, value: float, device: torch.device) -> float:
        """The average of a number over all processes (for logging)."""
        if not self.is_distributed:
            return value
        tensor = torch.tensor(float(value), device=device)
        dist.all_reduce(tensor)
        return tensor.item() / self.world_size

    def close(self) -> None:
        if self.owns_process_group and dist.is_initialized():
            dist.destroy_process_group()
