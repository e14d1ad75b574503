"""AV-JEPA's predictor (family.md 4.5): V1's predictor blocks, norm and output projection shared by both modalities;
per modality its own input projection, mask tokens (one per mask configuration) and fixed position table (3-D for
video, 2-D frequency x time for audio). Sequence [video context, video targets, audio context, audio targets], one
joint attention over it (no position sorting, no RoPE), output [video targets, audio targets]."""
from __future__ import annotations

import torch
import torch.nn as nn

from jepa_scale.models.pos_embed import sincos_2d
from jepa_scale.models.predictor import Predictor
from jepa_scale.models.registry import attention_backend, checkpoint_every
from jepa_scale.models.tokens import gather_tokens
from jepa_scale.models.vit import init_vit_weights


class AudioVisualPredictor(Predictor):
    """`Predictor`'s video parts keep their names (predictor_embed, mask_tokens, predictor_pos_embed); the audio
    parts add `_audio` to them."""

    def __init__(self, audio_grid: tuple[int, int], zero_init_mask_tokens: bool = True, init_std: float = 0.02,
                 **kw):
        super().__init__(zero_init_mask_tokens=zero_init_mask_tokens, init_std=init_std, **kw)
        Dp, D = self.width, self.predictor_embed.in_features
        self.num_video_patches = self.num_patches
        self.predictor_embed_audio = nn.Linear(D, Dp)
        init_vit_weights(self.predictor_embed_audio, init_std)
        self.mask_tokens_audio = nn.ParameterList([nn.Parameter(torch.zeros(1, 1, Dp)) for _ in self.mask_tokens])
        if not zero_init_mask_tokens:
            for t in self.mask_tokens_audio:
                nn.init.trunc_normal_(t, std=init_std)
        self.predictor_pos_embed_audio = nn.Parameter(sincos_2d(Dp, *audio_grid).unsqueeze(0), requires_grad=False)

    def forward(self, z, masks_ctx, masks_tgt, mask_index: int = 0):
        """z [B, K_v + K_a, D] (the encoder's output at the context) with masks_ctx and masks_tgt as (video, audio)
        pairs of [B, K] -> predictions [B, K_v_tgt + K_a_tgt, D]; lists (one per mask configuration) give a list."""
        if isinstance(z, (list, tuple)):
            return [self.predict_pair(zi, mc, mt, i) for i, (zi, mc, mt) in enumerate(zip(z, masks_ctx, masks_tgt))]
        return self.predict_pair(z, masks_ctx, masks_tgt, mask_index)

    def predict_pair(self, z, masks_ctx, masks_tgt, mask_index: int):
        (ctx_v, ctx_a), (tgt_v, tgt_a) = masks_ctx, masks_tgt
        k_v = ctx_v.size(1)
        parts = [
            self.predictor_embed(z[:, :k_v]) + gather_tokens(self.predictor_pos_embed, ctx_v),
            gather_tokens(self.predictor_pos_embed, tgt_v) + self.mask_tokens[mask_index],
            self.predictor_embed_audio(z[:, k_v:]) + gather_tokens(self.predictor_pos_embed_audio, ctx_a),
            gather_tokens(self.predictor_pos_embed_audio, tgt_a) + self.mask_tokens_audio[mask_index],
        ]
        x = torch.cat(parts, dim=1)
        for blk in self.predictor_blocks:
            x = blk(x)
        x = self.predictor_norm(x)
        n = [p.size(1) for p in parts]
        targets = torch.cat([x[:, n[0]:n[0] + n[1]], x[:, n[0] + n[1] + n[2]:]], dim=1)
        return self.predictor_proj(targets)


def build_av_predictor(cfg, encoder) -> AudioVisualPredictor:
    m, d = cfg.model, cfg.data
    pred = AudioVisualPredictor(cfg.audio_grid, img_size=d.crop_size, patch_size=d.patch_size,
                                num_frames=d.num_frames, tubelet_size=d.tubelet_size, embed_dim=encoder.embed_dim,
                                predictor_embed_dim=m.pred_embed_dim, depth=m.pred_depth,
                                num_heads=m.pred_num_heads or encoder.num_heads, uniform_power=m.uniform_power,
                                num_mask_tokens=len(cfg.mask), zero_init_mask_tokens=m.zero_init_mask_tokens,
                                attention=attention_backend(cfg))
    pred.set_activation_checkpointing(checkpoint_every(cfg))
    return pred
