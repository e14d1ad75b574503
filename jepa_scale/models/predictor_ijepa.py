"""I-JEPA's models (facebookresearch/ijepa src/models/vision_transformer.py, family.md 2.2): the predictor, and the
one way its image encoder differs from our image ViT, the position table.

The official 2-D sin-cos table comes from MAE's `get_2d_sincos_pos_embed`, whose `np.meshgrid(grid_w, grid_h)`
puts the column index first: row n = (h, w) of the table is [sincos(w) | sincos(h)], the halves in the other order
than V-JEPA's [sincos(h) | sincos(w)] (`pos_embed.sincos_2d`). Both encoder and predictor use it.

Several masks go along the batch axis, as the official: the encoder's outputs for the nenc context masks are
concatenated (mask-major), the npred target masks likewise, and every (target j, context i) pair is one sequence,
ordered (j, i, sample) like the official `x.repeat(npred)` and `repeat_interleave_batch(..., repeat=nenc)`.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from jepa_scale.models.pos_embed import sincos_2d
from jepa_scale.models.predictor import Predictor
from jepa_scale.models.registry import checkpoint_every
from jepa_scale.models.tokens import gather_tokens
from jepa_scale.models.vit import Block, BlockStack, VisionTransformer, init_vit_weights, preset_arch, rescale_blocks


def ijepa_sincos_2d(dim: int, grid_size: int) -> torch.Tensor:
    """[H'*W', dim] I-JEPA (MAE) table: rows (h, w), features [sincos(w) | sincos(h)]."""
    table = sincos_2d(dim, grid_size)
    return torch.cat([table[:, dim // 2:], table[:, :dim // 2]], dim=1)


def repeat_interleave_batch(x: torch.Tensor, batch: int, repeat: int) -> torch.Tensor:
    """[N*B, ...] -> [N*repeat*B, ...]: each consecutive block of `batch` rows repeated `repeat` times in place
    (the official helper of the same name, without its Python loop)."""
    n = x.size(0) // batch
    return x.reshape(n, 1, batch, *x.shape[1:]).expand(n, repeat, batch, *x.shape[1:]).reshape(-1, *x.shape[1:])


class IJEPAEncoder(VisionTransformer):
    """Our image ViT (num_frames=1: Conv2d patches, qkv bias, LayerNorm eps 1e-6, exact GELU, final norm) with the
    I-JEPA position table. The masked forward of a list of masks returns one [B, K, D] per mask (the official
    concatenates them along the batch)."""

    def reset_pos_embed(self):
        with torch.no_grad():
            self.pos_embed.copy_(ijepa_sincos_2d(self.embed_dim, self.grid_size).unsqueeze(0))


class IJEPAPredictor(BlockStack, nn.Module):
    """`vit_predictor`: Linear(D, Dp), fixed I-JEPA sin-cos `predictor_pos_embed`, one `mask_token` (truncated
    normal, std 0.02), `depth` blocks with the encoder's head count, `predictor_norm`, Linear(Dp, D)."""

    def __init__(self, num_patches: int, embed_dim: int = 768, predictor_embed_dim: int = 384, depth: int = 6,
                 num_heads: int = 12, mlp_ratio: float = 4.0, attention: str = "sdpa", init_std: float = 0.02):
        super().__init__()
        Dp = self.width = predictor_embed_dim
        self.num_patches = num_patches
        grid = int(num_patches ** 0.5)
        if grid * grid != num_patches:
            raise ValueError(f"the I-JEPA predictor takes a square token grid, got {num_patches} tokens")
        self.predictor_embed = nn.Linear(embed_dim, Dp)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, Dp))
        self.predictor_pos_embed = nn.Parameter(ijepa_sincos_2d(Dp, grid).unsqueeze(0), requires_grad=False)
        self.predictor_blocks = nn.ModuleList([Block(Dp, num_heads, mlp_ratio, attention) for _ in range(depth)])
        self.predictor_norm = nn.LayerNorm(Dp, eps=1e-6)
        self.predictor_proj = nn.Linear(Dp, embed_dim)
        # the official order of draws: the mask token, then every Linear in module order, then the rescale
        nn.init.trunc_normal_(self.mask_token, std=init_std)
        init_vit_weights(self, init_std)
        rescale_blocks(self.predictor_blocks)

    def _units(self):
        return self.predictor_blocks

    io_flops = Predictor.io_flops  # the same two projections, named as V-JEPA's

    def forward(self, z, masks_ctx, masks_tgt) -> torch.Tensor:
        """z: the encoder's output at masks_ctx (a list of nenc [B, K_ctx, D], or them concatenated along the
        batch); masks_ctx: nenc LongTensors [B, K_ctx]; masks_tgt: npred [B, K_tgt] (or single tensors).
        -> predictions [npred * nenc * B, K_tgt, D], ordered (target mask, context mask, sample)."""
        masks_ctx = masks_ctx if isinstance(masks_ctx, (list, tuple)) else [masks_ctx]
        masks_tgt = masks_tgt if isinstance(masks_tgt, (list, tuple)) else [masks_tgt]
        z = torch.cat(list(z), dim=0) if isinstance(z, (list, tuple)) else z
        B = z.size(0) // len(masks_ctx)
        pos = self.predictor_pos_embed
        x = self.predictor_embed(z) + torch.cat([gather_tokens(pos, m) for m in masks_ctx], dim=0)
        n_ctx = x.size(1)
        tgt = torch.cat([gather_tokens(pos, m) for m in masks_tgt], dim=0)  # [npred * B, K_tgt, Dp]
        tgt = repeat_interleave_batch(tgt, B, len(masks_ctx)) + self.mask_token
        x = torch.cat([x.repeat(len(masks_tgt), 1, 1), tgt], dim=1)
        for blk in self.predictor_blocks:
            x = blk(x)
        x = self.predictor_norm(x)
        return self.predictor_proj(x[:, n_ctx:])


def build_ijepa_models(cfg, attention: str | None = None) -> tuple[IJEPAEncoder, IJEPAPredictor]:
    """(encoder, predictor) of an I-JEPA config: the `meta.model_name` preset with the meta overrides, patch size
    `mask.patch_size` at `data.crop_size`, the predictor with the encoder's heads (official `init_model`, before
    its re-initialisation)."""
    m = cfg.meta
    backend = attention or m.attention
    arch = preset_arch(m.model_name, embed_dim=m.embed_dim, depth=m.depth, num_heads=m.num_heads,
                       patch_size=cfg.mask.patch_size)
    encoder = IJEPAEncoder(img_size=cfg.data.crop_size, num_frames=1, tubelet_size=1, attention=backend, **arch)
    predictor = IJEPAPredictor(encoder.num_patches, encoder.embed_dim, m.pred_emb_dim, m.pred_depth,
                               encoder.num_heads, attention=backend)
    every = checkpoint_every(cfg)
    encoder.set_activation_checkpointing(every)
    predictor.set_activation_checkpointing(every)
    return encoder, predictor
