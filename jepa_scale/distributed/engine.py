"""The engine interface: the only place that knows how parameters are placed, sharded and synchronised.

An engine takes a `ModelSet` and never learns what the modules are. A task calls `models[name]` (possibly wrapped)
and the engine's step, EMA and collectives; the checkpointer asks it for state. `SingleEngine` runs one process (CPU
or one GPU); ddp.py, fsdp.py and deepspeed.py hold the multi-process engines (each imported only when chosen).
"""
from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod

import torch
import torch.distributed as dist
import torch.nn as nn

from jepa_scale.checkpoint import CheckpointError, load_strict
from jepa_scale.distributed.model_set import ModelSet
from jepa_scale.optim import ema_update, load_optimizer_state, skip_next_step_if

log = logging.getLogger(__name__)


def has_optimizer_state(ckpt: dict, source: str) -> bool:
    if ckpt.get("opt"):
        return True
    log.warning("%s holds no optimizer state (a DeepSpeed export?): AdamW moments start at 0", source)
    return False


def section(ckpt: dict, name: str, source: str) -> dict:
    if name not in ckpt:
        raise CheckpointError(f"{source}: no '{name}' section (has: {', '.join(sorted(ckpt))})")
    return ckpt[name]


def _full(t: torch.Tensor) -> torch.Tensor:
    """A sharded (DTensor) norm as a plain tensor; plain tensors pass through."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def _total_norm(params) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads, norm_type=2.0)


class Engine(ABC):
    rank: int = 0
    world_size: int = 1
    device: torch.device
    amp_dtype: torch.dtype | None = None  # autocast dtype, None: float32
    # "official": one official-layout file (the checkpointer writes it from state_dicts); otherwise the engine's own
    # sharded format, written by save_sharded / read by load_sharded on every rank
    checkpoint_format = "official"
    model_set: ModelSet  # the placed modules
    models: dict[str, nn.Module]  # what a task calls, by name (wrapped where the engine wraps)
    modules: dict[str, nn.Module]  # the plain modules, by name (state dicts)
    optimizer: torch.optim.Optimizer

    @abstractmethod
    def setup(self, model_set: ModelSet, optimizer_factory):
        """Place (and wrap) the modules, then build the optimizer: optimizer_factory(placed modules by name)."""

    @abstractmethod
    def autocast(self):
        """Context for the forward pass and loss."""

    def accumulate(self, last: bool):
        """Context for a micro-batch's forward and backward: gradients are synchronised on the last one only."""
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor):
        loss.backward()

    @abstractmethod
    def step(self, clip_grad: float | None, loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Optional clipping (each trainable module to clip_grad on its own, as the official loop), optimizer step,
        zero grads. Returns (total grad norm, finite) as device tensors, without a host sync; when the loss or the
        grad norm is not finite the optimizer step is skipped on the device."""

    @abstractmethod
    def ema_update(self, momentum: float, apply: torch.Tensor | None = None):
        """target = m target + (1 - m) source for every EMA pair, on local (shard) tensors; a no-op where `apply`
        is false."""

    def state_dicts(self) -> dict:
        """{name: module state dict} for one official-layout file (engines without sharded checkpoints; sharded
        ones are exported with `python -m jepa_scale.checkpoint export`)."""
        return {n: m.state_dict() for n, m in self.modules.items()}

    def load_state_dicts(self, ckpt: dict, source: str, names: tuple[str, ...] | None = None):
        """Load an official-layout checkpoint's modules (strictly; those in `names`, default all) and optimizer
        state."""
        for name, module in self.modules.items():
            if names is not None and name not in names:
                continue
            load_strict(module, section(ckpt, name, source), name, source)
        if has_optimizer_state(ckpt, source):
            load_optimizer_state(self.optimizer, ckpt["opt"])

    def save_sharded(self, path, extra: dict):
        """Write this rank's part of a sharded checkpoint into the folder `path` (every rank calls it)."""
        raise NotImplementedError(f"{type(self).__name__} writes official single-file checkpoints")

    def load_sharded(self, path) -> dict | None:
        """Load the sharded checkpoint in the folder `path` (every rank calls it); extra data it carries, if any."""
        raise NotImplementedError(f"{type(self).__name__} reads official single-file checkpoints")

    def barrier(self):
        pass

    def close(self):
        """Leave the process group (every rank, at the end): a gloo group left to the interpreter's exit can abort
        the process after the run has finished."""

    def all_reduce_mean(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def gather_object(self, obj) -> list:
        """Every rank's `obj`, in rank order (picklable objects)."""
        return [obj]

    def max_over_ranks(self, value: int) -> int:
        """The largest of every rank's `value` (a host sync: call it where the host syncs anyway)."""
        return value


class SingleEngine(Engine):
    def __init__(self, device: str | torch.device = "cpu", dtype: str = "bfloat16"):
        self.device = torch.device(device)
        # bf16 autocast on CUDA only: CPU trains in float32 (CPU bf16 autocast is slow and changes the numbers)
        self.amp_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype)
        if self.device.type != "cuda":
            self.amp_dtype = None
        if self.amp_dtype == torch.float16:
            raise ValueError("meta.dtype=float16 would need a GradScaler; use bfloat16 or float32")

    def setup(self, model_set, optimizer_factory):
        self.model_set = model_set.map(lambda _, m: m.to(self.device))
        self.modules = self.model_set.all()
        self.models = dict(self.modules)
        self.optimizer = optimizer_factory(self.modules)
        self._clip_groups = [[p for p in m.parameters() if p.requires_grad] for m in self.model_set.trainable.values()]
        # EMA pairs every source tensor (frozen positions too, as the official loop)
        self._ema_dst, self._ema_src = [], []
        for target, source in self.model_set.ema:
            self._ema_dst += list(self.model_set.frozen[target].parameters())
            self._ema_src += list(self.model_set.trainable[source].parameters())

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def step(self, clip_grad, loss):
        norms = [_total_norm(params) for params in self._clip_groups]
        if clip_grad is not None:
            for params, norm in zip(self._clip_groups, norms):
                torch.nn.utils.clip_grads_with_norm_(params, clip_grad, norm)
        norm = torch.sqrt(sum(_full(n) ** 2 for n in norms))
        finite = torch.isfinite(loss.detach()) & torch.isfinite(norm)
        skip_next_step_if(self.optimizer, ~finite)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm, finite

    def ema_update(self, momentum, apply=None):
        if self._ema_dst:
            ema_update(self._ema_dst, self._ema_src, momentum, apply)


class ProcessGroupMixin:
    """Rank, world size and collectives over the default process group (for the multi-process engines)."""

    def _join_group(self):
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    def barrier(self):
        dist.barrier()

    def close(self):
        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    def all_reduce_mean(self, t):
        t = t.detach().clone()
        dist.all_reduce(t)  # SUM: gloo has no AVG
        return t / self.world_size

    def gather_object(self, obj) -> list:
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def max_over_ranks(self, value: int) -> int:
        t = torch.tensor(value, dtype=torch.long, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t)
