"""Cost on long clips: VideoMamba-M (configs/pretrain/videomamba_m16.yaml) next to ViT-L (vitl16.yaml), both
V-JEPA at 224 px, at 16 and 64 frames (`data.num_frames`; the masks' settings stay as they are, so the masked
fraction is the same and every count of tokens grows 4x). Per model and length: parameters, the memory planner's
per-GPU GiB (activations and total; DDP without and with full activation checkpointing, the config's clips per GPU,
8 GPUs) and the analytic FLOPs of one training step per clip (`recipe.step_flops`: target forward, context encoder
and predictor forward and backward, mean over 4 batches of the config's masks); then VideoMamba/ViT-L ratios at
each length. Everything is analytic or on the meta device: seconds on a CPU. Ends with one JSON line.

What the numbers say: how compute and activation memory scale with the clip. Attention's FLOPs grow with the square
of the tokens, the scan's linearly; but both configs' predictors are transformers (`pred` is the predictor's share
of the step), so VideoMamba's step is not linear either. With flash attention both models' activations are linear
in the tokens, so their memory ratio hardly moves with length. The planner's Mamba model is that of mamba_ssm's CUDA kernel (which
recomputes the scan states in backward); our PyTorch scan, without mamba_ssm, keeps ~14x more (`_torch_scan`).
What they do not say: time. FLOPs are not seconds: the selective scan is memory-bound and runs far below a GPU's
matmul peak, and attention kernels differ in efficiency by length, so VideoMamba's FLOP advantage is an upper bound
on its speed-up. No GPU ran here; the planner's memory is a model (validated against saved tensors on CPU,
tests/test_plan.py), not a measurement on a GPU.

    python bench/long_clips.py [--gpus 8]
"""
import argparse
import json
from pathlib import Path

import torch

from jepa_scale.config import load_config
from jepa_scale.monitor.flops import jepa_step
from jepa_scale.plan import GIB, model_sizes, plan
from jepa_scale.recipes import RECIPES
from jepa_scale.recipes.example_batch import example_batch

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"vitl": "vitl16.yaml", "videomamba": "videomamba_m16.yaml"}  # key prefix -> config
FRAMES = (16, 64)


def step_tflop_per_clip(cfg, recipe, modules: dict, batches: int = 4) -> tuple[float, float]:
    """Mean analytic step FLOPs per clip over a few batches of the config's masks (meta inputs: shapes only), and
    the predictor's share of them (both configs' predictors are transformers: their attention is quadratic)."""
    n, total, pred = cfg.data.batch_size, 0.0, 0.0
    for j in range(batches):
        b = example_batch(cfg, recipe, n, "meta", counter=j)
        total += recipe.step_flops(modules, b) / n
        pred += jepa_step(modules["encoder"], modules["predictor"], recipe.mask_shapes(b.masks))["predictor"]
    return total / batches / 1e12, pred / total


def figures(config: str, frames: int, gpus: int) -> dict:
    cfg = load_config(ROOT / "configs/pretrain" / config, [f"data.num_frames={frames}"])
    recipe = RECIPES.get(cfg.recipe)(cfg)
    modules, sizes = model_sizes(recipe)
    rows = {p.checkpointing: p for p in plan(cfg, gpus) if p.engine == "ddp"}
    torch_scan = next(p for p in plan(cfg, gpus, scan="torch") if (p.engine, p.checkpointing) == ("ddp", "none"))
    tflop, predictor_share = step_tflop_per_clip(cfg, recipe, modules)
    return {"trained_mparams": sizes.trainable / 1e6, "step_tflop": tflop, "predictor_flops_share": predictor_share,
            "activ_gib": rows["none"].activations / GIB, "total_gib": rows["none"].total / GIB,
            "activ_full_gib": rows["full"].activations / GIB, "total_full_gib": rows["full"].total / GIB,
            "activ_gib_torch_scan": torch_scan.activations / GIB, "clips_per_gpu": cfg.data.batch_size,
            "tokens": modules["encoder"].num_patches}


def ratios(fig: dict) -> dict:
    """VideoMamba / ViT-L at each length, and each model's 64-frame / 16-frame growth."""
    out = {}
    for f in FRAMES:
        m, v = fig[f"videomamba_{f}f"], fig[f"vitl_{f}f"]
        out[f"videomamba_vs_vitl_{f}f_flops_ratio"] = m["step_tflop"] / v["step_tflop"]
        out[f"videomamba_vs_vitl_{f}f_activ_ratio"] = m["activ_gib"] / v["activ_gib"]
        out[f"videomamba_vs_vitl_{f}f_activ_full_ratio"] = m["activ_full_gib"] / v["activ_full_gib"]
    for key in MODELS:
        lo, hi = fig[f"{key}_{FRAMES[0]}f"], fig[f"{key}_{FRAMES[-1]}f"]
        out[f"{key}_{FRAMES[-1]}f_vs_{FRAMES[0]}f_flops_ratio"] = hi["step_tflop"] / lo["step_tflop"]
        out[f"{key}_{FRAMES[-1]}f_vs_{FRAMES[0]}f_activ_ratio"] = hi["activ_gib"] / lo["activ_gib"]
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpus", type=int, default=8)
    args = p.parse_args()
    fig = {f"{key}_{f}f": figures(file, f, args.gpus) for key, file in MODELS.items() for f in FRAMES}
    print(f"V-JEPA at 224 px, DDP on {args.gpus} GPUs, the configs' clips per GPU; GiB per GPU (planner, bf16, "
          f"mamba_ssm's scan), TFLOP per clip (analytic step)")
    print(f"{'model, frames':<18}{'tokens':>7}{'params':>8}{'clips':>6}{'TFLOP':>8}{'pred':>6}{'activ':>8}{'total':>8}"
          f"{'activ ckpt':>11}{'total ckpt':>11}{'activ torch scan':>17}")
    for name, r in fig.items():
        print(f"{name:<18}{r['tokens']:>7}{r['trained_mparams']:7.1f}M{r['clips_per_gpu']:>6}{r['step_tflop']:8.2f}"
              f"{100 * r['predictor_flops_share']:5.0f}%{r['activ_gib']:8.1f}{r['total_gib']:8.1f}{r['activ_full_gib']:11.2f}{r['total_full_gib']:11.2f}"
              f"{r['activ_gib_torch_scan']:17.1f}")
    rat = ratios(fig)
    for f in FRAMES:
        print(f"VideoMamba-M / ViT-L at {f} frames: FLOPs {rat[f'videomamba_vs_vitl_{f}f_flops_ratio']:.3f}, "
              f"activations {rat[f'videomamba_vs_vitl_{f}f_activ_ratio']:.3f} "
              f"(checkpointed {rat[f'videomamba_vs_vitl_{f}f_activ_full_ratio']:.3f})")
    for key in MODELS:
        print(f"{key} {FRAMES[-1]} vs {FRAMES[0]} frames: FLOPs {rat[f'{key}_64f_vs_16f_flops_ratio']:.2f}x, "
              f"activations {rat[f'{key}_64f_vs_16f_activ_ratio']:.2f}x")
    flat = {f"{name}_{k}": round(v, 4) if isinstance(v, float) else v for name, r in fig.items() for k, v in r.items()}
    print(json.dumps({**flat, **{k: round(v, 4) for k, v in rat.items()}}))


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
