"""Analytic FLOPs of one V-JEPA training step vs torch's FlopCounterMode, for tiny, ViT-L and ViT-H configs.

Large models run on the meta device (shapes only, no memory, no time); attention uses the `math` backend so the
counter sees its matmuls. One batch of masks drawn by the official generator. Ends with one JSON line.

    python bench/flops.py
"""
import json
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from jepa_scale.config import load_config  # noqa: E402
from jepa_scale.masks import MultiBlockMasks  # noqa: E402
from jepa_scale.models import build_encoder, build_predictor  # noqa: E402
from jepa_scale.monitor.flops import ViTShape, vjepa_step  # noqa: E402
from jepa_scale.train.objective import jepa_loss, predict, target_features  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [("tiny_cpu", "tiny_cpu.yaml", "cpu"), ("vit_large_224", "vitl16.yaml", "meta"),
           ("vit_huge_224", "vith16.yaml", "meta"), ("vit_huge_384", "vith16_384.yaml", "meta")]


def measure(name, file, device, batch=1):
    cfg = load_config(ROOT / "configs" / "pretrain" / file, ["model.attention=math"])
    d = cfg.data
    with torch.device(device):
        enc = build_encoder(cfg)
        pred = build_predictor(cfg, enc)
        tgt = build_encoder(cfg)
    ctx, tgt_idx = MultiBlockMasks(cfg.mask, d.crop_size, d.num_frames, d.patch_size, d.tubelet_size)(batch, 0, 0)
    x = torch.randn(batch, 3, d.num_frames, d.crop_size, d.crop_size, device=device)
    ctx, tgt_idx = [m.to(device) for m in ctx], [m.to(device) for m in tgt_idx]
    counter = FlopCounterMode(display=False)
    with counter:
        targets, _ = target_features(tgt, x, tgt_idx)
        jepa_loss(predict(enc, pred, x, ctx, tgt_idx), targets).backward()
    e = ViTShape(enc.embed_dim, len(enc.blocks), enc.blocks[0].mlp.fc1.out_features)
    p = ViTShape(pred.predictor_embed.out_features, len(pred.predictor_blocks),
                 pred.predictor_blocks[0].mlp.fc1.out_features)
    masks = [(c.shape[1], t.shape[1]) for c, t in zip(ctx, tgt_idx)]
    analytic = vjepa_step(enc.num_patches, masks, e, p, d.tubelet_size, d.patch_size)
    return {"analytic": analytic["total"] * batch, "counted": counter.get_total_flops(), "masks": masks,
            "target_share": analytic["target_forward"] / analytic["total"]}


def main():
    figures = {}
    print(f"{'config':<16}{'masks (ctx, tgt)':<28}{'analytic TFLOP':>16}{'counted TFLOP':>15}{'ratio':>8}"
          f"{'target fwd':>12}")
    for name, file, device in CONFIGS:
        r = measure(name, file, device)
        ratio = r["analytic"] / r["counted"]
        print(f"{name:<16}{str(r['masks']):<28}{r['analytic'] / 1e12:16.4f}{r['counted'] / 1e12:15.4f}"
              f"{ratio:8.4f}{100 * r['target_share']:11.1f}%")
        figures[f"{name}_analytic_tflop"] = round(r["analytic"] / 1e12, 5)
        figures[f"{name}_analytic_vs_counted_ratio"] = round(ratio, 5)
    # the reference's mean token budget per clip (vjepa.md section 3; scale.md computes ~20.2 TFLOP, ~46% target)
    h = ViTShape(1280, 32, 5120)
    ref = vjepa_step(4608, [(1282, 2293), (391, 3338)], h, ViTShape(384, 12, 1536), 2, 16)
    print(f"ViT-H/16 at 16x384 with the reference mask budget: {ref['total'] / 1e12:.2f} TFLOP per clip, target "
          f"forward {100 * ref['target_forward'] / ref['total']:.0f}%")
    figures["vit_huge_384_reference_budget_tflop"] = round(ref["total"] / 1e12, 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
