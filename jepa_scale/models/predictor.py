"""The V-JEPA predictor: a narrow ViT over context tokens plus positioned mask tokens for the targets."""
from __future__ import annotations

import torch
import torch.nn as nn

from jepa_scale.models.pos_embed import sincos_2d, sincos_3d
from jepa_scale.models.tokens import gather_tokens
from jepa_scale.models.vit import Block, init_vit_weights, rescale_blocks


class Predictor(nn.Module):
    def __init__(self, img_size=224, patch_size=16, num_frames=16, tubelet_size=2, embed_dim=768,
                 predictor_embed_dim=384, depth=12, num_heads=12, mlp_ratio=4.0, uniform_power=False,
                 num_mask_tokens=2, zero_init_mask_tokens=True, attention="sdpa", init_std=0.02):
        super().__init__()
        Dp = predictor_embed_dim
        self.is_video = num_frames > 1
        grid, depth_t = img_size // patch_size, num_frames // tubelet_size
        self.num_patches = grid * grid * (depth_t if self.is_video else 1)
        self.predictor_embed = nn.Linear(embed_dim, Dp)
        self.mask_tokens = nn.ParameterList([nn.Parameter(torch.zeros(1, 1, Dp)) for _ in range(num_mask_tokens)])
        self.predictor_pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, Dp), requires_grad=False)
        self.predictor_blocks = nn.ModuleList([Block(Dp, num_heads, mlp_ratio, attention) for _ in range(depth)])
        self.predictor_norm = nn.LayerNorm(Dp, eps=1e-6)
        self.predictor_proj = nn.Linear(Dp, embed_dim)
        table = sincos_3d(Dp, grid, depth_t, uniform_power) if self.is_video else sincos_2d(Dp, grid)
        with torch.no_grad():
            self.predictor_pos_embed.copy_(table.unsqueeze(0))
        if not zero_init_mask_tokens:
            for t in self.mask_tokens:
                nn.init.trunc_normal_(t, std=init_std)
        init_vit_weights(self, init_std)
        rescale_blocks(self.predictor_blocks)

    def set_attention_backend(self, backend: str):
        for blk in self.predictor_blocks:
            blk.attn.backend = backend

    def forward(self, z, masks_ctx, masks_tgt, mask_index: int = 0):
        """z [B, K_ctx, D] (the encoder's output at masks_ctx) -> predictions [B, K_tgt, D] at masks_tgt.
        Lists of z and masks (one per mask config, mask_index = position) give a list of predictions in one call,
        which a data-parallel wrapper sees as one forward."""
        if isinstance(z, (list, tuple)):
            return [self.predict_one(zi, mc, mt, i) for i, (zi, mc, mt) in enumerate(zip(z, masks_ctx, masks_tgt))]
        return self.predict_one(z, masks_ctx, masks_tgt, mask_index)

    def predict_one(self, z: torch.Tensor, masks_ctx: torch.Tensor, masks_tgt: torch.Tensor, mask_index: int):
        n_ctx = z.size(1)
        x = self.predictor_embed(z) + gather_tokens(self.predictor_pos_embed, masks_ctx)  # [B, K_ctx, Dp]
        # gather positions, then add the token: never a full-length [B, N, Dp] tensor of mask tokens
        token = self.mask_tokens[mask_index % len(self.mask_tokens)]
        tgt = gather_tokens(self.predictor_pos_embed, masks_tgt) + token  # [B, K_tgt, Dp]
        x = torch.cat([x, tgt], dim=1)
        for blk in self.predictor_blocks:
            x = blk(x)
        x = self.predictor_norm(x)
        return self.predictor_proj(x[:, n_ctx:])
