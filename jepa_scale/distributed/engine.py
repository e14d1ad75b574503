"""The engine interface: the only place that knows how parameters are placed, sharded and synchronised.

The training loop calls these methods and never branches on the engine kind. `encoder`/`predictor` are what the
loop calls (possibly wrapped); `modules()` gives the plain models for state dicts. `SingleEngine` runs one process
(CPU or one GPU); `DDPEngine` replicates over a process group; `FSDPEngine` shards with FSDP2; DeepSpeed ZeRO lives
in deepspeed_engine.py (imported only when chosen).
"""
from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod

import torch
import torch.distributed as dist
import torch.nn as nn

from jepa_scale.checkpoint import check_matches, load_strict
from jepa_scale.train.ema import ema_update
from jepa_scale.train.optim import skip_next_step_if

log = logging.getLogger(__name__)


def _has_optimizer_state(ckpt: dict, source: str) -> bool:
    if ckpt.get("opt"):
        return True
    log.warning("%s holds no optimizer state (a DeepSpeed export?): AdamW moments start at 0", source)
    return False


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
    sharded_checkpoints = False  # True: save_sharded/load_sharded in the engine's own format, else one official file

    def save_sharded(self, root, step: int, extra: dict):
        """Write a sharded checkpoint under `root` (every rank calls it); it counts only once complete."""
        raise NotImplementedError(f"{type(self).__name__} writes official single-file checkpoints")

    def load_sharded(self, root) -> dict | None:
        """Load the newest complete sharded checkpoint under `root`; its extra data, or None when there is none."""
        raise NotImplementedError(f"{type(self).__name__} reads official single-file checkpoints")

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
        """{"encoder", "predictor", "target", "opt"} state dicts for an official-layout checkpoint (engines without
        sharded checkpoints; sharded ones are exported with `python -m jepa_scale.checkpoint export`)."""
        enc, pred, tgt = self.modules()
        return {"encoder": enc.state_dict(), "predictor": pred.state_dict(), "target": tgt.state_dict(),
                "opt": self.optimizer.state_dict()}

    def load_parts(self, ckpt: dict, source: str):
        """Load an official-layout checkpoint's models (strictly) and optimizer state."""
        for key, module in zip(("encoder", "predictor", "target_encoder"), self.modules()):
            load_strict(module, ckpt[key], key, source)
        if _has_optimizer_state(ckpt, source):
            self.optimizer.load_state_dict(ckpt["opt"])

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
        norm = torch.sqrt(_full(enc_norm) ** 2 + _full(pred_norm) ** 2)
        finite = torch.isfinite(loss.detach()) & torch.isfinite(norm)
        skip_next_step_if(self.optimizer, ~finite)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm, finite

    def ema_update(self, momentum, apply=None):
        ema_update(self._ema_dst, self._ema_src, momentum, apply)


class ProcessGroupMixin:
    """Rank, world size and collectives over the default process group (for the multi-process engines)."""

    def _join_group(self):
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    def barrier(self):
        dist.barrier()

    def all_reduce_mean(self, t):
        t = t.detach().clone()
        dist.all_reduce(t)  # SUM: gloo has no AVG
        return t / self.world_size


class DDPEngine(ProcessGroupMixin, SingleEngine):
    """Data parallel: every rank holds the whole model; gradients are averaged over ranks in backward."""

    def __init__(self, device, dtype: str = "bfloat16"):
        super().__init__(device, dtype)
        self._join_group()

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


class FSDPEngine(ProcessGroupMixin, SingleEngine):
    """PyTorch FSDP2: each block, then the whole model, is `fully_shard`ed over the ranks. The EMA target is sharded
    exactly like the encoder, runs forward only and is updated shard by shard; it is never gathered for the update.
    reshard_after_forward=True frees gathered blocks after forward (ZeRO-3-like), False keeps them (ZeRO-2-like).
    Checkpoints are sharded (torch.distributed.checkpoint)."""

    sharded_checkpoints = True

    def __init__(self, device, dtype: str = "bfloat16", reshard_after_forward: bool = True, hsdp_replicas: int = 1):
        super().__init__(device, dtype)
        self._join_group()
        self.reshard, self.replicas = reshard_after_forward, hsdp_replicas
        if self.world_size % hsdp_replicas:
            raise ValueError(f"distributed.hsdp_replicas={hsdp_replicas} does not divide {self.world_size} ranks")

    def setup(self, encoder, predictor, target, optimizer_factory):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        if self.replicas > 1:  # HSDP: parameters sharded within each group of ranks, replicated across groups
            mesh = init_device_mesh(self.device.type, (self.replicas, self.world_size // self.replicas),
                                    mesh_dim_names=("replicate", "shard"))
        else:
            mesh = init_device_mesh(self.device.type, (self.world_size,))
        # The target always reshards after its forward: it has no backward to reshard it, and gathered copies kept
        # across steps would go stale once the EMA updates the shards (it is re-gathered every step either way).
        for model, blocks, reshard in ((encoder, encoder.blocks, self.reshard),
                                       (predictor, predictor.predictor_blocks, self.reshard),
                                       (target, target.blocks, True)):
            model.to(self.device)
            for block in blocks:
                fully_shard(block, mesh=mesh, reshard_after_forward=reshard)
            fully_shard(model, mesh=mesh, reshard_after_forward=reshard)
        super().setup(encoder, predictor, target, optimizer_factory)

    def accumulate(self, last):
        enc, pred, _ = self._modules
        for m in (enc, pred):
            m.set_requires_gradient_sync(last)  # reduce-scatter only on the last micro-batch
        return contextlib.nullcontext()

    @torch.no_grad()
    def ema_update(self, momentum, apply=None):
        ema_update([p.to_local() for p in self._ema_dst], [p.to_local() for p in self._ema_src], momentum, apply)

    def load_parts(self, ckpt, source):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
        from torch.distributed.tensor import distribute_tensor

        for key, module in zip(("encoder", "predictor", "target_encoder"), self._modules):
            state = check_matches(module.state_dict(), ckpt[key], key, source)
            set_model_state_dict(module, state, options=StateDictOptions(full_state_dict=True))
        if not _has_optimizer_state(ckpt, source):
            return
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        opt = dict(ckpt["opt"])
        opt["state"] = {i: {k: distribute_tensor(v.to(self.device), params[i].device_mesh, params[i].placements)
                            if k != "step" else v for k, v in st.items()} for i, st in opt["state"].items()}
        self.optimizer.load_state_dict(opt)

    def save_sharded(self, root, step, extra):
        from jepa_scale.checkpoint.sharded import save_sharded

        return save_sharded(root, step, self.sharded_state(), extra, self.rank)

    def load_sharded(self, root):
        from jepa_scale.checkpoint.sharded import latest_checkpoint, load_sharded

        path = latest_checkpoint(root)
        if path is None:
            return None
        state = self.sharded_state()
        extra = load_sharded(path, state)
        self.load_sharded_state(state)
        return extra

    def _trainable(self) -> nn.Module:
        # a view that names parameters "encoder.*" / "predictor.*" for the optimizer's sharded state dict
        enc, pred, _ = self._modules
        return nn.ModuleDict({"encoder": enc, "predictor": pred})

    def sharded_state(self) -> dict:
        """Each rank's shards: models and optimizer state keyed by parameter name (for torch.distributed.checkpoint)."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

        enc, pred, tgt = self._modules
        return {"model": {"encoder": get_model_state_dict(enc), "predictor": get_model_state_dict(pred),
                          "target_encoder": get_model_state_dict(tgt)},
                "optim": get_optimizer_state_dict(self._trainable(), self.optimizer)}

    def load_sharded_state(self, state: dict):
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        for key, module in zip(("encoder", "predictor", "target_encoder"), self._modules):
            set_model_state_dict(module, state["model"][key])
        set_optimizer_state_dict(self._trainable(), self.optimizer, state["optim"])
