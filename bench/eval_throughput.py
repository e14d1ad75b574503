"""Clips/s of probe training with and without the feature cache, on the CPU, in the same run: the tiny probe of
configs/evals/tiny_cpu_probe.yaml (8-frame clips, 2 segments, a 6-block ViT-tiny at 96 px) on synthetic videos,
training clips that are the eval clips (probe.train_augment: false) so their features can be cached. Also a V-JEPA 2
grid of 20 heads trained on one encoder pass, against 20 one-head runs (each paying the encoder). Ends with one JSON line.

    python bench/eval_throughput.py [--videos 48] [--epochs 3] [--heads 20]
"""
import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from jepa_scale.config import load_config
from jepa_scale.data.synthetic import make_moving_shapes, split_list
from jepa_scale.evals.runner import ProbeRun

ROOT = Path(__file__).resolve().parents[1]


def train_rate(cfg, epochs: int) -> tuple[float, float]:
    """(training clips/s over `epochs` epochs after the inputs are ready, seconds to make them ready: the cache
    fill, or 0)."""
    run = ProbeRun(cfg, encoder_checkpoint="")
    run.checkpointer.prepare(resume=False)
    t = time.perf_counter()
    run.sources = run.open_inputs()
    ready = time.perf_counter() - t
    from jepa_scale.monitor.metrics import Metrics

    run.metrics = Metrics(run.spec.folder, "train_steps", run.task.columns, 0, False, 10 ** 6)
    clips, t = 0, time.perf_counter()
    for epoch in range(epochs):
        run.train_epoch(epoch)
        clips += run.ipe * run.spec.batch_size
    rate = clips / (time.perf_counter() - t)
    run.close()
    return rate, ready


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=48)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--heads", type=int, default=20)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        csv = make_moving_shapes(Path(tmp) / "videos", num_videos=args.videos, num_frames=48, seed=1)
        train, val = split_list(csv, 0.25)
        base = [f"data.dataset_train={train}", f"data.dataset_val={val}", "pretrain.folder=''",
                "probe.tensorboard=false", "probe.num_workers=1", f"optimization.num_epochs={args.epochs}"]

        def cfg(name, *more):
            return load_config(ROOT / "configs/evals/tiny_cpu_probe.yaml",
                               [*base, f"probe.output_folder={Path(tmp) / name}", *more])

        plain, _ = train_rate(cfg("plain", "probe.feature_cache=false"), args.epochs)
        cached, fill = train_rate(cfg("cached"), args.epochs)
        grid_heads = ",".join(["{lr: 0.001, start_lr: 0.001, final_lr: 0.0, warmup: 0.0, weight_decay: 0.01, "
                               "final_weight_decay: 0.01}"] * args.heads)
        grid, _ = train_rate(load_config(ROOT / "configs/evals/vitl16_ssv2_16x2x3_v2.yaml", [
            f"experiment.data.dataset_train={train}", f"experiment.data.dataset_val={val}",
            "experiment.data.num_classes=12", "experiment.data.resolution=96", "experiment.data.frames_per_clip=8",
            "experiment.data.frame_step=2", "experiment.data.num_views_per_segment=2",
            f"experiment.optimization.num_epochs={args.epochs}", "experiment.optimization.batch_size=8",
            f"experiment.optimization.multihead_kwargs=[{grid_heads}]", "experiment.classifier.num_heads=3",
            "experiment.classifier.num_probe_blocks=1", "model_kwargs.checkpoint=''",
            "model_kwargs.pretrain_kwargs.encoder.use_rope=false", "model_kwargs.pretrain_kwargs.encoder.model_name=vit_tiny",
            "model_kwargs.pretrain_kwargs.encoder.depth=6", "model_kwargs.pretrain_kwargs.encoder.uniform_power=true",
            f"probe.output_folder={Path(tmp) / 'grid'}", "probe.train_augment=false", "probe.feature_cache=false",
            "probe.tensorboard=false",
            "probe.num_workers=1"]), args.epochs)
    train_clips = 20 * round(args.videos * 0.75)  # the official 20 epochs: the fill is paid once
    figures = {
        "uncached_clips_per_s": round(plain, 2), "cached_clips_per_s": round(cached, 2), "cache_fill_s": round(fill, 2),
        "cached_vs_uncached_ratio": round(cached / plain, 2),
        "cached_incl_fill_20_epochs_vs_uncached_ratio": round(train_clips / (fill + train_clips / cached) / plain, 2),
        f"grid_{args.heads}_heads_clips_per_s": round(grid, 2),
        # the official V2 grid shares one encoder pass; one run per head would pay it once per head
        f"grid_vs_{args.heads}_separate_runs_ratio": round(args.heads * grid / plain, 2),
    }
    print(f"probe training, uncached (encoder every step): {plain:.1f} clips/s")
    print(f"probe training, cached features:               {cached:.1f} clips/s (cache filled in {fill:.1f} s)")
    print(f"a {args.heads}-head V2 grid, uncached:                 {grid:.1f} clips/s "
          f"(one encoder pass for all heads)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
