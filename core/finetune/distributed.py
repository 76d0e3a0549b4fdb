"""Data-parallel training across processes started by `accelerate launch` (one per GPU, or CPU processes).

Every process holds the whole model and the same data plan (the batch order is seeded). Each batch's rows are
dealt out across the processes; after the backward pass their gradients are summed (all-reduce), so every
process takes the same optimizer step and the result equals a single-process run of the same config, only faster.
The main process alone writes events, checkpoints and the adapter.

`accelerate` sets up the process group (NCCL on GPUs, gloo on CPUs) from the variables its launcher exports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Workers:
    """This process's place among the processes of one run (one process: rank 0 of 1)."""
    rank: int = 0
    world: int = 1
    device: str | None = None  # None: the run picks cuda when present, else cpu

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1

    def share(self, items: list) -> list:
        """This process's rows of a batch: every world-th one, starting at its rank."""
        return items[self.rank::self.world] if self.parallel else items

    def sum_gradients(self, params, extra: list[float]) -> list[float]:
        """Sum the gradients of `params` and the numbers in `extra` over all processes, in one all-reduce."""
        if not self.parallel:
            return extra
        import torch
        import torch.distributed as dist

        device = params[0].device
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1).float() for g in grads] + [torch.tensor(extra, dtype=torch.float32,
                                                                                 device=device)])
        dist.all_reduce(flat)
        offset = 0
        for param, grad in zip(params, grads):
            size = grad.numel()
            param.grad = flat[offset:offset + size].view_as(grad).to(grad.dtype)
            offset += size
        return flat[offset:].tolist()

    def sum_numbers(self, numbers: list[float], device: str = "cpu") -> list[float]:
        if not self.parallel:
            return numbers
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(numbers, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def any(self, flag: bool, device: str = "cpu") -> bool:
        """True on every process when it is true on any (a cancel seen by one process stops them all)."""
        return bool(self.sum_numbers([1.0 if flag else 0.0], device)[0]) if self.parallel else flag

    def broadcast(self, value):
        """The main process's `value`, on every process."""
        if not self.parallel:
            return value
        import torch.distributed as dist

        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.parallel:
            import torch.distributed as dist

            dist.barrier()


def current_workers() -> Workers:
    """The Workers of this process: several when started by `accelerate launch` (or torchrun), else one."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Workers()
    from accelerate import PartialState

    state = PartialState()  # creates the process group once per process
    return Workers(state.process_index, state.num_processes, str(state.device))


def launch_command(project_name: str, config_path: str, processes: int) -> str:
    """The command that trains `config_path` on `processes` GPUs of this machine."""
    import shlex

    return (f"accelerate launch --multi_gpu --num_processes {processes} -m core.cli train "
            f"{shlex.quote(project_name)} --config {shlex.quote(config_path)}")


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
