"""Build the encoder and predictor that a config describes."""
from __future__ import annotations

from jepa_scale.models.predictor import Predictor
from jepa_scale.models.vit import VisionTransformer, preset_arch, set_activation_checkpointing


def attention_backend(cfg) -> str:
    # the official `use_sdpa: false` meant the plain formula
    return cfg.model.attention if cfg.meta.use_sdpa else "math"


def checkpoint_every(cfg) -> int:
    """Every how many blocks activations are recomputed (0: never)."""
    mode = cfg.distributed.activation_checkpointing
    if mode == "full" or cfg.model.use_activation_checkpointing:
        return 1
    return cfg.distributed.checkpoint_every if mode == "every_k" else 0


def build_encoder(cfg) -> VisionTransformer:
    m, d = cfg.model, cfg.data
    arch = preset_arch(m.model_name, embed_dim=m.embed_dim, depth=m.depth, num_heads=m.num_heads,
                       mlp_ratio=m.mlp_ratio, patch_size=d.patch_size)
    enc = VisionTransformer(img_size=d.crop_size, num_frames=d.num_frames, tubelet_size=d.tubelet_size,
                            uniform_power=m.uniform_power, attention=attention_backend(cfg), **arch)
    set_activation_checkpointing(enc.blocks, checkpoint_every(cfg))
    return enc


def build_predictor(cfg, encoder: VisionTransformer) -> Predictor:
    m, d = cfg.model, cfg.data
    pred = Predictor(img_size=d.crop_size, patch_size=d.patch_size, num_frames=d.num_frames,
                     tubelet_size=d.tubelet_size, embed_dim=encoder.embed_dim, predictor_embed_dim=m.pred_embed_dim,
                     depth=m.pred_depth, num_heads=m.pred_num_heads or encoder.num_heads,
                     uniform_power=m.uniform_power, num_mask_tokens=len(cfg.mask),
                     zero_init_mask_tokens=m.zero_init_mask_tokens, attention=attention_backend(cfg))
    set_activation_checkpointing(pred.predictor_blocks, checkpoint_every(cfg))
    return pred
