"""An independent, literal transcription of the official V-JEPA V1 model (its modules, names and init).

Deliberately naive where the official code is: numpy sin-cos tables, patch embedding per mask, full-length mask
tokens gathered afterwards, explicit attention. Module names follow the official checkpoint layout, so its state
dicts are what official checkpoints hold. Used only by tests, as the yardstick for our fast models.
"""
import math

import numpy as np
import torch
import torch.nn as nn


def np_sincos_1d(dim, pos):
    omega = np.arange(dim // 2, dtype=float) / (dim / 2.0)
    omega = 1.0 / 10000 ** omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def np_sincos_3d(dim, grid, depth, uniform_power):
    gd, gh, gw = np.arange(depth, dtype=float), np.arange(grid, dtype=float), np.arange(grid, dtype=float)
    gh, gd, gw = np.meshgrid(gh, gd, gw)  # rows enumerate (d, h, w)
    if uniform_power:
        dh = dw = dd = int(np.ceil(dim / 6) * 2)
    else:
        dh, dw, dd = dim // 4, dim // 4, dim // 2
    table = np.concatenate([np_sincos_1d(dd, gd), np_sincos_1d(dh, gh), np_sincos_1d(dw, gw)], axis=1)
    return table[:, :dim]


def np_sincos_2d(dim, grid):
    gw, gh = np.meshgrid(np.arange(grid, dtype=float), np.arange(grid, dtype=float))
    return np.concatenate([np_sincos_1d(dim // 2, gh), np_sincos_1d(dim // 2, gw)], axis=1)


def apply_masks(x, masks):
    return torch.cat([torch.gather(x, 1, m.unsqueeze(-1).repeat(1, 1, x.size(-1))) for m in masks], dim=0)


class RefAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.heads)
        x = (a.softmax(-1) @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class RefMLP(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class RefBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn, self.mlp = RefAttention(dim, heads), RefMLP(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class RefPatchEmbed3D(nn.Module):
    def __init__(self, patch, tubelet, dim):
        super().__init__()
        self.proj = nn.Conv3d(3, dim, (tubelet, patch, patch), (tubelet, patch, patch))

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class RefEncoder(nn.Module):
    def __init__(self, img=64, patch=16, frames=4, tubelet=2, dim=48, depth=2, heads=2, mlp_ratio=4.0, up=True):
        super().__init__()
        grid, gd = img // patch, frames // tubelet
        self.patch_embed = RefPatchEmbed3D(patch, tubelet, dim)
        self.pos_embed = nn.Parameter(torch.from_numpy(np_sincos_3d(dim, grid, gd, up)).float()[None],
                                      requires_grad=False)
        self.blocks = nn.ModuleList([RefBlock(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x, masks=None):
        x = self.patch_embed(x) + self.pos_embed
        if masks is not None:
            x = apply_masks(x, [masks])
        for b in self.blocks:
            x = b(x)
        return self.norm(x)


class RefPredictor(nn.Module):
    def __init__(self, img=64, patch=16, frames=4, tubelet=2, dim=48, pdim=32, depth=1, heads=2, up=True, n_tok=2):
        super().__init__()
        grid, gd = img // patch, frames // tubelet
        self.num_patches = grid * grid * gd
        self.predictor_embed = nn.Linear(dim, pdim)
        self.mask_tokens = nn.ParameterList([nn.Parameter(torch.zeros(1, 1, pdim)) for _ in range(n_tok)])
        self.predictor_pos_embed = nn.Parameter(torch.from_numpy(np_sincos_3d(pdim, grid, gd, up)).float()[None],
                                                requires_grad=False)
        self.predictor_blocks = nn.ModuleList([RefBlock(pdim, heads, 4.0) for _ in range(depth)])
        self.predictor_norm = nn.LayerNorm(pdim, eps=1e-6)
        self.predictor_proj = nn.Linear(pdim, dim)

    def forward(self, ctx, masks_ctx, masks_tgt, mask_index):
        B = ctx.size(0)
        x = self.predictor_embed(ctx)
        n_ctx = x.size(1)
        x = x + apply_masks(self.predictor_pos_embed.repeat(B, 1, 1), [masks_ctx])
        tok = self.mask_tokens[mask_index % len(self.mask_tokens)].repeat(B, self.num_patches, 1)
        tok = apply_masks(tok, [masks_tgt]) + apply_masks(self.predictor_pos_embed.repeat(B, 1, 1), [masks_tgt])
        x = torch.cat([x, tok], dim=1)
        for b in self.predictor_blocks:
            x = b(x)
        return self.predictor_proj(self.predictor_norm(x)[:, n_ctx:])


def randomise(module, seed):
    """Non-trivial weights everywhere (including biases, norms, mask tokens), positions left as built."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "pos_embed" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if "norm" in name and "weight" in name else 0))
    return module
