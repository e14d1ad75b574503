"""Analytic FLOPs of one training step vs torch's FlopCounterMode: V-JEPA tiny, ViT-L and ViT-H; V-JEPA 2 ViT-g at
16x256 and 64x384 (RoPE blocks); I-JEPA ViT-H/14 at 224; VideoMamba-JEPA tiny and VideoMamba-M at 16x224 (the
selective scan counted by the Mamba authors' rule, 9 per token, channel and state, as the counter cannot see it);
AV-JEPA tiny and ViT-B at 16x224 with its audio tokens (the audio patch embedding and the joint sequence).

Large models run on the meta device (shapes only, no memory, no time); attention uses the `math` backend so the
counter sees its matmuls. One batch of masks drawn by the official generator. Ends with one JSON line.

    python bench/flops.py
"""
import json
from pathlib import Path

import torch

from jepa_scale.config import load_config
from jepa_scale.models import Predictor, VisionTransformer, preset_arch
from jepa_scale.monitor.flops import counted_flops, jepa_step
from jepa_scale.recipes import RECIPES
from jepa_scale.recipes.example_batch import example_batch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [("tiny_cpu", "tiny_cpu.yaml", "cpu"), ("tiny_cpu_v2", "tiny_cpu_v2.yaml", "cpu"),
           ("vit_large_224", "vitl16.yaml", "meta"), ("vit_huge_224", "vith16.yaml", "meta"),
           ("vit_huge_384", "vith16_384.yaml", "meta"), ("v2_vit_giant_16x256", "vitg16_256_v2.yaml", "meta"),
           ("v2_vit_giant_64x384", "vitg16_384_64f_cooldown.yaml", "meta"),
           ("ijepa_vit_huge14_224", "ijepa_vith14_224.yaml", "meta"),
           ("tiny_cpu_videomamba", "tiny_cpu_videomamba.yaml", "cpu"),
           ("videomamba_middle_16x224", "videomamba_m16.yaml", "meta"),
           ("tiny_cpu_av", "tiny_cpu_av.yaml", "cpu"), ("av_vit_base_16x224", "av_vitb16.yaml", "meta")]


def measure(name, file, device, batch=1):
    """One batch of the recipe's own masks and loss, counted by FlopCounterMode, beside the recipe's analytic
    step_flops."""
    path = ROOT / "configs" / "pretrain" / file
    model_section = "meta" if load_config(path).recipe == "ijepa" else "model"  # I-JEPA keeps model keys in meta
    cfg = load_config(path, [f"{model_section}.attention=math"])
    recipe = RECIPES.get(cfg.recipe)(cfg)
    with torch.device(device):
        models = recipe.build_models().all()
    b = example_batch(cfg, recipe, batch, device)

    def step():
        loss, _ = recipe.loss(models, b)
        loss.backward()

    counted = counted_flops(step)  # the selective scans by their analytic rule (the counter sees their matmuls)
    m = next(iter(b.masks.values()))
    analytic = recipe.step_flops(models, b)
    return {"analytic": analytic, "counted": counted,
            "masks": [(c.shape[1], t.shape[1]) for c, t in zip(m.context, m.target)]}


def main():
    figures = {}
    print(f"{'config':<26}{'masks (ctx, tgt)':<30}{'analytic TFLOP':>16}{'counted TFLOP':>15}{'ratio':>8}")
    for name, file, device in CONFIGS:
        r = measure(name, file, device)
        ratio = r["analytic"] / r["counted"]
        print(f"{name:<26}{str(r['masks']):<30}{r['analytic'] / 1e12:16.4f}{r['counted'] / 1e12:15.4f}"
              f"{ratio:8.4f}")
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
