"""AV-JEPA's joint encoder: a ViT whose blocks attend over video tubelet tokens and audio-spectrogram tokens in one
sequence [video tokens, audio tokens] (family.md 4.3), sizes from the config."""
from __future__ import annotations

import torch
import torch.nn as nn

from jepa_scale.models.pos_embed import sincos_2d
from jepa_scale.models.registry import attention_backend, checkpoint_every
from jepa_scale.models.tokens import gather_tokens
from jepa_scale.models.vit import (VisionTransformer, init_vit_weights, patch_conv_flops, preset_arch,
                                   swiglu_option)

MODALITIES = ("video", "audio")  # the order of their tokens in every sequence


class AudioPatchEmbed(nn.Module):
    """[B, 1, F, T] spectrogram -> [B, (F/p)*(T/p), D] tokens, frequency outermost (row-major, as upstream), plus a
    fixed 2-D sin-cos table over the (frequency, time) grid."""

    def __init__(self, n_mels: int, num_frames: int, patch_size: int, embed_dim: int):
        super().__init__()
        self.grid = (n_mels // patch_size, num_frames // patch_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, embed_dim), requires_grad=False)
        self.reset_pos_embed()

    def reset_pos_embed(self):
        with torch.no_grad():
            self.pos_embed.copy_(sincos_2d(self.pos_embed.shape[-1], *self.grid).unsqueeze(0))

    def flops(self) -> float:
        return patch_conv_flops(self.proj, self.num_patches)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2) + self.pos_embed


class AudioVisualViT(VisionTransformer):
    """`forward(inputs, masks)`: inputs {"video": [B, 3, T, H, W], "audio": [B, 1, F, T']}, either may be left out
    (a probe on one modality); a bare tensor is a video. masks None -> [B, N_v + N_a, D]; {modality: LongTensor
    [B, K]} -> [B, K_v + K_a, D]; {modality: list} -> a list, one per mask configuration, each modality embedded
    once. A modality's tokens may be none at all (its mask [B, 0]: a config that hides it)."""

    def __init__(self, *, n_mels: int, audio_frames: int, audio_patch_size: int, modality_embed: bool = False,
                 init_std: float = 0.02, **vit):
        super().__init__(init_std=init_std, **vit)
        D = self.embed_dim
        self.audio_embed = AudioPatchEmbed(n_mels, audio_frames, audio_patch_size, D)
        init_vit_weights(self.audio_embed, init_std)  # as the ViT's own convolution
        self.num_video_patches, self.num_audio_patches = self.num_patches, self.audio_embed.num_patches
        self.num_patches = self.num_video_patches + self.num_audio_patches  # the tokens of one sample
        # learned per-modality embeddings as CAV-MAE's modality_v / modality_a (upstream AV-JEPA has none)
        self.modality_embed = nn.ParameterDict({m: nn.Parameter(torch.zeros(1, 1, D)) for m in MODALITIES}) \
            if modality_embed else None
        if modality_embed:
            for p in self.modality_embed.values():
                nn.init.trunc_normal_(p, std=0.02)

    def embed_flops(self) -> float:
        """Both patch embeddings of one sample."""
        return patch_conv_flops(self.patch_embed.proj, self.num_video_patches) + self.audio_embed.flops()

    def embed_modalities(self, inputs: dict) -> dict:
        tokens = {}
        for m in MODALITIES:
            if m in inputs:
                t = self.embed(inputs[m]) if m == "video" else self.audio_embed(inputs[m])
                tokens[m] = t + self.modality_embed[m] if self.modality_embed is not None else t
        return tokens

    def forward(self, inputs, masks: dict | None = None):
        tokens = self.embed_modalities(inputs if isinstance(inputs, dict) else {"video": inputs})
        if masks is None:
            return self.encode_tokens(torch.cat(list(tokens.values()), dim=1))
        many = isinstance(next(iter(masks.values())), (list, tuple))
        per_config = zip(*(masks[m] for m in tokens)) if many else [tuple(masks[m] for m in tokens)]
        out = [self.encode_tokens(torch.cat([gather_tokens(tokens[m], ids) for m, ids in zip(tokens, idx)], dim=1))
               for idx in per_config]
        return out if many else out[0]


def build_audiovisual_vit(cfg) -> AudioVisualViT:
    """The joint encoder the config describes: a V1 ViT preset (model.model_name with the model overrides) and the
    audio section's spectrogram and patch sizes."""
    m, d, a = cfg.model, cfg.data, cfg.audio
    arch = preset_arch(m.model_name, embed_dim=m.embed_dim, depth=m.depth, num_heads=m.num_heads,
                       mlp_ratio=m.mlp_ratio, patch_size=d.patch_size)
    enc = AudioVisualViT(n_mels=a.n_mels, audio_frames=a.num_frames, audio_patch_size=a.patch_size,
                         modality_embed=m.modality_embed, img_size=d.crop_size, num_frames=d.num_frames,
                         tubelet_size=d.tubelet_size, uniform_power=m.uniform_power, attention=attention_backend(cfg),
                         swiglu=swiglu_option(m.use_silu, m.wide_silu), **arch)
    enc.set_activation_checkpointing(checkpoint_every(cfg))
    return enc
