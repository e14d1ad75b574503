"""The Video-Mamba-JEPA predictor (family.md 3.8): V1's predictor with its transformer blocks replaced by
bidirectional Mamba blocks, `model.pred_type: mamba`.

The fork's mixer is a bidirectional Mamba-2 from a submodule that cannot be recovered, so the blocks here are our
VideoMamba encoder's (bimamba v2, models/videomamba.py). Not reproduced from the fork: its unused PatchEmbed, the
non-fused final norm's reference to a missing `self.norm`, and `_rescale_blocks` on a missing `self.blocks` (never
called). The fork's predictor also never received a drop-path rate from its config, so timm's default 0.1 applied;
here it is `model.drop_path` (default 0), shared with a VideoMamba encoder."""
from __future__ import annotations

import torch.nn as nn

from jepa_scale.models.predictor import PredictorTokens
from jepa_scale.models.registry import checkpoint_every
from jepa_scale.models.videomamba import DropPath, MambaStack, init_videomamba_weights, mamba_blocks


class MambaPredictor(PredictorTokens, MambaStack, nn.Module):
    """Sequence [context (in the given order: the mask collator's ascending positions), then one mask token per
    target (ascending target index)], the fork's V1 order. It is not interleaved by position: a scan then sees
    all the context before any target, so the forward direction reaches every target with the whole context (the
    backward direction sees the targets first). The output is the target part, as V1's."""

    def __init__(self, img_size=224, patch_size=16, num_frames=16, tubelet_size=2, embed_dim=768,
                 predictor_embed_dim=384, depth=12, uniform_power=False, num_mask_tokens=2,
                 zero_init_mask_tokens=True, drop_path_rate=0.0, divide_out=False, dt_init="videomamba",
                 init_std=0.02):
        super().__init__()
        Dp = predictor_embed_dim
        # the fork's registration order, less its unused PatchEmbed
        self.init_tokens(img_size, patch_size, num_frames, tubelet_size, embed_dim, Dp, uniform_power, num_mask_tokens)
        self.drop_path = DropPath(drop_path_rate)
        self.predictor_blocks = mamba_blocks(Dp, depth, drop_path_rate, divide_out)
        self.predictor_norm = nn.RMSNorm(Dp, eps=1e-5)
        self.predictor_proj = nn.Linear(Dp, embed_dim)
        # the fork's order: Mamba's own init (in the mixers), every Linear trunc-normal 0.02 with zero bias, each
        # out_proj kaiming / sqrt(depth) with depth = the predictor's, then the mask tokens
        init_videomamba_weights(self, depth, dt_init)
        self.init_mask_tokens(zero_init_mask_tokens, init_std)

    def _units(self):
        return self.predictor_blocks

    def mix(self, x):
        return self.scan_blocks(x, self.predictor_norm)


def build_mamba_predictor(cfg, encoder) -> MambaPredictor:
    """The Mamba predictor for `encoder`'s width, with the VideoMamba options (model.drop_path, mamba_divide_out,
    mamba_dt_init) and one mask token per mask config."""
    m, d = cfg.model, cfg.data
    pred = MambaPredictor(img_size=d.crop_size, patch_size=d.patch_size, num_frames=d.num_frames,
                          tubelet_size=d.tubelet_size, embed_dim=encoder.embed_dim,
                          predictor_embed_dim=m.pred_embed_dim, depth=m.pred_depth, uniform_power=m.uniform_power,
                          num_mask_tokens=len(cfg.mask), zero_init_mask_tokens=m.zero_init_mask_tokens,
                          drop_path_rate=m.drop_path, divide_out=m.mamba_divide_out, dt_init=m.mamba_dt_init)
    pred.set_activation_checkpointing(checkpoint_every(cfg))
    return pred
