"""Activation memory of one V-JEPA forward (context encoder + predictor, the part that keeps tensors for
backward), with activation checkpointing off vs on, per sample. Ends with one JSON line.

Counted with torch.autograd.graph.saved_tensors_hooks on the meta device (shapes only): every tensor saved for
backward, parameters excluded, plus the block inputs that checkpointing keeps instead.

    python bench/memory.py [--config configs/pretrain/vitl16.yaml]
"""
import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from jepa_scale.config import load_config  # noqa: E402
from jepa_scale.masks import MultiBlockMasks  # noqa: E402
from jepa_scale.models import build_encoder, build_predictor  # noqa: E402
from jepa_scale.train.objective import predict  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def saved_bytes_per_sample(config: Path, checkpointing: bool, batch: int = 1) -> int:
    cfg = load_config(config, [f"model.use_activation_checkpointing={str(checkpointing).lower()}"])
    d = cfg.data
    with torch.device("meta"):
        enc = build_encoder(cfg)
        pred = build_predictor(cfg, enc)
        x = torch.randn(batch, 3, d.num_frames, d.crop_size, d.crop_size)
    ctx, tgt = MultiBlockMasks(cfg.mask, d.crop_size, d.num_frames, d.patch_size, d.tubelet_size)(batch, 0, 0)
    ctx, tgt = [m.to("meta") for m in ctx], [m.to("meta") for m in tgt]
    params = {id(p) for m in (enc, pred) for p in m.parameters()}
    seen, total = set(), [0]

    def pack(t):
        if id(t) not in params and id(t) not in seen:
            seen.add(id(t))
            total[0] += t.numel() * t.element_size()
        return t

    def keep_input(block, args):  # what a checkpointed block holds on to: its input
        if block.checkpoint:
            total[0] += args[0].numel() * args[0].element_size()

    hooks = [b.register_forward_pre_hook(keep_input) for b in list(enc.blocks) + list(pred.predictor_blocks)]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        predict(enc, pred, x, ctx, tgt)
    for h in hooks:
        h.remove()
    return total[0] // batch


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs/pretrain/vitl16.yaml"))
    args = p.parse_args()
    none = saved_bytes_per_sample(Path(args.config), False)
    full = saved_bytes_per_sample(Path(args.config), True)
    name = Path(args.config).stem
    print(f"{name}: bytes saved for backward per sample (float32), context encoder + predictor")
    print(f"  checkpointing none: {none / 2**20:10.1f} MiB")
    print(f"  checkpointing full: {full / 2**20:10.1f} MiB  ({100 * full / none:.1f}% of none; goal <= 20%)")
    print(json.dumps({f"{name}_saved_mib_none": round(none / 2**20, 2), f"{name}_saved_mib_full": round(full / 2**20, 2),
                      "checkpoint_full_vs_none_ratio": round(full / none, 4)}))


if __name__ == "__main__":
    main()
