"""Does the pretraining help? Frozen probes on a pretrained backbone against the same probe on a random-init
backbone of the same shape, over several probe seeds, on a synthetic probe set larger than the demo's (480 videos
with a class-coded tone, half of them validation clips: 240, so one clip is 0.4 points).

The backbones are the tiny pretraining runs (trained beforehand; 20-30 minutes each on 2 cores):
    python launch/pretrain.py --config configs/pretrain/tiny_cpu_av.yaml          # AV-JEPA, demo_out/run_av
    python launch/pretrain.py --config configs/pretrain/tiny_cpu_videomamba.yaml \\
        --set model.mamba_dt_init=mamba --set logging.folder=demo_out/run_videomamba_dtmamba
    python data_tools/make_synthetic_videos.py --kind pan --out demo_out/pan_videos --num-videos 192
    python launch/pretrain.py --config configs/pretrain/tiny_cpu.yaml \
        --set data.datasets=[demo_out/pan_videos/videos.csv] --set logging.folder=demo_out/run_pan_vit  # vit_pan
    python bench/probe_vs_random.py [--cases av_video videomamba] [--seeds 0 1 2]

The `*_pan` cases probe the "pan" videos (a texture sliding in one of 4 directions: motion-only classes).

Prints top-1 per seed for both backbones and their difference; ends with one JSON line (the mean difference in
points in `*_minus_random_points`; the ratio of mean top-1s, pretrained / random, in `*_vs_random_ratio`).
"""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from jepa_scale.config import load_config
from jepa_scale.evals.runner import evaluate

ROOT = Path(__file__).resolve().parents[1]
# probe set -> (its folder, make_synthetic_videos.py arguments): 480 videos, half of them validation clips
PROBE_SETS = {
    "shapes": (ROOT / "demo_out" / "probe_videos_480", ["--kind", "shapes", "--audio"]),
    "pan": (ROOT / "demo_out" / "pan_probe_480", ["--kind", "pan"]),
}
# case -> (eval config, overrides, the pretraining run folder it reads, probe set)
CASES = {
    "av_video": ("tiny_cpu_probe_av.yaml", ["probe.inputs=video"], "demo_out/run_av", "shapes"),
    "av_both": ("tiny_cpu_probe_av.yaml", ["probe.inputs=both"], "demo_out/run_av", "shapes"),
    "videomamba": ("tiny_cpu_probe_videomamba.yaml", ["pretrain.mamba_dt_init=mamba"],
                   "demo_out/run_videomamba_dtmamba", "shapes"),
    "vit": ("tiny_cpu_probe.yaml", [], "demo_out/run", "shapes"),  # make demo's run
    "vit_pan": ("tiny_cpu_probe.yaml", ["data.num_classes=4"], "demo_out/run_pan_vit", "pan"),
}


def probe_set(name: str) -> Path:
    folder, arguments = PROBE_SETS[name]
    if not (folder / "val.csv").exists():
        subprocess.run([sys.executable, str(ROOT / "data_tools/make_synthetic_videos.py"), "--out", str(folder),
                        "--num-videos", "480", "--seed", "2", "--val-fraction", "0.5", *arguments], check=True)
    return folder


def top1s(case: str, seed: int, videos: Path, out: Path, run: str) -> tuple[float, float]:
    """(pretrained, random-init) top-1 of one probe seed, the backbone read from the run folder `run`."""
    config, more = CASES[case][:2]
    sets = [*more, f"pretrain.folder={run}", f"probe.seed={seed}", "probe.overwrite=true",
            f"data.dataset_train={videos / 'train.csv'}", f"data.dataset_val={videos / 'val.csv'}"]
    path = ROOT / "configs" / "evals" / config
    pretrained = evaluate(load_config(path, [*sets, f"probe.output_folder={out / case / f's{seed}'}"]))
    random = evaluate(load_config(path, [*sets, f"probe.output_folder={out / case / f's{seed}-random'}"]),
                      encoder_checkpoint="")
    return pretrained["top1"], random["top1"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", choices=sorted(CASES), default=["av_video", "videomamba"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", default=str(ROOT / "demo_out" / "probe_vs_random"))
    p.add_argument("--run", help="the pretraining run folder to probe (one case only; default: the case's own)")
    args = p.parse_args()
    if args.run and len(args.cases) != 1:
        p.error("--run names the run of one case: give one --cases")
    runs = {case: Path(args.run) if args.run else ROOT / CASES[case][2] for case in args.cases}
    for case, run in runs.items():
        if not run.is_dir():
            sys.exit(f"{case}: no pretraining run at {run}; train it first (see the commands in this file's help)")
    figures = {}
    for case in args.cases:
        videos = probe_set(CASES[case][3])
        rows = [top1s(case, s, videos, Path(args.out), str(runs[case].resolve())) for s in args.seeds]
        for seed, (a, b) in zip(args.seeds, rows):
            print(f"{case} seed {seed}: pretrained {a:.2f}%  random-init {b:.2f}%  difference {a - b:+.2f} points")
        mean_a, mean_b = statistics.mean(r[0] for r in rows), statistics.mean(r[1] for r in rows)
        better = sum(a > b for a, b in rows)
        print(f"{case}: mean {mean_a:.2f}% vs {mean_b:.2f}% ({mean_a - mean_b:+.2f} points; pretrained better on "
              f"{better} of {len(rows)} seeds)")
        figures.update({f"{case}_pretrained_top1": [round(r[0], 2) for r in rows],
                        f"{case}_random_top1": [round(r[1], 2) for r in rows],
                        f"{case}_minus_random_points": round(mean_a - mean_b, 2),
                        f"{case}_vs_random_ratio": round(mean_a / mean_b, 3), f"{case}_seeds_better": better})
    print(json.dumps({**figures, "seeds": args.seeds, "val_clips": 240}))


if __name__ == "__main__":
    main()
