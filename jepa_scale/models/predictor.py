"""The V-JEPA predictor: a narrow ViT over context tokens plus positioned mask tokens for the targets."""
from __future__ import annotations

import torch
import torch.nn as nn

from jepa_scale.models.pos_embed import sincos_2d, sincos_3d
from jepa_scale.models.registry import attention_backend, checkpoint_every
from jepa_scale.models.tokens import gather_tokens
from jepa_scale.models.vit import Block, BlockStack, init_vit_weights, rescale_blocks


class PredictorTokens:
    """The token side of a V1 predictor, whatever mixes the tokens: the context embedded into the predictor's width
    plus its fixed sin-cos positions, followed by one learned mask token (per mask config) at each target position;
    the `mix`ed target part projected back to the encoder's width. `init_tokens` registers the modules it reads."""

    def init_tokens(self, img_size, patch_size, num_frames, tubelet_size, embed_dim, width, uniform_power,
                    num_mask_tokens):
        self.width = width
        self.is_video = num_frames > 1
        grid, depth_t = img_size // patch_size, num_frames // tubelet_size
        self.num_patches = grid * grid * (depth_t if self.is_video else 1)
        self.predictor_embed = nn.Linear(embed_dim, width)
        self.mask_tokens = nn.ParameterList([nn.Parameter(torch.zeros(1, 1, width)) for _ in range(num_mask_tokens)])
        self.predictor_pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, width), requires_grad=False)
        table = sincos_3d(width, grid, depth_t, uniform_power) if self.is_video else sincos_2d(width, grid)
        with torch.no_grad():
            self.predictor_pos_embed.copy_(table.unsqueeze(0))

    def init_mask_tokens(self, zero_init: bool, std: float):
        if not zero_init:
            for t in self.mask_tokens:
                nn.init.trunc_normal_(t, std=std)

    def io_flops(self, k_ctx: int, k_tgt: int) -> float:
        """Forward FLOPs of the projections into and out of the predictor's width."""
        inner, outer = self.predictor_embed, self.predictor_proj
        return 2 * (k_ctx * inner.in_features * inner.out_features + k_tgt * outer.in_features * outer.out_features)

    def forward(self, z, masks_ctx, masks_tgt, mask_index: int = 0):
        """z [B, K_ctx, D] (the encoder's output at masks_ctx) -> predictions [B, K_tgt, D] at masks_tgt.
        Lists of z and masks (one per mask config, mask_index = position) give a list of predictions in one call,
        which a data-parallel wrapper sees as one forward."""
        if isinstance(z, (list, tuple)):
            return [self.predict_one(zi, mc, mt, i) for i, (zi, mc, mt) in enumerate(zip(z, masks_ctx, masks_tgt))]
        return self.predict_one(z, masks_ctx, masks_tgt, mask_index)

    def predict_one(self, z: torch.Tensor, masks_ctx: torch.Tensor, masks_tgt: torch.Tensor, mask_index: int):
        x = self.predictor_embed(z) + gather_tokens(self.predictor_pos_embed, masks_ctx)  # [B, K_ctx, Dp]
        # gather positions, then add the token: never a full-length [B, N, Dp] tensor of mask tokens
        token = self.mask_tokens[mask_index % len(self.mask_tokens)]
        tgt = gather_tokens(self.predictor_pos_embed, masks_tgt) + token  # [B, K_tgt, Dp]
        x = self.mix(torch.cat([x, tgt], dim=1))
        return self.predictor_proj(x[:, z.size(1):])

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        """[B, K_ctx + K_tgt, Dp] -> the same, normed: the predictor's blocks."""
        raise NotImplementedError


class Predictor(PredictorTokens, BlockStack, nn.Module):
    def __init__(self, img_size=224, patch_size=16, num_frames=16, tubelet_size=2, embed_dim=768,
                 predictor_embed_dim=384, depth=12, num_heads=12, mlp_ratio=4.0, uniform_power=False,
                 num_mask_tokens=2, zero_init_mask_tokens=True, attention="sdpa", init_std=0.02):
        super().__init__()
        Dp = predictor_embed_dim
        # the official registration order (embed, mask tokens, table, blocks, norm, proj): state dicts and the
        # optimizer's parameter order follow it
        self.init_tokens(img_size, patch_size, num_frames, tubelet_size, embed_dim, Dp, uniform_power, num_mask_tokens)
        self.predictor_blocks = nn.ModuleList([Block(Dp, num_heads, mlp_ratio, attention) for _ in range(depth)])
        self.predictor_norm = nn.LayerNorm(Dp, eps=1e-6)
        self.predictor_proj = nn.Linear(Dp, embed_dim)
        self.init_mask_tokens(zero_init_mask_tokens, init_std)
        init_vit_weights(self, init_std)
        rescale_blocks(self.predictor_blocks)

    def _units(self):
        return self.predictor_blocks

    def mix(self, x):
        for blk in self.predictor_blocks:
            x = blk(x)
        return self.predictor_norm(x)


def build_predictor(cfg, encoder) -> nn.Module:
    """The V-JEPA predictor the config describes (`model.pred_type`), for `encoder`'s width (one mask token per mask
    config): the transformer, with the encoder's heads unless model.pred_num_heads is set, or the Mamba one."""
    m, d = cfg.model, cfg.data
    if m.pred_type == "mamba":
        from jepa_scale.models.predictor_mamba import build_mamba_predictor

        return build_mamba_predictor(cfg, encoder)
    pred = Predictor(img_size=d.crop_size, patch_size=d.patch_size, num_frames=d.num_frames,
                     tubelet_size=d.tubelet_size, embed_dim=encoder.embed_dim, predictor_embed_dim=m.pred_embed_dim,
                     depth=m.pred_depth, num_heads=m.pred_num_heads or encoder.num_heads,
                     uniform_power=m.uniform_power, num_mask_tokens=len(cfg.mask),
                     zero_init_mask_tokens=m.zero_init_mask_tokens, attention=attention_backend(cfg))
    pred.set_activation_checkpointing(checkpoint_every(cfg))
    return pred
