"""The V-JEPA 2 predictor: a narrow RoPE ViT over context tokens and mask tokens, run in grid-position order.

Differences from the V1 predictor (models/predictor.py) that the released weights depend on:
- no position table: positions enter only through 3-D RoPE in every block;
- context and target tokens are sorted by their flat grid index before the blocks (V1 kept context, then targets)
  and the targets are taken back out in the order they were asked for;
- the mask token is chosen by the frames-per-clip group, not by the mask config, so with one group every mask
  config uses token 0 and the other tokens only exist for checkpoint compatibility.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from jepa_scale.models.predictor import Predictor
from jepa_scale.models.registry import attention_backend, checkpoint_every
from jepa_scale.models.rope import grid_positions
from jepa_scale.models.tokens import gather_tokens
from jepa_scale.models.vit import Block, BlockStack, init_vit_weights, rescale_blocks, swiglu_option


def inverse_permutation(order: torch.Tensor) -> torch.Tensor:
    """order [B, N] (a permutation per row) -> inv with inv[b, order[b, i]] = i: one scatter instead of a sort."""
    steps = torch.arange(order.size(1), device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, steps)


def mask_token_list(count: int, width: int, zero_init: bool, std: float) -> nn.ParameterList:
    """`count` mask tokens [1, 1, width]: zeros (every official config) or truncated normal."""
    tokens = nn.ParameterList([nn.Parameter(torch.zeros(1, 1, width)) for _ in range(count)])
    if not zero_init:
        for t in tokens:
            nn.init.trunc_normal_(t, std=std)
    return tokens


class PredictorV2(BlockStack, nn.Module):
    def __init__(self, img_size=224, patch_size=16, num_frames=16, tubelet_size=2, embed_dim=1024,
                 predictor_embed_dim=384, depth=12, num_heads=12, mlp_ratio=4.0, num_mask_tokens=2,
                 zero_init_mask_tokens=True, attention="sdpa", rope_variant="official", init_std=0.02,
                 return_all_tokens=False, chop_last_n_tokens=0, swiglu: bool | None = None):
        super().__init__()
        if chop_last_n_tokens and not return_all_tokens:
            # the official un-sort indexes the chopped sequence with the full permutation and fails
            raise ValueError("chop_last_n_tokens needs return_all_tokens (the targets cannot be un-sorted)")
        Dp = self.width = predictor_embed_dim
        self.return_all_tokens, self.chop_last_n_tokens = return_all_tokens, chop_last_n_tokens
        grid = img_size // patch_size
        # the official predictor gets no input size: a square grid of the configured crop, whatever the input
        self.grid = (num_frames // tubelet_size if num_frames > 1 else 1, grid, grid)
        self.num_patches = self.grid[0] * grid * grid
        self.predictor_embed = nn.Linear(embed_dim, Dp)
        self.mask_tokens = mask_token_list(num_mask_tokens, Dp, zero_init_mask_tokens, init_std)
        self.predictor_blocks = nn.ModuleList([Block(Dp, num_heads, mlp_ratio, attention, rope=rope_variant,
                                                     swiglu=swiglu) for _ in range(depth)])
        self.predictor_norm = nn.LayerNorm(Dp, eps=1e-6)
        self.predictor_proj = nn.Linear(Dp, embed_dim)
        init_vit_weights(self, init_std)
        rescale_blocks(self.predictor_blocks)

    def _units(self):
        return self.predictor_blocks

    def freeze_mask_tokens_from(self, used: int):
        """Only tokens 0..used-1 (one per frames-per-clip group) ever predict; the rest exist for the checkpoint
        layout. Frozen, they stay in the state dict and the optimizer's groups, and every engine reduces only the
        gradients a step produces."""
        for token in self.mask_tokens[used:]:
            token.requires_grad_(False)

    io_flops = Predictor.io_flops  # the same two projections as V1's

    def forward(self, z, masks_ctx, masks_tgt, mask_index: int | Sequence[int] = 0, grid=None):
        """z [B, K_ctx, D] (the encoder's output at masks_ctx) -> predictions [B, K_tgt, D] at masks_tgt, in
        masks_tgt's order. Lists of z and masks (one per mask config) give a list of predictions in one call;
        mask_index is then one frames-per-clip group index for all configs, or one per config. grid: the
        (T', H', W') the indices refer to (None: the configured square grid, as the official model)."""
        if isinstance(z, (list, tuple)):
            indices = mask_index if isinstance(mask_index, Sequence) else [mask_index] * len(z)
            if len(indices) != len(z):
                raise ValueError(f"{len(indices)} mask indices for {len(z)} mask configs")
            return [self.predict_one(zi, mc, mt, i, grid) for zi, mc, mt, i in zip(z, masks_ctx, masks_tgt, indices)]
        return self.predict_one(z, masks_ctx, masks_tgt, mask_index, grid)

    def predict_one(self, z: torch.Tensor, masks_ctx: torch.Tensor, masks_tgt: torch.Tensor, mask_index: int,
                    grid=None):
        n_ctx = z.size(1)
        x = self.predictor_embed(z)
        # the token broadcast to the targets directly: never a full-length [B, N, Dp] tensor of mask tokens
        token = self.mask_tokens[mask_index % len(self.mask_tokens)]
        tgt = token.expand(x.size(0), masks_tgt.size(1), -1)
        # no cast: as the official cat, an fp32 token promotes the residual stream to fp32 under autocast
        x = torch.cat([x, tgt], dim=1)
        ids = torch.cat([masks_ctx, masks_tgt], dim=1)
        order = ids.argsort(dim=1)
        ids, x = ids.gather(1, order), gather_tokens(x, order)
        if self.chop_last_n_tokens:
            x, ids = x[:, :-self.chop_last_n_tokens], ids[:, :-self.chop_last_n_tokens]
        pos = grid_positions(ids, grid or self.grid)
        for blk in self.predictor_blocks:
            x = blk(x, pos)
        x = self.predictor_norm(x)
        if not self.return_all_tokens:
            # un-sorting everything and keeping the tail equals gathering just the targets' sorted slots
            x = gather_tokens(x, inverse_permutation(order)[:, n_ctx:])
        return self.predictor_proj(x)


def build_predictor_v2(cfg, encoder, num_mask_tokens: int | None = None) -> PredictorV2:
    """The V-JEPA 2 predictor the config describes, for `encoder`'s width. num_mask_tokens None: the official
    trainer's count, len(mask) x len(dataset_fpcs) (6 for the released train configs), which only the first
    frames-per-clip groups use; released checkpoints may need their own (10 in the hub files)."""
    m, d = cfg.model, cfg.data
    num_mask_tokens = num_mask_tokens or len(cfg.mask) * len(d.frames_per_dataset(max(1, len(d.datasets or d.shards))))
    pred = PredictorV2(img_size=d.crop_size, patch_size=d.patch_size, num_frames=d.num_frames,
                       tubelet_size=d.tubelet_size, embed_dim=encoder.embed_dim, predictor_embed_dim=m.pred_embed_dim,
                       depth=m.pred_depth, num_heads=m.pred_num_heads or encoder.num_heads,
                       num_mask_tokens=num_mask_tokens, swiglu=swiglu_option(m.use_pred_silu, m.wide_silu),
                       zero_init_mask_tokens=m.zero_init_mask_tokens, attention=attention_backend(cfg),
                       rope_variant=m.rope_variant)
    pred.set_activation_checkpointing(checkpoint_every(cfg))
    return pred
