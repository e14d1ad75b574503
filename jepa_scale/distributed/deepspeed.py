"""DeepSpeed ZeRO stage 0-3 behind the engine interface (imported only when distributed.engine=deepspeed).

Every module of the model set lives in one container handed to deepspeed.initialize, so under ZeRO-3 a frozen EMA
target is partitioned exactly like its source; it is not in the optimizer, runs forward only through DeepSpeed's
gather hooks, and its EMA update works on each rank's own partitions (`ds_tensor`), never gathered.
The optimizer is our fused torch AdamW (no JIT-compiled DeepSpeed Adam); its `found_inf` skips a non-finite step.
"""
from __future__ import annotations


import torch
import torch.nn as nn

from jepa_scale.checkpoint import CheckpointError
from jepa_scale.distributed.engine import ProcessGroupMixin, SingleEngine
from jepa_scale.optim import ema_update, skip_next_step_if

try:
    import deepspeed
except ImportError as e:  # pragma: no cover
    raise ImportError("distributed.engine=deepspeed needs DeepSpeed: pip install --no-build-isolation "
                      "'deepspeed>=0.15' (make test does this)") from e


class Modules(nn.ModuleDict):
    """The model set as one module for DeepSpeed; a task calls the parts directly."""

    def forward(self, *args, **kwargs):  # pragma: no cover - never called: a task calls the parts
        raise RuntimeError("call the modules by name")


def _containers_without_forward(module: nn.Module):
    """Parameters held in ParameterList/Dict containers (e.g. mask tokens): their container never runs forward, so
    ZeRO-3 must gather them with the module that uses them."""
    for sub in module.modules():
        if isinstance(sub, (nn.ParameterList, nn.ParameterDict)):
            yield from sub.parameters()


def ds_config(stage: int, micro_batch: int, bf16: bool, offload_optimizer: bool) -> dict:
    """The DeepSpeed JSON config our config implies (gradient accumulation is done by our loop)."""
    zero = {"stage": stage}
    if stage == 3:
        # no "persistent" (always gathered) small params: the frozen target's would never see its EMA, which
        # updates the partitions
        zero["stage3_param_persistence_threshold"] = 0
    if offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    return {"train_micro_batch_size_per_gpu": micro_batch, "gradient_accumulation_steps": 1,
            "zero_optimization": zero, "bf16": {"enabled": bf16}, "gradient_clipping": 0.0,
            "steps_per_print": 2 ** 31, "wall_clock_breakdown": False}


def _base_optimizer(opt):
    while hasattr(opt, "optimizer") and not isinstance(opt, torch.optim.Optimizer):
        opt = opt.optimizer
    return opt


class DeepSpeedEngine(ProcessGroupMixin, SingleEngine):
    checkpoint_format = "deepspeed"

    def __init__(self, device, dtype: str, stage: int, micro_batch: int, offload_optimizer: bool = False):
        super().__init__(device, dtype)
        self._join_group()
        self.stage, self.micro_batch, self.offload = stage, micro_batch, offload_optimizer

    def setup(self, model_set, optimizer_factory):
        whole = Modules(model_set.all()).to(self.device)
        optimizer = optimizer_factory(dict(whole))
        cfg = ds_config(self.stage, self.micro_batch, self.amp_dtype == torch.bfloat16, self.offload)
        self.ds, self.optimizer, _, _ = deepspeed.initialize(model=whole, optimizer=optimizer, config=cfg)
        placed = dict(self.ds.module)
        if self.stage == 3:
            for module in placed.values():
                for p in _containers_without_forward(module):
                    deepspeed.zero.register_external_parameter(module, p)
        self.model_set = model_set.map(lambda name, _: placed[name])
        self.modules = self.model_set.all()
        self.models = dict(self.modules)
        self._base = _base_optimizer(self.optimizer)

    def backward(self, loss):
        self.ds.backward(loss, scale_wrt_gas=False)  # the loop already divides by its micro-batch count

    def step(self, clip_grad, loss):
        # DeepSpeed computes the norm inside its step and clips globally (all trainable modules together)
        if self.stage == 0:
            self.ds._config.gradient_clipping = clip_grad or 0.0
        else:
            self.optimizer.clip_grad = clip_grad or 0.0
        finite = torch.isfinite(loss.detach())  # the grad norm is only known after DeepSpeed's step
        skip_next_step_if(self._base, ~finite)
        self.ds.step()
        norm = self.ds.get_global_grad_norm()
        norm = torch.as_tensor(norm if norm is not None else float("nan"), dtype=torch.float32)
        return norm, finite

    def _local(self, module):
        if self.stage == 3:
            return [p.ds_tensor for p in module.parameters()]
        return list(module.parameters())

    @torch.no_grad()
    def ema_update(self, momentum, apply=None):
        for target, source in self.model_set.ema:
            ema_update(self._local(self.model_set.frozen[target]), self._local(self.model_set.trainable[source]),
                       momentum, apply)

    def load_state_dicts(self, ckpt, source):
        raise NotImplementedError(f"{source}: starting a DeepSpeed run from an official-layout file is not supported "
                                  f"yet; resume from the run's own checkpoints, or use the fsdp or ddp engine")

    def save_sharded(self, path, extra):
        # no `latest` from DeepSpeed: its rank 0 writes it before the other ranks finish their partitions; the
        # checkpointer's manifest says when the folder is complete
        self.ds.save_checkpoint(str(path.parent), tag=path.name, client_state={"jepa_scale": extra}, save_latest=False)

    def load_sharded(self, path):
        loaded, client = self.ds.load_checkpoint(str(path.parent), tag=path.name)
        if loaded is None:
            raise CheckpointError(f"{path}: DeepSpeed could not load this checkpoint")
        return client.get("jepa_scale")
