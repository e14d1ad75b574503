"""V-JEPA 2's 3-D rotary position embedding: each attention head's q and k are rotated by the token's (t, h, w)
grid position, one equal slice of the head per axis, the rest of the head left as it is.

Two variants of the frequency layout:
- `official`: the released V-JEPA 2 weights were trained with the per-axis sin/cos tables *tiled*
  ([w_0..w_{m-1}, w_0..w_{m-1}]) while the rotation pairs *adjacent* elements, so the two elements of a pair turn
  by different angles (not a true rotation, norms change). Reproduced because the weights depend on it.
- `corrected`: the tables interleaved (w_0, w_0, w_1, w_1, ...), a true rotation per pair, so q_i . k_j depends
  only on the position differences. Not compatible with released weights.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from jepa_scale.models.attention import attention

VARIANTS = ("official", "corrected")


def axis_dim(head_dim: int) -> int:
    """Head elements rotated per axis (even); the 3 slices [t | h | w] lead, the remaining tail is not rotated."""
    return 2 * ((head_dim // 3) // 2)


def grid_positions(ids: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """Flat token indices [B, K] in a (T', H', W') grid (t outermost) -> integer positions [B, K, 3] (t, h, w)."""
    _, h_tokens, w_tokens = grid
    per_frame = h_tokens * w_tokens
    t = ids // per_frame
    h = (ids - per_frame * t) // w_tokens
    w = ids - per_frame * t - w_tokens * h
    return torch.stack((t, h, w), dim=-1)


def _axis_tables(pos: torch.Tensor, d: int, dtype: torch.dtype, variant: str):
    # omega and the angles in q's own dtype, as the official code: under bf16 autocast the released models saw
    # bf16 angles, and the same rounding keeps the features equal
    omega = torch.arange(d // 2, dtype=dtype, device=pos.device)
    omega /= d / 2.0
    omega = 1.0 / 10000 ** omega
    freq = pos.to(dtype).unsqueeze(-1) * omega  # [B, K, d/2]
    sin, cos = freq.sin(), freq.cos()
    if variant == "official":
        return cos.repeat(1, 1, 2), sin.repeat(1, 1, 2)
    return cos.repeat_interleave(2, dim=-1), sin.repeat_interleave(2, dim=-1)


def rope_tables(pos: torch.Tensor, head_dim: int, dtype: torch.dtype, variant: str = "official"):
    """Positions [B, K, 3] -> (cos, sin), each [B, 1, K, 3 d]: the three axes' tables side by side, one shared by
    every head (heads broadcast)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown RoPE variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    d = axis_dim(head_dim)
    parts = [_axis_tables(pos[..., a], d, dtype, variant) for a in range(3)]
    cos = torch.cat([c for c, _ in parts], dim=-1).unsqueeze(1)
    sin = torch.cat([s for _, s in parts], dim=-1).unsqueeze(1)
    return cos, sin


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, heads, K, hd] rotated on its first cos.size(-1) elements: x cos + rot(x) sin, rot pairing adjacent
    elements (rot(x)[2k] = -x[2k+1], rot(x)[2k+1] = x[2k]); the tail is passed through."""
    r = cos.size(-1)
    head, tail = x[..., :r], x[..., r:]
    even, odd = head.unflatten(-1, (-1, 2)).unbind(-1)
    partner = torch.stack((-odd, even), dim=-1).flatten(-2)
    return torch.cat([head * cos + partner * sin, tail], dim=-1)


class RoPEAttention(nn.Module):
    """Self-attention with 3-D RoPE on q and k; parameters `qkv` and `proj` as the official module, so its
    checkpoints load. forward(x [B, K, D], pos [B or 1, K, 3] integer grid positions) -> [B, K, D]."""

    def __init__(self, dim: int, num_heads: int, backend: str = "sdpa", variant: str = "official"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown RoPE variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        self.num_heads, self.backend, self.variant = num_heads, backend, variant
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        cos, sin = rope_tables(pos, self.head_dim, q.dtype, self.variant)
        x = attention(rotate(q, cos, sin), rotate(k, cos, sin), v, self.backend)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))
