"""Analytic FLOPs of a JEPA step, counted as FlopCounterMode counts them: matmuls, convolutions and attention,
a multiply-add as 2; backward = 2x forward for every layer whose input needs a gradient (the patch embedding's
input is the clip: its backward is the weight gradient only, 1x); activation recomputation adds a forward.

The models say what one forward costs (the `Backbone` / `Stack` protocol); this module says how a JEPA step
combines them, so it serves every recipe with a context encoder, a predictor and an EMA target."""
from __future__ import annotations


def jepa_step(encoder, predictor, masks: list[tuple[int, int]], attention: bool = True, tokens: int | None = None
              ) -> dict:
    """FLOPs per sample of one training step. masks: (context tokens, target tokens) per mask configuration.
    The encoder embeds patches once per sample for all masks (the official wrapper embeds once per mask).
    attention=False leaves out the attention products (what FlopCounterMode sees of CPU SDPA: nothing).
    tokens: the input's token count when it is not the encoder's configured one (V2's shorter clips)."""
    tokens = tokens or encoder.num_patches
    embed = encoder.embed_flops() * tokens / encoder.num_patches
    target = embed + encoder.units_flops(tokens, attention)
    context = 2 * embed  # forward once, plus the weight gradient
    pred = 0.0
    for k_ctx, k_tgt in masks:
        context += 3 * encoder.units_flops(k_ctx, attention) + encoder.recompute_flops(k_ctx, attention)
        n = k_ctx + k_tgt
        pred += 3 * (predictor.io_flops(k_ctx, k_tgt) + predictor.units_flops(n, attention))
        pred += predictor.recompute_flops(n, attention)
    return {"target_forward": target, "context": context, "predictor": pred, "total": target + context + pred}
