"""PyTorch FSDP2: each module's `shard_units()`, then the module itself, are `fully_shard`ed over the ranks.

Frozen modules (an EMA target) are sharded exactly like the trainable ones, run forward only and are updated shard
by shard; they are never gathered for the update. reshard_after_forward=True frees gathered units after forward
(ZeRO-3-like), False keeps them (ZeRO-2-like). Checkpoints are sharded (torch.distributed.checkpoint).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_optimizer_state_dict,
                                                     set_model_state_dict, set_optimizer_state_dict)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import distribute_tensor

from jepa_scale.checkpoint import check_matches
from jepa_scale.checkpoint.sharded import load_dcp, save_dcp
from jepa_scale.distributed.engine import ProcessGroupMixin, SingleEngine, has_optimizer_state, section
from jepa_scale.optim import ema_update, load_optimizer_state


class FSDPEngine(ProcessGroupMixin, SingleEngine):
    checkpoint_format = "dcp"

    def __init__(self, device, dtype: str = "bfloat16", reshard_after_forward: bool = True, hsdp_replicas: int = 1):
        super().__init__(device, dtype)
        self._join_group()
        self.reshard, self.replicas = reshard_after_forward, hsdp_replicas
        if self.world_size % hsdp_replicas:
            raise ValueError(f"distributed.hsdp_replicas={hsdp_replicas} does not divide {self.world_size} ranks")

    def _mesh(self):
        if self.replicas > 1:  # HSDP: parameters sharded within each group of ranks, replicated across groups
            return init_device_mesh(self.device.type, (self.replicas, self.world_size // self.replicas),
                                    mesh_dim_names=("replicate", "shard"))
        return init_device_mesh(self.device.type, (self.world_size,))

    def setup(self, model_set, optimizer_factory):
        mesh = self._mesh()
        for name, module in model_set.all().items():
            # A frozen module always reshards after its forward: it has no backward to reshard it, and gathered
            # copies kept across steps would go stale once the EMA updates the shards.
            reshard = self.reshard if name in model_set.trainable else True
            module.to(self.device)
            for unit in module.shard_units():
                fully_shard(unit, mesh=mesh, reshard_after_forward=reshard)
            fully_shard(module, mesh=mesh, reshard_after_forward=reshard)
        super().setup(model_set, optimizer_factory)

    def accumulate(self, last):
        for module in self.model_set.trainable.values():
            module.set_requires_gradient_sync(last)  # reduce-scatter only on the last micro-batch
        return super().accumulate(last)

    @torch.no_grad()
    def ema_update(self, momentum, apply=None):
        if self._ema_dst:
            ema_update([p.to_local() for p in self._ema_dst], [p.to_local() for p in self._ema_src], momentum, apply)

    def load_state_dicts(self, ckpt, source):
        for name, module in self.modules.items():
            state = check_matches(module.state_dict(), section(ckpt, name, source), name, source)
            set_model_state_dict(module, state, options=StateDictOptions(full_state_dict=True))
        if not has_optimizer_state(ckpt, source):
            return
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        opt = dict(ckpt["opt"])
        opt["state"] = {i: {k: distribute_tensor(v.to(self.device), params[i].device_mesh, params[i].placements)
                            if k != "step" else v for k, v in st.items()} for i, st in opt["state"].items()}
        load_optimizer_state(self.optimizer, opt)

    def save_sharded(self, path, extra):
        save_dcp(path, self.sharded_state())

    def load_sharded(self, path):
        state = self.sharded_state()
        load_dcp(path, state)
        self.load_sharded_state(state)

    def _trainable(self) -> nn.Module:
        # a view that names parameters "<module>.*" for the optimizer's sharded state dict
        return nn.ModuleDict(self.model_set.trainable)

    def sharded_state(self) -> dict:
        """Each rank's shards: modules and optimizer state keyed by parameter name (torch.distributed.checkpoint)."""
        return {"model": {name: get_model_state_dict(m) for name, m in self.modules.items()},
                "optim": get_optimizer_state_dict(self._trainable(), self.optimizer)}

    def load_sharded_state(self, state: dict):
        for name, module in self.modules.items():
            set_model_state_dict(module, state["model"][name])
        set_optimizer_state_dict(self._trainable(), self.optimizer, state["optim"])
