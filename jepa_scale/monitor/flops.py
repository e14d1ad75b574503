"""Analytic FLOPs of a JEPA step, counted as FlopCounterMode counts them: matmuls, convolutions and attention,
a multiply-add as 2; backward = 2x forward for every layer whose input needs a gradient (the patch embedding's
input is the clip: its backward is the weight gradient only, 1x); activation recomputation adds a forward.

The models say what one forward costs (the `Backbone` / `Stack` protocol); this module says how a JEPA step
combines them, so it serves every recipe with a context encoder, a predictor and an EMA target."""
from __future__ import annotations

import collections

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count


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


def counted_flops(fn) -> float:
    """FlopCounterMode's count of fn() (forward and any backward it runs), with each selective scan counted by its
    analytic rule (`selective_scan_flops`, 3x when differentiated) in place of the matmuls the counter saw of it
    (our PyTorch scan is mostly elementwise work the counter cannot see), and grouped convolutions' backward counted
    with their groups. A measuring tool for tests and benches."""
    from jepa_scale.models import selective_scan as ss

    ss._calls, counter = [], FlopCounterMode(display=False, custom_mapping=CONV_BACKWARD)
    try:
        with counter:
            fn()
        calls = ss._calls
    finally:
        ss._calls = None
    # a model repeats a few scan shapes (every block, both directions): each is measured once
    return counter.get_total_flops() + sum(n * _scan_correction(*c) for c, n in collections.Counter(calls).items())


def _conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """The input and weight gradients of a convolution cost one forward each. torch's own formula leaves groups
    out (its docstring says so) and counts a depthwise convolution's backward `groups` times too high."""
    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


CONV_BACKWARD = {torch.ops.aten.convolution_backward: _conv_backward_flop}


def _scan_correction(batch, E, N, L, with_z, with_D, grad) -> float:
    """Analytic minus counted FLOPs of one scan of this shape (the counted part measured on a scan of zeros)."""
    from jepa_scale.models.selective_scan import selective_scan, selective_scan_flops

    u, delta, z = (torch.zeros(batch, E, L, requires_grad=grad) for _ in range(3))
    A, B, C = (torch.zeros(*shape, requires_grad=grad) for shape in ((E, N), (batch, N, L), (batch, N, L)))
    D = torch.zeros(E, requires_grad=grad) if with_D else None
    counter = FlopCounterMode(display=False)
    with counter, torch.set_grad_enabled(grad):
        out = selective_scan(u, delta, A, B, C, D, z if with_z else None, backend="torch")
        if grad:
            out.sum().backward()
    return (3 if grad else 1) * selective_scan_flops(batch, E, N, L, with_z, with_D) - counter.get_total_flops()
