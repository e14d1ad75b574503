"""Memory planner: predicted per-GPU bytes of a V-JEPA run for each engine/stage and checkpointing choice.

    python -m jepa_scale.plan --config configs/pretrain/vith16_384.yaml --gpus 8 --gpu-mem-gb 80

Model states follow the ZeRO accounting for mixed-precision Adam (16 bytes/param: bf16 params and grads, fp32
master, m, v): DDP 16P; ZeRO-1 4P + 12P/N; ZeRO-2 and FSDP2 without resharding 2P + 14P/N; ZeRO-3 and FSDP2
full sharding 16P/N plus the largest block gathered. The EMA target adds fp32 params, sharded like the encoder.
Activations (bf16, flash/efficient attention so no N^2 workspace): ~34 bytes per token per channel per block of
the context encoder and predictor, for the mean token counts of the config's masks; full checkpointing keeps each
block's input (2 bytes per token per channel) plus one block's activations while it is recomputed.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import torch

from jepa_scale.config import ConfigError, load_config
from jepa_scale.masks import MultiBlockMasks
from jepa_scale.models import build_encoder, build_predictor

GIB = 2 ** 30
ACT_BYTES = 34  # per token per channel per block, bf16 (scale.md)


@dataclass(frozen=True)
class Plan:
    engine: str
    checkpointing: str
    params: float
    grads: float
    optimizer: float
    ema: float
    activations: float

    @property
    def total(self) -> float:
        return self.params + self.grads + self.optimizer + self.ema + self.activations


def model_sizes(cfg):
    with torch.device("meta"):
        enc = build_encoder(cfg)
        pred = build_predictor(cfg, enc)
    count = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)  # noqa: E731
    largest_block = max(sum(p.numel() for p in b.parameters()) for b in list(enc.blocks) + list(pred.predictor_blocks))
    return enc, pred, count(enc), count(pred), largest_block


def mean_tokens(cfg, batches: int = 20) -> list[tuple[float, float]]:
    d = cfg.data
    masks = MultiBlockMasks(cfg.mask, d.crop_size, d.num_frames, d.patch_size, d.tubelet_size)
    sums = [[0.0, 0.0] for _ in cfg.mask]
    for j in range(batches):
        ctx, tgt = masks(d.batch_size, j, j)
        for i, (c, t) in enumerate(zip(ctx, tgt)):
            sums[i][0] += c.shape[1] / batches
            sums[i][1] += t.shape[1] / batches
    return [tuple(s) for s in sums]


def activation_bytes(enc, pred, tokens, batch: int, checkpointing: bool) -> float:
    d_e, d_p = enc.embed_dim, pred.predictor_embed.out_features
    per_block = [(k_ctx, d_e, len(enc.blocks)) for k_ctx, _ in tokens] + \
                [(k_ctx + k_tgt, d_p, len(pred.predictor_blocks)) for k_ctx, k_tgt in tokens]
    if not checkpointing:
        return batch * sum(n * d * ACT_BYTES * depth for n, d, depth in per_block)
    kept = batch * sum(n * d * 2 * depth for n, d, depth in per_block)
    return kept + batch * max(n * d * ACT_BYTES for n, d, _ in per_block)  # one block being recomputed


def plan(cfg, gpus: int) -> list[Plan]:
    enc, pred, p_enc, p_pred, largest = model_sizes(cfg)
    P, N = p_enc + p_pred, gpus
    tokens = mean_tokens(cfg)
    # (name, params, grads, optimizer, EMA target fp32)
    states = [
        ("ddp", 2 * P, 2 * P, 12 * P, 4 * p_enc),
        ("zero1", 2 * P, 2 * P, 12 * P / N, 4 * p_enc),
        ("zero2 / fsdp no-reshard", 2 * P, 2 * P / N, 12 * P / N, 4 * p_enc),
        ("zero3 / fsdp full", 2 * P / N + 2 * 2 * largest, 2 * P / N + 2 * largest, 12 * P / N, 4 * p_enc / N),
    ]
    out = []
    for name, params, grads, opt, ema in states:
        for ckpt in (False, True):
            act = activation_bytes(enc, pred, tokens, cfg.data.batch_size, ckpt)
            out.append(Plan(name, "full" if ckpt else "none", params, grads, opt, ema, act))
    return out


def format_table(plans: list[Plan], gpu_mem_gb: float) -> str:
    head = f"{'engine':<24}{'ckpt':<6}{'params':>8}{'grads':>8}{'optim':>8}{'EMA':>8}{'activ':>9}{'total':>9}  fits"
    rows = [head, "-" * len(head)]
    for p in plans:
        fits = "yes" if p.total / GIB <= gpu_mem_gb else "no"
        rows.append(f"{p.engine:<24}{p.checkpointing:<6}" + "".join(
            f"{v / GIB:8.1f}" for v in (p.params, p.grads, p.optimizer, p.ema)) +
            f"{p.activations / GIB:9.1f}{p.total / GIB:9.1f}  {fits}")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jepa_scale.plan", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--gpus", type=int, default=8, help="data-parallel ranks the states are sharded over")
    ap.add_argument("--gpu-mem-gb", type=float, default=80.0)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args(argv)
    try:
        cfg = load_config(a.config, a.overrides)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    _, _, p_enc, p_pred, _ = model_sizes(cfg)
    d = cfg.data
    print(f"{a.config}: {cfg.model.model_name} ({p_enc / 1e6:.1f}M) + predictor ({p_pred / 1e6:.1f}M), "
          f"{d.num_frames}x{d.crop_size}px, {d.batch_size} clips per GPU, {a.gpus} GPUs of {a.gpu_mem_gb:g} GB; "
          f"GiB per GPU:")
    print(format_table(plan(cfg, a.gpus), a.gpu_mem_gb))
    return 0


if __name__ == "__main__":
    sys.exit(main())
