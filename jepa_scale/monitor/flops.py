"""Analytic FLOPs of a JEPA step, counted as FlopCounterMode counts them: matmuls, convolutions and attention,
a multiply-add as 2; backward = 2x forward for every layer whose input needs a gradient (the patch embedding's
input is the clip: its backward is the weight gradient only, 1x); activation recomputation adds a forward.

The models say what one forward costs (the `Backbone` / `Stack` protocol); this module says how a JEPA step
combines them, so it serves every recipe with a context encoder, a predictor and an EMA target."""
from __future__ import annotations


def jepa_step(encoder, predictor, masks: list[tuple[int, int]], attention: bool = True) -> dict:
    """FLOPs per sample of one training step. masks: (context tokens, target tokens) per mask configuration.
    The encoder embeds patches once per sample for all masks (the official wrapper embeds once per mask).
    attention=False leaves out the attention products (what FlopCounterMode sees of CPU SDPA: nothing)."""
    embed = encoder.embed_flops()
    target = embed + encoder.units_flops(encoder.num_patches, attention)
    rc_enc, rc_pred = encoder.recompute_fraction(), predictor.recompute_fraction()
    context = 2 * embed  # forward once, plus the weight gradient
    pred = 0.0
    for k_ctx, k_tgt in masks:
        context += encoder.units_flops(k_ctx, attention) * (3 + rc_enc)
        pred += 3 * predictor.io_flops(k_ctx, k_tgt) + predictor.units_flops(k_ctx + k_tgt, attention) * (3 + rc_pred)
    return {"target_forward": target, "context": context, "predictor": pred, "total": target + context + pred}
