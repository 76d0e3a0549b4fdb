"""Training across processes started by `accelerate launch` (one per GPU, or CPU processes), in one of two modes.

Data parallel (`--multi_gpu`, the default): every process holds the whole model and the same data plan (the batch
order is seeded). Each batch's rows are dealt out across the processes; after the backward pass their gradients
are summed (all-reduce), so every process takes the same optimizer step and the result equals a single-process run
of the same config, only faster.

Sharded (`--use_fsdp`, for models too large for one GPU): PyTorch FSDP2 splits every decoder block, then the rest of
the model, across the processes, so each holds 1/N of the weights, gradients and optimizer state and gathers a
block's weights only while it runs. Rows are dealt out the same way; FSDP sums the gradients itself (reduce-scatter,
with its averaging turned off), so the result again equals a single-process run. Every process must run every
forward and backward pass (they gather weights together), so one whose share of a batch is empty runs a row with
its loss multiplied by 0. Checkpoints and the adapter are gathered into full tensors on the main process, in the
same files as in the other modes.

The main process alone writes events, checkpoints and the adapter. `accelerate` sets up the process group (NCCL on
GPUs, gloo on CPUs) from the variables its launcher exports; `--use_fsdp` exports ACCELERATE_USE_FSDP=true (set it
yourself under torchrun). Only the flag is read: accelerate's other FSDP options do not apply here.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

from core.errors import TrainingError
from core.i18n import Msg


@dataclass(frozen=True)
class Workers:
    """This process's place among the processes of one run (one process: rank 0 of 1)."""
    rank: int = 0
    world: int = 1
    device: str | None = None  # None: the run picks cuda when present, else cpu
    sharded: bool = False      # FSDP: weights, gradients and optimizer state split across the processes

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
        """Sum the gradients of `params` and the numbers in `extra` over all processes, in one all-reduce.

        Sharded, FSDP has already summed the gradients during the backward pass: only `extra` is summed."""
        if not self.parallel:
            return extra
        if self.sharded:
            return self.sum_numbers(extra, str(params[0].device))
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

    def close(self) -> None:
        """Take down the process group before the process exits, as torch asks (a sharded run's CLI process then
        ends with os._exit: FSDP keeps the group's threads alive past this)."""
        if self.parallel:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def current_workers() -> Workers:
    """The Workers of this process: several when started by `accelerate launch` (or torchrun), else one; sharded
    when launched with `--use_fsdp`."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Workers()
    import torch
    from accelerate import PartialState

    # Without a GPU, accelerate only sees the processes when told they are CPU ones (gloo); otherwise each would
    # think it is alone.
    state = PartialState(cpu=not torch.cuda.is_available())  # creates the process group once per process
    device = "cpu" if state.device.type == "cpu" else str(state.device)
    sharded = os.environ.get("ACCELERATE_USE_FSDP", "false").strip().lower() in ("1", "true", "yes")
    return Workers(state.process_index, state.num_processes, device, sharded)


def check_shardable(config) -> None:
    """Refuse, before the model loads, what sharded training cannot do."""
    if config.method == "qlora":
        raise TrainingError(Msg("QLoRA cannot be sharded (FSDP does not split its 4-bit weights here); launch with "
                                "--multi_gpu instead of --use_fsdp, or pick LoRA."))
    if getattr(config, "objective", "sft") == "reward":
        raise TrainingError(Msg("A reward model cannot be sharded; launch with --multi_gpu instead of --use_fsdp."))


# -- sharded models (FSDP2) --------------------------------------------------------------------------------------

def shard(model, workers: Workers):
    """Split `model` across the processes with FSDP2, in place: each decoder block is one unit, then the root (the
    module whose forward the trainer calls: embeddings, final norm, output head, PEFT's soft prompts).

    FSDP averages gradients over the processes; the trainer's loss is already divided by the update's labeled tokens
    over all processes, so the gradients are summed instead (divide factor 1, plain SUM, which gloo supports too)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard

    from core.finetune.methods import _blocks, architecture

    try:
        blocks = _blocks(model)
    except TrainingError:
        raise TrainingError(Msg("Sharded training could not find the blocks of this {arch} model; launch with "
                                "--multi_gpu instead of --use_fsdp.", arch=architecture(model))) from None
    mesh = init_device_mesh(next(model.parameters()).device.type, (workers.world,))
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)
    return model


def trainable_names(model) -> list[str]:
    """Names of the trainable parameters, in the optimizer's order."""
    return [name for name, param in model.named_parameters() if param.requires_grad]


def _full_options(**changes):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **changes)


def gather_trainable(model) -> dict:
    """The full trainable tensors of a sharded model by parameter name, on the CPU of the main process ({} on the
    others). Every process must call this: the shards are gathered one tensor at a time."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state = get_model_state_dict(model, options=_full_options(cpu_offload=True, ignore_frozen_params=True))
    return {name: state[name].contiguous() for name in trainable_names(model) if name in state}


def load_trainable(model, tensors: dict) -> None:
    """Full tensors by parameter name, passed by the main process ({} by the others), into a sharded model: the main
    process sends them one at a time and each process keeps its own shard."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    set_model_state_dict(model, dict(tensors),  # a copy: it rewrites the dict it gets
                         options=_full_options(strict=False, broadcast_from_rank0=True))


def gather_optimizer(model, optimizer) -> dict:
    """The optimizer state of a sharded model, gathered on the main process ({} on the others) in the layout of
    `optimizer.state_dict()` (parameters by index), so a checkpoint reads the same whatever the mode."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    state = get_optimizer_state_dict(model, optimizer, options=_full_options(cpu_offload=True))
    if not state:
        return {}
    index = {name: i for i, name in enumerate(trainable_names(model))}
    return {"state": {index[name]: value for name, value in state["state"].items()},
            "param_groups": [{**group, "params": [index[name] for name in group["params"]]}
                             for group in state["param_groups"]]}


def load_optimizer(model, optimizer, saved: dict) -> None:
    """An `optimizer.state_dict()`-style state, passed by the main process ({} by the others), into a sharded
    model's optimizer, sent like load_trainable's tensors."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    names = trainable_names(model)
    full = {"state": {names[int(i)]: value for i, value in saved["state"].items()},
            "param_groups": [{**group, "params": [names[int(i)] for i in group["params"]]}
                             for group in saved["param_groups"]]} if saved else {}
    set_optimizer_state_dict(model, optimizer, full, options=_full_options(broadcast_from_rank0=True))


@contextmanager
def full_parameters(model, tensors: dict):
    """`model` with `tensors` (full, by parameter name) standing in for its sharded parameters of those names, for
    code that reads parameters to save them (PEFT's save_pretrained); the shards are put back afterwards."""
    from torch import nn

    modules = dict(model.named_modules())
    swapped = []
    try:
        for name, tensor in tensors.items():
            owner, _, leaf = name.rpartition(".")
            module = modules[owner]
            swapped.append((module, leaf, module._parameters[leaf]))
            module._parameters[leaf] = nn.Parameter(tensor, requires_grad=True)
        yield model
    finally:
        for module, leaf, param in reversed(swapped):
            module._parameters[leaf] = param


def launch_command(project_name: str, config_path: str, processes: int, sharded: bool = False) -> str:
    """The command that trains `config_path` on `processes` GPUs of this machine: data parallel, or sharded (FSDP)
    for a model too large for one GPU."""
    import shlex

    mode = "--use_fsdp" if sharded else "--multi_gpu"
    return (f"accelerate launch {mode} --num_processes {processes} -m core.cli train "
            f"{shlex.quote(project_name)} --config {shlex.quote(config_path)}")


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
