"""CPU time of one training step of a pretraining config, by phase (by default configs/pretrain/tiny_cpu.yaml
configs/pretrain/tiny_cpu_videomamba.yaml and configs/pretrain/tiny_cpu_av.yaml, whose figures carry the prefixes
`videomamba_` and `av_`), plus same-run ratios: VideoMamba's and AV-JEPA's steps vs the ViT's, patch embedding once per clip vs once per mask (the official encoder
wrapper), and uint8 augmentation vs the official float32-at-source-resolution path. The phases are any recipe's:
its loss and backward (`trainer.task.micro_step`), the target encoder's forward inside the loss timed by hooks on
it. With --engines, also the step time of whole runs per engine at world size 1 and 2 (gloo, started with
torchrun; the same global batch). Ends with one JSON line.

    python bench/step_time.py [--config CONFIG.yaml] [--csv LIST.csv] [--steps 10] [--engines]

With --vs-eager instead: the fast CPU step (`distributed.cpu_fast_step: true`) against today's plain eager step, for
tiny_cpu.yaml and for a vit_tiny encoder (12 blocks) with a 12-layer predictor at 16x224 (--config: that config
alone). Both trainers are built in this process from the same config and seed (same weights, checked), get the
same batches (drawn once, replayed: same clips and masks), and train in lockstep; after the warm-up steps (the
compile) rounds of one eager and one fast step alternate, so a busy CPU slows both alike. Prints the median step
times, their ratio (fast / eager) and the largest loss difference over every step; ends with its own JSON line.

    python bench/step_time.py --vs-eager [--rounds 8] [--warmup 3]
"""
import argparse
import contextlib
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
from jepa_scale.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


@contextlib.contextmanager
def forward_time(module):
    """Seconds spent in `module`'s forwards while the block runs (a list, its one item filled at the end)."""
    spent, start = [0.0], []
    pre = module.register_forward_pre_hook(lambda *_: start.append(time.perf_counter()))
    post = module.register_forward_hook(lambda *_: spent.__setitem__(0, spent[0] + time.perf_counter() - start.pop()))
    try:
        yield spent
    finally:
        pre.remove()
        post.remove()


def step_phases(trainer, step):
    """`Pretrain.train_step` on one micro-batch, cut into timed phases: whatever the recipe, its loss and backward
    are the task's micro-step, of which the target encoder's forward is reported on its own."""
    e, task = trainer.engine, trainer.task
    batch, t_data = timed(lambda: next(trainer.streams[0]))
    lr, wd, m = task.schedules.at_iteration(step)
    set_lr_wd(e.optimizer, lr, wd)
    with forward_time(e.models["target_encoder"]) as t_target:
        _, t_loss = timed(lambda: task.micro_step(batch, 1.0, last=True))

    def optimizer_and_ema():
        e.optimizer.step()
        e.optimizer.zero_grad(set_to_none=True)
        e.ema_update(m)

    _, t_opt = timed(optimizer_and_ema)
    return {"data_s": t_data, "target_fwd_s": t_target[0], "ctx_pred_fwd_bwd_s": t_loss - t_target[0],
            "optimizer_ema_s": t_opt}


def embed_once_ratio(trainer, reps=5):
    """(per-mask, once) seconds of the context encoder over one batch's masks, or None for a batch that is not
    video alone (the comparison is the V-JEPA wrapper's)."""
    batch = next(trainer.streams[0])
    if set(batch.inputs) != {"video"}:
        return None
    enc = trainer.engine.models["encoder"]
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


def engine_step_times(config: Path, csv: str, tmp: Path, steps: int = 16) -> dict:
    """Median step time of short runs: single (world 1) and ddp/fsdp (world 2), global batch 8 in all."""
    runs = {"single_w1": (1, ["data.batch_size=8"]), "ddp_w2": (2, ["data.batch_size=4", "distributed.engine=ddp"]),
            "fsdp_w2": (2, ["data.batch_size=4", "distributed.engine=fsdp"])}
    if importlib.util.find_spec("deepspeed") is not None:
        for stage in (1, 2, 3):
            runs[f"zero{stage}_w2"] = (2, ["data.batch_size=4", "distributed.engine=deepspeed",
                                           f"distributed.zero_stage={stage}"])
    tag, out = load_config(config).logging.write_tag, {}
    for name, (n, sets) in runs.items():
        folder = tmp / name
        sets = sets + [f"data.datasets=[{csv}]", f"logging.folder={folder}", f"optimization.max_steps={steps}",
                       "logging.log_freq=4", "logging.tensorboard=false", "data.num_workers=0"]
        args = [str(ROOT / "launch/pretrain.py"), "--config", str(config)]
        for s in sets:
            args += ["--set", s]
        r = run_local(args, n, threads=2 // n)
        if r.returncode:
            raise RuntimeError(f"{name} failed:\n{r.stderr[-3000:]}")
        rows = list(csv_module.DictReader(open(folder / f"{tag}_r0.csv")))[4:]  # past the first interval (warm-up)
        out[name] = statistics.median(float(r["step_time_s"]) for r in rows)
    return out


# the default run: (JSON key prefix, config, options of its synthetic videos); "" is the one the ratios are against.
DEFAULT_RUNS = [("", "tiny_cpu.yaml", {}), ("videomamba_", "tiny_cpu_videomamba.yaml", {}),
                ("av_", "tiny_cpu_av.yaml", {"audio": True})]


def phase_medians(config: Path, csv: str, folder: str, steps: int, warmup: int, embed_ratio: bool):
    """(median seconds per phase and their sum, the embed-once timings or None, the config) of `steps` steps."""
    cfg = load_config(config, [f"data.datasets=[{csv}]", f"logging.folder={folder}", "data.num_workers=0",
                               "logging.tensorboard=false"])
    trainer = Trainer(cfg)
    try:
        samples = [step_phases(trainer, s) for s in range(warmup + steps)][warmup:]
        med = {k: statistics.median(x[k] for x in samples) for k in samples[0]}
        med["step_s"] = sum(med.values())
        return med, embed_once_ratio(trainer) if embed_ratio else None, cfg
    finally:
        trainer.streams[0].close()


def report(name: str, cfg, med: dict, steps: int):
    print(f"{name} on CPU ({torch.get_num_threads()} threads), batch {cfg.data.batch_size}, median of {steps} steps:")
    for k, v in med.items():
        print(f"  {k:<22} {v * 1000:8.1f} ms  ({100 * v / med['step_s']:4.1f}%)")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", help="pretraining config to time (default: " +
                   ", ".join(f for _, f, _ in DEFAULT_RUNS) + " from configs/pretrain/)")
    p.add_argument("--csv", help="video list (default: synthetic videos made here)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--engines", action="store_true", help="also time whole runs per engine at world size 1 and 2")
    p.add_argument("--vs-eager", action="store_true", help="the fast CPU step against the plain eager one")
    p.add_argument("--rounds", type=int, default=8, help="--vs-eager: interleaved (eager, fast) step pairs")
    args = p.parse_args()
    torch.manual_seed(0)
    if args.vs_eager:
        return vs_eager_main(args)
    runs = [("", Path(args.config), {})] if args.config else [
        (prefix, ROOT / "configs/pretrain" / f, opts) for prefix, f, opts in DEFAULT_RUNS]
    figures, steps = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        videos = {}  # one synthetic set per video options
        for prefix, config, opts in runs:
            key = json.dumps(opts, sort_keys=True)
            if key not in videos:
                videos[key] = args.csv or str(make_moving_shapes(Path(tmp) / f"videos{len(videos)}", num_videos=32,
                                                                 num_frames=48, **opts))
            med, embed, cfg = phase_medians(config, videos[key], f"{tmp}/run_{prefix}", args.steps, args.warmup,
                                            embed_ratio=not prefix)
            report(config.name, cfg, med, args.steps)
            figures.update({f"{prefix}{k}": round(v, 5) for k, v in med.items()})
            steps[prefix] = med["step_s"]
            if embed:
                print(f"context encoder, {len(cfg.mask)} masks: per-mask patch embedding {embed[0] * 1000:.1f} ms, "
                      f"once {embed[1] * 1000:.1f} ms")
                figures["embed_once_vs_per_mask_ratio"] = round(embed[0] / embed[1], 3)
        engines = engine_step_times(runs[0][1], videos[json.dumps(runs[0][2], sort_keys=True)], Path(tmp)) \
            if args.engines else {}
    for prefix, t in steps.items():
        if prefix:
            print(f"{prefix.rstrip('_')} step vs {runs[0][1].name}'s: {t / steps['']:.2f}x")
            figures[f"{prefix}vs_{runs[0][1].stem}_step_ratio"] = round(t / steps[""], 3)
    aug_base, aug_ours = augment_ratio()
    print(f"augment 16x256x340 -> 224: float32 at source {aug_base * 1000:.1f} ms, uint8 {aug_ours * 1000:.1f} ms")
    for name, t in engines.items():
        print(f"  whole-run step, {name:<10} {t * 1000:8.1f} ms  ({t / engines['single_w1']:.2f}x single)")
    figures.update({**{f"{k}_step_s": round(v, 4) for k, v in engines.items()},
                    **{f"{k}_vs_single_ratio": round(v / engines["single_w1"], 3) for k, v in engines.items()
                       if k != "single_w1"},
                    "uint8_vs_float32_augment_ratio": round(aug_base / aug_ours, 3)})
    print(json.dumps(figures))


# --vs-eager cases: (JSON key prefix, config, overrides, synthetic video options); the second is a real vit_tiny
# (12 blocks, the preset's depth) with a 12-layer predictor at 16 frames of 224 px
VS_EAGER_CASES = [
    ("tiny_", "tiny_cpu.yaml", [], {}),
    ("vit_tiny_pred12_16x224_", "tiny_cpu.yaml",
     ["model.depth=12", "model.pred_depth=12", "data.num_frames=16", "data.crop_size=224", "data.batch_size=2"],
     {"num_videos": 8, "num_frames": 40, "height": 240, "width": 320}),
]
FAST = ["distributed.cpu_fast_step=true"]


def twin_trainers(config: Path, overrides: list[str], csv: str, tmp: Path):
    """(eager trainer, fast trainer) of one config: same seed, so the same initial weights (checked)."""
    base = [f"data.datasets=[{csv}]", "data.num_workers=0", "logging.tensorboard=false", *overrides]
    eager = Trainer(load_config(config, base + [f"logging.folder={tmp}/eager"]))
    fast = Trainer(load_config(config, base + FAST + [f"logging.folder={tmp}/fast"]))
    for name, module in eager.engine.modules.items():
        other = fast.engine.modules[name].state_dict()
        assert all(torch.equal(v, other[k]) for k, v in module.state_dict().items()), f"{name}: weights differ"
    return eager, fast


def lockstep(eager, fast, batches: list, warmup: int, rounds: int) -> dict:
    """Both trainers step through the same batches; the first `warmup` steps (compile) are not timed; then rounds
    of one eager and one fast step, in alternating order. -> step seconds of each, losses of each, the fast trainer's warm-up seconds."""
    def step(trainer, i):
        t0 = time.perf_counter()
        scalars, _ = trainer.task.train_step(i, [batches[i % len(batches)]])
        loss = float(scalars["loss"])  # the host sync: the step is done
        return time.perf_counter() - t0, loss

    out = {"eager_s": [], "fast_s": [], "eager_loss": [], "fast_loss": [], "fast_warmup_s": 0.0}
    pair = (("eager", eager), ("fast", fast))
    for i in range(warmup + rounds):
        for name, trainer in pair if i % 2 == 0 else pair[::-1]:  # neither always runs first
            seconds, loss = step(trainer, i)
            out[f"{name}_loss"].append(loss)
            if i < warmup:
                out["fast_warmup_s"] += seconds if name == "fast" else 0.0
            else:
                out[f"{name}_s"].append(seconds)
    return out


def vs_eager_case(prefix: str, config: Path, overrides: list[str], video_opts: dict, tmp: Path, args) -> dict:
    csv = args.csv or str(make_moving_shapes(tmp / f"videos_{prefix}", **{"num_videos": 16, **video_opts}))
    eager, fast = twin_trainers(config, overrides, csv, tmp / prefix)
    try:
        # one batch per step: each step sees new masks (token counts), as in training
        batches = [next(eager.streams[0]) for _ in range(args.warmup + args.rounds)]
        r = lockstep(eager, fast, batches, args.warmup, args.rounds)
    finally:
        for trainer in (eager, fast):
            trainer.streams[0].close()
    t_e, t_f = statistics.median(r["eager_s"]), statistics.median(r["fast_s"])
    diffs = [abs(a - b) for a, b in zip(r["eager_loss"], r["fast_loss"])]
    rel = max(d / abs(a) for d, a in zip(diffs, r["eager_loss"]))
    cfg = eager.cfg
    print(f"{prefix.rstrip('_')}: {cfg.model.model_name} depth {cfg.model.depth}, predictor depth "
          f"{cfg.model.pred_depth}, {cfg.data.num_frames}x{cfg.data.crop_size}, batch {cfg.data.batch_size}, "
          f"{torch.get_num_threads()} threads; median of {args.rounds} interleaved rounds after {args.warmup} "
          f"warm-up steps ({r['fast_warmup_s']:.1f} s for the fast step, compile included)")
    print(f"  eager {t_e * 1000:8.1f} ms   fast {t_f * 1000:8.1f} ms   ratio {t_f / t_e:.3f}")
    print(f"  losses over {len(diffs)} steps: max |diff| {max(diffs):.3g} (relative {rel:.3g}); eager "
          f"{r['eager_loss'][0]:.6f} -> {r['eager_loss'][-1]:.6f}")
    assert rel < 1e-5, f"{prefix}: the fast step's losses differ from the eager step's by {rel:.3g} (relative)"
    return {f"{prefix}eager_step_s": round(t_e, 5), f"{prefix}fast_step_s": round(t_f, 5),
            f"{prefix}fast_vs_eager_ratio": round(t_f / t_e, 3), f"{prefix}loss_max_abs_diff": max(diffs),
            f"{prefix}loss_max_rel_diff": rel, f"{prefix}fast_warmup_s": round(r["fast_warmup_s"], 1)}


def vs_eager_main(args):
    cases = [("", Path(args.config), [], {})] if args.config else [
        (prefix, ROOT / "configs/pretrain" / f, sets, opts) for prefix, f, sets, opts in VS_EAGER_CASES]
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for prefix, config, sets, opts in cases:
            figures.update(vs_eager_case(prefix, config, sets, opts, Path(tmp), args))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
