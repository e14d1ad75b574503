"""Data parallel: every rank holds every module; gradients of the trainable ones are averaged in backward."""
from __future__ import annotations

import contextlib

from torch.nn.parallel import DistributedDataParallel as DDP

from jepa_scale.distributed.engine import ProcessGroupMixin, SingleEngine


class DDPEngine(ProcessGroupMixin, SingleEngine):
    def __init__(self, device, dtype: str = "bfloat16"):
        super().__init__(device, dtype)
        self._join_group()

    def setup(self, model_set, optimizer_factory):
        super().setup(model_set, optimizer_factory)
        ids = [self.device.index] if self.device.type == "cuda" else None
        # frozen modules are never wrapped: an EMA keeps a target identical on every rank
        for name, module in self.model_set.trainable.items():
            self.models[name] = DDP(module, device_ids=ids)

    def accumulate(self, last):
        if last:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        for name in self.model_set.trainable:
            stack.enter_context(self.models[name].no_sync())
        return stack
