"""The engine interface: the only place that knows how parameters are placed, sharded and synchronised.

The training loop calls these methods and never branches on the engine kind. `encoder`/`predictor` are what the
loop calls (possibly wrapped); `modules()` gives the plain models for state dicts. `SingleEngine` runs one process
(CPU or one GPU); `DDPEngine` replicates over a process group.
"""
from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod

import torch
import torch.distributed as dist
import torch.nn as nn

from jepa_scale.train.ema import ema_update
from jepa_scale.train.optim import skip_next_step_if


def _total_norm(params) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads, norm_type=2.0)


class Engine(ABC):
    rank: int = 0
    world_size: int = 1
    device: torch.device

    @abstractmethod
    def setup(self, encoder: nn.Module, predictor: nn.Module, target: nn.Module, optimizer_factory):
        """Place (and wrap) the models, then build the optimizer from the placed parameters."""

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
        """Optional clipping (encoder and predictor each to clip_grad, as the official loop), optimizer step, zero
        grads. Returns (total grad norm, finite) as device tensors, without a host sync; when the loss or the grad
        norm is not finite the optimizer step is skipped on the device."""

    @abstractmethod
    def ema_update(self, momentum: float, apply: torch.Tensor | None = None):
        """target = m target + (1 - m) encoder, on local (shard) tensors; a no-op where `apply` is false."""

    @abstractmethod
    def modules(self) -> tuple[nn.Module, nn.Module, nn.Module]:
        """The plain (unwrapped) encoder, predictor and target, e.g. for state dicts."""

    def state_dict_parts(self) -> dict:
        """{"encoder", "predictor", "target", "opt"} state dicts for an official-layout checkpoint."""
        enc, pred, tgt = self.modules()
        return {"encoder": enc.state_dict(), "predictor": pred.state_dict(), "target": tgt.state_dict(),
                "opt": self.optimizer.state_dict()}

    def barrier(self):
        pass

    def all_reduce_mean(self, t: torch.Tensor) -> torch.Tensor:
        return t


class SingleEngine(Engine):
    def __init__(self, device: str | torch.device = "cpu", dtype: str = "bfloat16"):
        self.device = torch.device(device)
        # bf16 autocast on CUDA only: CPU trains in float32 (CPU bf16 autocast is slow and changes the numbers)
        self.amp_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype)
        if self.device.type != "cuda":
            self.amp_dtype = None
        if self.amp_dtype == torch.float16:
            raise ValueError("meta.dtype=float16 would need a GradScaler; use bfloat16 or float32")

    def setup(self, encoder, predictor, target, optimizer_factory):
        self._modules = tuple(m.to(self.device) for m in (encoder, predictor, target))
        self.encoder, self.predictor, self.target = self._modules
        for p in self.target.parameters():
            p.requires_grad_(False)
        enc, pred, tgt = self._modules
        self.optimizer = optimizer_factory(enc, pred)
        self._enc_params = [p for p in enc.parameters() if p.requires_grad]
        self._pred_params = [p for p in pred.parameters() if p.requires_grad]
        # EMA pairs every encoder tensor (frozen positions too, as the official loop)
        self._ema_src, self._ema_dst = list(enc.parameters()), list(tgt.parameters())

    def modules(self):
        return self._modules

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def step(self, clip_grad, loss):
        enc_norm = _total_norm(self._enc_params)
        pred_norm = _total_norm(self._pred_params)
        if clip_grad is not None:
            torch.nn.utils.clip_grads_with_norm_(self._enc_params, clip_grad, enc_norm)
            torch.nn.utils.clip_grads_with_norm_(self._pred_params, clip_grad, pred_norm)
        norm = torch.sqrt(enc_norm ** 2 + pred_norm ** 2)
        finite = torch.isfinite(loss.detach()) & torch.isfinite(norm)
        skip_next_step_if(self.optimizer, ~finite)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm, finite

    def ema_update(self, momentum, apply=None):
        ema_update(self._ema_dst, self._ema_src, momentum, apply)


class DDPEngine(SingleEngine):
    """Data parallel: every rank holds the whole model; gradients are averaged over ranks in backward."""

    def __init__(self, device, dtype: str = "bfloat16"):
        super().__init__(device, dtype)
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    def setup(self, encoder, predictor, target, optimizer_factory):
        super().setup(encoder, predictor, target, optimizer_factory)
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        enc, pred, _ = self._modules
        # the target is frozen and never wrapped: EMA keeps it identical on every rank
        self.encoder, self.predictor = DDP(enc, device_ids=ids), DDP(pred, device_ids=ids)

    def accumulate(self, last):
        if last:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        stack.enter_context(self.encoder.no_sync())
        stack.enter_context(self.predictor.no_sync())
        return stack

    def barrier(self):
        dist.barrier()

    def all_reduce_mean(self, t):
        t = t.detach().clone()
        dist.all_reduce(t)  # SUM: gloo has no AVG
        return t / self.world_size
