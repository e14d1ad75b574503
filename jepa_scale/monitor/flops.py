"""Analytic FLOPs of a V-JEPA step, counted as FlopCounterMode counts them: matmuls, convolutions and attention,
a multiply-add as 2; backward = 2x forward for every layer whose input needs a gradient (the patch embedding's
input is the clip: its backward is the weight gradient only, 1x); activation recomputation adds a forward."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ViTShape:
    dim: int
    depth: int
    mlp_hidden: int


def block_forward(tokens: int, s: ViTShape, attention: bool = True) -> float:
    """One pre-norm block: qkv, proj, MLP (2 N d h), and (attention=True) the two attention products (4 N^2 d)."""
    n, d = tokens, s.dim
    linear = 2 * n * d * (3 * d) + 2 * n * d * d + 2 * (2 * n * d * s.mlp_hidden)
    return linear + (4 * n * n * d if attention else 0)


def blocks_forward(tokens: int, s: ViTShape, attention: bool = True) -> float:
    return s.depth * block_forward(tokens, s, attention)


def patch_embed_forward(tokens: int, dim: int, tubelet: int, patch: int, channels: int = 3) -> float:
    return 2 * tokens * dim * channels * tubelet * patch * patch


def vit_forward(tokens: int, s: ViTShape, tubelet: int, patch: int, attention: bool = True) -> float:
    """A full encoder forward on `tokens` patches (the target encoder's work per clip)."""
    return patch_embed_forward(tokens, s.dim, tubelet, patch) + blocks_forward(tokens, s, attention)


def vjepa_step(num_tokens: int, masks: list[tuple[int, int]], enc: ViTShape, pred: ViTShape, tubelet: int,
               patch: int, recompute_encoder: float = 0.0, recompute_predictor: float = 0.0,
               attention: bool = True) -> dict:
    """FLOPs per clip of one training step. masks: (context tokens, target tokens) per mask config.
    Our encoder embeds patches once per clip for all masks (the official wrapper embeds once per mask).
    recompute_*: the fraction of blocks whose forward is recomputed in backward (activation checkpointing).
    attention=False leaves out the attention products (what FlopCounterMode sees of CPU SDPA: nothing)."""
    target = vit_forward(num_tokens, enc, tubelet, patch, attention)
    embed = patch_embed_forward(num_tokens, enc.dim, tubelet, patch)
    context = predictor = 0.0
    for k_ctx, k_tgt in masks:
        context += blocks_forward(k_ctx, enc, attention) * (3 + recompute_encoder)
        p_blocks = blocks_forward(k_ctx + k_tgt, pred, attention)
        p_io = 2 * k_ctx * enc.dim * pred.dim + 2 * k_tgt * pred.dim * enc.dim  # predictor_embed, predictor_proj
        predictor += 3 * p_io + p_blocks * (3 + recompute_predictor)
    context += 2 * embed  # forward once, plus the weight gradient
    return {"target_forward": target, "context": context, "predictor": predictor,
            "total": target + context + predictor}


class StepFlops:
    """FLOPs of one training step on this device, from the models' shapes and the batch's mask shapes (host-side
    numbers: no device sync)."""

    def __init__(self, encoder, predictor):
        self.enc = ViTShape(encoder.embed_dim, len(encoder.blocks), encoder.blocks[0].mlp.fc1.out_features)
        self.pred = ViTShape(predictor.predictor_embed.out_features, len(predictor.predictor_blocks),
                             predictor.predictor_blocks[0].mlp.fc1.out_features)
        self.tokens, self.tubelet, self.patch = encoder.num_patches, encoder.tubelet_size, encoder.patch_size
        frac = lambda blocks: sum(b.checkpoint for b in blocks) / len(blocks)  # noqa: E731
        self.recompute = (frac(encoder.blocks), frac(predictor.predictor_blocks))

    def __call__(self, batch) -> float:
        masks = [(c.shape[1], t.shape[1]) for c, t in zip(batch.masks_ctx, batch.masks_tgt)]
        per_clip = vjepa_step(self.tokens, masks, self.enc, self.pred, self.tubelet, self.patch, *self.recompute)
        return per_clip["total"] * batch.clips.shape[0]
