"""Analytic FLOPs of one V-JEPA training step vs torch's FlopCounterMode, for tiny, ViT-L and ViT-H configs.

Large models run on the meta device (shapes only, no memory, no time); attention uses the `math` backend so the
counter sees its matmuls. One batch of masks drawn by the official generator. Ends with one JSON line.

    python bench/flops.py
"""
import json
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from jepa_scale.config import load_config
from jepa_scale.models import Predictor, VisionTransformer, preset_arch
from jepa_scale.monitor.flops import jepa_step
from jepa_scale.recipes import RECIPES
from jepa_scale.recipes.objective import jepa_loss, predict, target_features

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [("tiny_cpu", "tiny_cpu.yaml", "cpu"), ("vit_large_224", "vitl16.yaml", "meta"),
           ("vit_huge_224", "vith16.yaml", "meta"), ("vit_huge_384", "vith16_384.yaml", "meta")]


def measure(name, file, device, batch=1):
    cfg = load_config(ROOT / "configs" / "pretrain" / file, ["model.attention=math"])
    d, recipe = cfg.data, RECIPES.get(cfg.app)(cfg)
    with torch.device(device):
        models = recipe.build_models().all()
    enc, pred, tgt = models["encoder"], models["predictor"], models["target_encoder"]
    ctx, tgt_idx = recipe.mask_fns()["video"](batch, 0, 0)
    x = torch.randn(batch, 3, d.num_frames, d.crop_size, d.crop_size, device=device)
    ctx, tgt_idx = [m.to(device) for m in ctx], [m.to(device) for m in tgt_idx]
    counter = FlopCounterMode(display=False)
    with counter:
        targets, _ = target_features(tgt, x, tgt_idx)
        jepa_loss(predict(enc, pred, x, ctx, tgt_idx), targets).backward()
    masks = [(c.shape[1], t.shape[1]) for c, t in zip(ctx, tgt_idx)]
    analytic = jepa_step(enc, pred, masks)
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
    # the reference's mean token budget per clip (its analysis computes ~20.2 TFLOP, ~46% in the target forward)
    with torch.device("meta"):
        h = VisionTransformer(img_size=384, num_frames=16, **preset_arch("vit_huge"))
        p = Predictor(img_size=384, num_frames=16, embed_dim=1280, predictor_embed_dim=384, depth=12, num_heads=16)
    ref = jepa_step(h, p, [(1282, 2293), (391, 3338)])
    print(f"ViT-H/16 at 16x384 with the reference mask budget: {ref['total'] / 1e12:.2f} TFLOP per clip, target "
          f"forward {100 * ref['target_forward'] / ref['total']:.0f}%")
    figures["vit_huge_384_reference_budget_tflop"] = round(ref["total"] / 1e12, 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
