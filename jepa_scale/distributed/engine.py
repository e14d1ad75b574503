"""The engine interface: the only place that knows how parameters are placed, sharded and synchronised.

The training loop calls these methods and never branches on the engine kind. `SingleEngine` runs one process
(CPU or one GPU); the distributed engines (DDP, FSDP2, DeepSpeed) implement the same methods.
"""
from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod

import torch
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

    @abstractmethod
    def backward_and_step(self, loss: torch.Tensor, clip_grad: float | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Backward, optional clipping (encoder and predictor each to clip_grad, as the official loop), optimizer
        step, zero grads. Returns (total grad norm, finite) as device tensors, without a host sync; when the loss
        or the grad norm is not finite the optimizer step is skipped on the device."""

    @abstractmethod
    def ema_update(self, momentum: float, apply: torch.Tensor | None = None):
        """target = m target + (1 - m) encoder, on local (shard) tensors; a no-op where `apply` is false."""

    @abstractmethod
    def state_dict_parts(self) -> dict:
        """{"encoder", "predictor", "target", "opt"} state dicts for an official-layout checkpoint."""

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
        self.encoder, self.predictor, self.target = (m.to(self.device) for m in (encoder, predictor, target))
        for p in self.target.parameters():
            p.requires_grad_(False)
        self.optimizer = optimizer_factory(self.encoder, self.predictor)
        self._enc_params = [p for p in self.encoder.parameters() if p.requires_grad]
        self._pred_params = [p for p in self.predictor.parameters() if p.requires_grad]
        # EMA pairs every encoder tensor (frozen positions too, as the official loop)
        self._ema_src = list(self.encoder.parameters())
        self._ema_dst = list(self.target.parameters())

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def backward_and_step(self, loss, clip_grad):
        loss.backward()
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

    def state_dict_parts(self) -> dict:
        """Full (unsharded) state dicts, keyed as the official checkpoint's sections."""
        return {"encoder": self.encoder.state_dict(), "predictor": self.predictor.state_dict(),
                "target": self.target.state_dict(), "opt": self.optimizer.state_dict()}
