"""An independent, literal transcription of the official I-JEPA models and objective (facebookresearch/ijepa:
src/models/vision_transformer.py, src/utils/tensors.py, src/masks/utils.py, src/train.py; family.md 2.2-2.3).

Deliberately naive where the official code is: numpy MAE sin-cos tables (`np.meshgrid(grid_w, grid_h)`: the column
index encodes the first half), masks applied by gather-and-concatenate along the batch, full mask-token tensors,
`repeat_interleave_batch` as the official Python loop, explicit softmax attention (the Block is V-JEPA's, `tests.reference_vjepa.RefBlock`). Module names follow the official
checkpoint layout. Used only by tests, as the yardstick for our models and loss.
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.reference_vjepa import RefBlock, randomise  # noqa: F401  (the official Block; I-JEPA's is V-JEPA's)


def np_sincos_1d(dim, pos):
    omega = np.arange(dim // 2, dtype=float)
    omega /= dim / 2.0
    omega = 1.0 / 10000 ** omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def np_sincos_2d_mae(dim, grid_size):
    grid_h = np.arange(grid_size, dtype=float)
    grid_w = np.arange(grid_size, dtype=float)
    grid = np.meshgrid(grid_w, grid_h)  # here w goes first (official comment)
    grid = np.stack(grid, axis=0).reshape([2, 1, grid_size, grid_size])
    emb_h = np_sincos_1d(dim // 2, grid[0])  # named h officially, but grid[0] holds the column index
    emb_w = np_sincos_1d(dim // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)


def apply_masks(x, masks):
    all_x = []
    for m in masks:
        mask_keep = m.unsqueeze(-1).repeat(1, 1, x.size(-1))
        all_x += [torch.gather(x, dim=1, index=mask_keep)]
    return torch.cat(all_x, dim=0)


def repeat_interleave_batch(x, B, repeat):
    N = len(x) // B
    return torch.cat([torch.cat([x[i * B:(i + 1) * B] for _ in range(repeat)], dim=0) for i in range(N)], dim=0)


class RefPatchEmbed(nn.Module):
    def __init__(self, patch_size, embed_dim):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


def _rescale(blocks):
    for layer_id, layer in enumerate(blocks):
        layer.attn.proj.weight.data.div_(math.sqrt(2.0 * (layer_id + 1)))
        layer.mlp.fc2.weight.data.div_(math.sqrt(2.0 * (layer_id + 1)))


class RefVisionTransformer(nn.Module):
    def __init__(self, img_size=64, patch_size=8, embed_dim=48, depth=2, num_heads=2, mlp_ratio=4.0):
        super().__init__()
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.patch_embed = RefPatchEmbed(patch_size, embed_dim)
        num_patches = (img_size // patch_size) ** 2
        self.num_patches = num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, embed_dim), requires_grad=False)
        self.pos_embed.data.copy_(torch.from_numpy(np_sincos_2d_mae(embed_dim, int(num_patches ** .5))).float()[None])
        self.blocks = nn.ModuleList([RefBlock(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        _rescale(self.blocks)

    def forward(self, x, masks=None):
        if masks is not None and not isinstance(masks, list):
            masks = [masks]
        x = self.patch_embed(x)
        x = x + self.pos_embed  # interpolate_pos_encoding returns it unchanged at the native size
        if masks is not None:
            x = apply_masks(x, masks)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class RefPredictor(nn.Module):
    def __init__(self, num_patches, embed_dim=48, predictor_embed_dim=32, depth=1, num_heads=2):
        super().__init__()
        self.predictor_embed = nn.Linear(embed_dim, predictor_embed_dim, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, predictor_embed_dim))
        self.predictor_pos_embed = nn.Parameter(torch.zeros(1, num_patches, predictor_embed_dim), requires_grad=False)
        table = np_sincos_2d_mae(predictor_embed_dim, int(num_patches ** .5))
        self.predictor_pos_embed.data.copy_(torch.from_numpy(table).float().unsqueeze(0))
        self.predictor_blocks = nn.ModuleList([RefBlock(predictor_embed_dim, num_heads, 4.0) for _ in range(depth)])
        self.predictor_norm = nn.LayerNorm(predictor_embed_dim, eps=1e-6)
        self.predictor_proj = nn.Linear(predictor_embed_dim, embed_dim, bias=True)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        _rescale(self.predictor_blocks)

    def forward(self, x, masks_x, masks):
        if not isinstance(masks_x, list):
            masks_x = [masks_x]
        if not isinstance(masks, list):
            masks = [masks]
        B = len(x) // len(masks_x)
        x = self.predictor_embed(x)
        x_pos_embed = self.predictor_pos_embed.repeat(B, 1, 1)
        x += apply_masks(x_pos_embed, masks_x)
        _, N_ctxt, D = x.shape
        pos_embs = self.predictor_pos_embed.repeat(B, 1, 1)
        pos_embs = apply_masks(pos_embs, masks)
        pos_embs = repeat_interleave_batch(pos_embs, B, repeat=len(masks_x))
        pred_tokens = self.mask_token.repeat(pos_embs.size(0), pos_embs.size(1), 1)
        pred_tokens += pos_embs
        x = x.repeat(len(masks), 1, 1)
        x = torch.cat([x, pred_tokens], dim=1)
        for blk in self.predictor_blocks:
            x = blk(x)
        x = self.predictor_norm(x)
        x = x[:, N_ctxt:]
        return self.predictor_proj(x)


def ref_loss(encoder, predictor, target_encoder, imgs, masks_enc, masks_pred):
    """src/train.py's forward_target, forward_context and loss_fn (without the logging AllReduce)."""
    with torch.no_grad():
        h = target_encoder(imgs)
        h = F.layer_norm(h, (h.size(-1),))
        B = len(h)
        h = apply_masks(h, masks_pred)
        h = repeat_interleave_batch(h, B, repeat=len(masks_enc))
    z = encoder(imgs, masks_enc)
    z = predictor(z, masks_enc, masks_pred)
    return F.smooth_l1_loss(z, h)
