"""The one place that gathers tokens by index."""
from __future__ import annotations

import torch


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x [B, N, D], idx LongTensor [B, K] -> [B, K, D]. x may have batch 1 (a shared table): it broadcasts."""
    if x.size(0) == 1 and idx.size(0) > 1:
        return x[0][idx]
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.size(-1)))
