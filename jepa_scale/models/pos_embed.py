"""Fixed sin-cos position tables, computed in float64 like the official numpy code, returned as float32."""
from __future__ import annotations

import math

import torch


def sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """[M] positions -> [M, dim]: concat(sin(p * omega), cos(p * omega)), omega_i = 10000^(-i / (dim/2))."""
    assert dim % 2 == 0, f"sin-cos width must be even, got {dim}"
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000 ** omega
    out = pos.reshape(-1).double()[:, None] * omega[None, :]
    return torch.cat([out.sin(), out.cos()], dim=1)


def sincos_3d(dim: int, grid_size: int, grid_depth: int, uniform_power: bool = False) -> torch.Tensor:
    """[T'*H'*W', dim] table, rows in (t, h, w) order with t outermost; features concat(time, h, w)[:dim]."""
    d, h, w = torch.meshgrid(torch.arange(grid_depth), torch.arange(grid_size), torch.arange(grid_size), indexing="ij")
    if uniform_power:
        dd = dh = dw = int(math.ceil(dim / 6) * 2)
    else:
        dd, dh, dw = dim // 2, dim // 4, dim // 4
    table = torch.cat([sincos_1d(dd, d), sincos_1d(dh, h), sincos_1d(dw, w)], dim=1)
    return table[:, :dim].float()


def sincos_2d(dim: int, grid_size: int, grid_width: int | None = None) -> torch.Tensor:
    """[H'*W', dim] table for images (W' = H' unless `grid_width` is given, as for a spectrogram's frequency x
    time grid), rows (h, w) with h outermost, features concat(h, w)."""
    h, w = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_width or grid_size), indexing="ij")
    return torch.cat([sincos_1d(dim // 2, h), sincos_1d(dim // 2, w)], dim=1).float()
