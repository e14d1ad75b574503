"""CPU time of one training step of configs/pretrain/tiny_cpu.yaml, by phase, plus two same-run ratios:
patch embedding once per clip vs once per mask (the official encoder wrapper), and uint8 augmentation vs the
official float32-at-source-resolution path. With --engines, also the step time of whole runs per engine at world
size 1 and 2 (gloo, started with torchrun; the same global batch). Ends with one JSON line.

    python bench/step_time.py [--csv LIST.csv] [--steps 10] [--engines]
"""
import argparse
import csv as csv_module
import importlib.util
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from jepa_scale.config import load_config
from jepa_scale.data.augment import augment_clip
from jepa_scale.data.official_augment import official_augment
from jepa_scale.data.synthetic import make_moving_shapes
from jepa_scale.launch.local import run_local
from jepa_scale.optim import set_lr_wd
from jepa_scale.recipes.objective import jepa_loss, predict, target_features
from jepa_scale.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def step_phases(trainer, step):
    """The V-JEPA step of `Pretrain.train_step`, cut into timed phases."""
    e, cfg, models = trainer.engine, trainer.cfg, trainer.engine.models
    batch, t_data = timed(lambda: next(trainer.streams[0]))
    clips, masks = batch.inputs["video"], batch.masks["video"]
    lr, wd, m = trainer.task.schedules.at_iteration(step)
    set_lr_wd(e.optimizer, lr, wd)
    (targets, _), t_target = timed(lambda: target_features(models["target_encoder"], clips, masks.target))

    def forward_backward():
        preds = predict(models["encoder"], models["predictor"], clips, masks.context, masks.target)
        loss = jepa_loss(preds, targets, cfg.loss.loss_exp)
        e.backward(loss)
        return loss

    _, t_fb = timed(forward_backward)

    def optimizer_and_ema():
        e.optimizer.step()
        e.optimizer.zero_grad(set_to_none=True)
        e.ema_update(m)

    _, t_opt = timed(optimizer_and_ema)
    return {"data_s": t_data, "target_fwd_s": t_target, "ctx_pred_fwd_bwd_s": t_fb, "optimizer_ema_s": t_opt}


def embed_once_ratio(trainer, reps=5):
    enc = trainer.engine.models["encoder"]
    batch = next(trainer.streams[0])
    clips, ctx = batch.inputs["video"], batch.masks["video"].context
    with torch.no_grad():
        per_mask = min(timed(lambda: [enc(clips, masks=m) for m in ctx])[1] for _ in range(reps))
        once = min(timed(lambda: enc(clips, masks=ctx))[1] for _ in range(reps))
    return per_mask, once


def augment_ratio(reps=20):
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (16, 256, 340, 3), dtype=np.uint8))
    ours = min(timed(lambda: augment_clip(frames, 224, (0.3, 1.0), (0.75, 1.35), np.random.default_rng(1)))[1]
               for _ in range(reps))
    base = min(timed(lambda: official_augment(frames, 224, (0.3, 1.0), (0.75, 1.35), np.random.default_rng(1)))[1]
               for _ in range(reps))
    return base, ours


def engine_step_times(csv: str, tmp: Path, steps: int = 16) -> dict:
    """Median step time of short runs: single (world 1) and ddp/fsdp (world 2), global batch 8 in all."""
    runs = {"single_w1": (1, ["data.batch_size=8"]), "ddp_w2": (2, ["data.batch_size=4", "distributed.engine=ddp"]),
            "fsdp_w2": (2, ["data.batch_size=4", "distributed.engine=fsdp"])}
    if importlib.util.find_spec("deepspeed") is not None:
        for stage in (1, 2, 3):
            runs[f"zero{stage}_w2"] = (2, ["data.batch_size=4", "distributed.engine=deepspeed",
                                           f"distributed.zero_stage={stage}"])
    out = {}
    for name, (n, sets) in runs.items():
        folder = tmp / name
        sets = sets + [f"data.datasets=[{csv}]", f"logging.folder={folder}", f"optimization.max_steps={steps}",
                       "logging.log_freq=4", "logging.tensorboard=false", "data.num_workers=0"]
        args = [str(ROOT / "launch/pretrain.py"), "--config", str(ROOT / "configs/pretrain/tiny_cpu.yaml")]
        for s in sets:
            args += ["--set", s]
        r = run_local(args, n, threads=2 // n)
        if r.returncode:
            raise RuntimeError(f"{name} failed:\n{r.stderr[-3000:]}")
        rows = list(csv_module.DictReader(open(folder / "jepa_r0.csv")))[4:]  # past the first interval (warm-up)
        out[name] = statistics.median(float(r["step_time_s"]) for r in rows)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--csv", help="video list (default: synthetic videos made here)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--engines", action="store_true", help="also time whole runs per engine at world size 1 and 2")
    args = p.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        csv = args.csv or str(make_moving_shapes(Path(tmp) / "videos", num_videos=32, num_frames=48))
        cfg = load_config(ROOT / "configs/pretrain/tiny_cpu.yaml",
                          [f"data.datasets=[{csv}]", f"logging.folder={tmp}/run", "data.num_workers=0",
                           "logging.tensorboard=false"])
        trainer = Trainer(cfg)
        samples = []
        for s in range(args.warmup + args.steps):
            phases = step_phases(trainer, s)
            if s >= args.warmup:
                samples.append(phases)
        med = {k: statistics.median(x[k] for x in samples) for k in samples[0]}
        med["step_s"] = sum(med.values())
        per_mask, once = embed_once_ratio(trainer)
        trainer.streams[0].close()
        engines = engine_step_times(csv, Path(tmp)) if args.engines else {}
    aug_base, aug_ours = augment_ratio()
    print(f"tiny_cpu.yaml on CPU ({torch.get_num_threads()} threads), batch {cfg.data.batch_size}, "
          f"median of {args.steps} steps:")
    for k, v in med.items():
        print(f"  {k:<22} {v * 1000:8.1f} ms  ({100 * v / med['step_s']:4.1f}%)")
    print(f"context encoder, 2 masks: per-mask patch embedding {per_mask * 1000:.1f} ms, once {once * 1000:.1f} ms")
    print(f"augment 16x256x340 -> 224: float32 at source {aug_base * 1000:.1f} ms, uint8 {aug_ours * 1000:.1f} ms")
    for name, t in engines.items():
        print(f"  whole-run step, {name:<10} {t * 1000:8.1f} ms  ({t / engines['single_w1']:.2f}x single)")
    figures = {**{k: round(v, 5) for k, v in med.items()},
               **{f"{k}_step_s": round(v, 4) for k, v in engines.items()},
               **{f"{k}_vs_single_ratio": round(v / engines["single_w1"], 3) for k, v in engines.items()
                  if k != "single_w1"},
               "embed_once_vs_per_mask_ratio": round(per_mask / once, 3),
               "uint8_vs_float32_augment_ratio": round(aug_base / aug_ours, 3)}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
