"""EMA of the context encoder into the target encoder, with foreach ops (one kernel per group, no Python loop)."""
from __future__ import annotations

import torch


@torch.no_grad()
def ema_update(target_params: list[torch.Tensor], online_params: list[torch.Tensor], momentum: float):
    """t = m t + (1 - m) e, for local tensors (a shard's local part under sharded engines)."""
    torch._foreach_mul_(target_params, momentum)
    torch._foreach_add_(target_params, online_params, alpha=1.0 - momentum)
