"""An independent, literal transcription of the official V-JEPA 2 `VisionTransformerPredictor` on its RoPE path:
constructor signature, attribute names and forward as the official module (full-length mask tokens gathered
afterwards, per-row sorting with Python loops, un-sorting with the argsort of the argsort). The RoPE `Block` is the
transcription in tests/reference_vjepa2.py. Its state dicts are what official V2 checkpoints hold under
`predictor`. Used only by tests, as the yardstick for our predictor.
"""
from functools import partial

import torch
import torch.nn as nn

from tests.reference_vjepa import apply_masks
from tests.reference_vjepa2 import Block


class VisionTransformerPredictor(nn.Module):
    def __init__(self, img_size=(224, 224), patch_size=16, num_frames=1, tubelet_size=2, embed_dim=768,
                 predictor_embed_dim=384, depth=6, num_heads=12, mlp_ratio=4.0, qkv_bias=True, qk_scale=None,
                 drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0, norm_layer=partial(nn.LayerNorm, eps=1e-6),
                 init_std=0.02, uniform_power=False, use_mask_tokens=False, num_mask_tokens=2,
                 zero_init_mask_tokens=True, use_silu=False, wide_silu=True, use_activation_checkpointing=False,
                 return_all_tokens=False, chop_last_n_tokens=0, use_rope=False, **kwargs):
        super().__init__()
        assert use_rope and not use_silu and drop_path_rate == 0.0, "transcribed: the V-JEPA 2 RoPE predictor"
        self.return_all_tokens = return_all_tokens
        self.chop_last_n_tokens = chop_last_n_tokens
        self.predictor_embed = nn.Linear(embed_dim, predictor_embed_dim, bias=True)
        self.mask_tokens = None
        self.num_mask_tokens = 0
        if use_mask_tokens:
            self.num_mask_tokens = num_mask_tokens
            self.mask_tokens = nn.ParameterList(
                [nn.Parameter(torch.zeros(1, 1, predictor_embed_dim)) for i in range(num_mask_tokens)])
        if type(img_size) is int:
            img_size = (img_size, img_size)
        self.img_height, self.img_width = img_size
        self.patch_size = patch_size
        self.num_frames = num_frames
        self.tubelet_size = tubelet_size
        self.is_video = num_frames > 1
        self.grid_height = img_size[0] // self.patch_size
        self.grid_width = img_size[1] // self.patch_size
        self.grid_depth = num_frames // self.tubelet_size
        self.use_activation_checkpointing = use_activation_checkpointing
        if self.is_video:
            self.num_patches = (num_frames // tubelet_size) * (img_size[0] // patch_size) * (img_size[1] // patch_size)
        else:
            self.num_patches = (img_size[0] // patch_size) * (img_size[1] // patch_size)
        self.uniform_power = uniform_power
        self.predictor_pos_embed = None  # not use_rope would add the sin-cos table
        self.use_rope = use_rope
        self.predictor_blocks = nn.ModuleList([
            Block(use_rope=use_rope, grid_size=self.grid_height, grid_depth=self.grid_depth,
                  dim=predictor_embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                  qk_scale=qk_scale, drop=drop_rate, act_layer=nn.GELU, wide_silu=wide_silu,
                  attn_drop=attn_drop_rate, drop_path=0.0, norm_layer=norm_layer)
            for i in range(depth)])
        self.predictor_norm = norm_layer(predictor_embed_dim)
        self.predictor_proj = nn.Linear(predictor_embed_dim, embed_dim, bias=True)
        self.init_std = init_std
        if not zero_init_mask_tokens:
            for mt in self.mask_tokens:
                nn.init.trunc_normal_(mt, std=init_std)

    def forward(self, x, masks_x, masks_y, mask_index=1, has_cls=False):
        assert (masks_x is not None) and (masks_y is not None), "Cannot run predictor without mask indices"
        if not isinstance(masks_x, list):
            masks_x = [masks_x]
        if not isinstance(masks_y, list):
            masks_y = [masks_y]
        B = len(x) // len(masks_x)

        x = self.predictor_embed(x)
        if has_cls:
            x_cls = x[:, :1, :]
            x = x[:, 1:, :]
        _, N_ctxt, D = x.shape

        mask_index = mask_index % self.num_mask_tokens
        pred_tokens = self.mask_tokens[mask_index]
        pred_tokens = pred_tokens.repeat(B, self.num_patches, 1)
        pred_tokens = apply_masks(pred_tokens, masks_y)

        x = x.repeat(len(masks_x), 1, 1)
        x = torch.cat([x, pred_tokens], dim=1)

        masks_x = torch.cat(masks_x, dim=0)
        masks_y = torch.cat(masks_y, dim=0)
        masks = torch.cat([masks_x, masks_y], dim=1)

        argsort = torch.argsort(masks, dim=1)
        masks = torch.stack([masks[i, row] for i, row in enumerate(argsort)], dim=0)
        x = torch.stack([x[i, row, :] for i, row in enumerate(argsort)], dim=0)

        if self.chop_last_n_tokens > 0:
            x = x[:, : -self.chop_last_n_tokens]
            masks = masks[:, : -self.chop_last_n_tokens]

        if has_cls:
            x = torch.cat([x_cls, x], dim=1)

        for i, blk in enumerate(self.predictor_blocks):
            if self.use_activation_checkpointing:
                x = torch.utils.checkpoint.checkpoint(blk, x, masks, None, use_reentrant=False)
            else:
                x = blk(x, mask=masks, attn_mask=None)
        x = self.predictor_norm(x)

        if has_cls:
            x = x[:, 1:, :]

        if not self.return_all_tokens:
            reverse_argsort = torch.argsort(argsort, dim=1)
            x = torch.stack([x[i, row, :] for i, row in enumerate(reverse_argsort)], dim=0)
            x = x[:, N_ctxt:]

        x = self.predictor_proj(x)
        return x
