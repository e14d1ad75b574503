"""EMA of the context encoder into the target encoder, with foreach ops (one kernel per group, no Python loop)."""
from __future__ import annotations

import torch


@torch.no_grad()
def ema_update(target_params: list[torch.Tensor], online_params: list[torch.Tensor], momentum: float,
               apply: torch.Tensor | None = None):
    """t = m t + (1 - m) e on local tensors (a shard's local part under sharded engines). `apply`, a 0-d bool
    device tensor, turns the update into a no-op when false (a skipped non-finite step) without a host sync."""
    if apply is None:
        torch._foreach_mul_(target_params, momentum)
        torch._foreach_add_(target_params, online_params, alpha=1.0 - momentum)
        return
    m = torch.where(apply, momentum, 1.0).to(target_params[0].dtype)
    torch._foreach_mul_(target_params, m)
    torch._foreach_addcmul_(target_params, online_params, [1.0 - m] * len(online_params))
