"""Clips/s on one CPU core: the official V-JEPA loader vs our shards + decode path, on the same videos, same run.

(a) official: decord decodes the original file at native resolution (`get_batch` of the clip's indices), then
    the official transform in float32 at source resolution: random resized crop, flip, normalise;
(b) ours: the videos transcoded once by make_shards (short side 256, GOP 16, x264 fastdecode), a sample's bytes
    read from its shard, PyAV decodes only the clip's frames, uint8 crop/resize, normalise at 224.
Both produce 16x224x224 clips (frame step 4) with the official sampling. Also prints make_shards' videos/s.

    python bench/data_throughput.py [--csv LIST.csv] [--clips 60]
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from jepa_scale.config import load_config
from jepa_scale.data.csv_source import read_video_lists
from jepa_scale.data.official_augment import official_augment
from jepa_scale.data.sampling import clip_indices
from jepa_scale.data.shards.make import make_shards
from jepa_scale.data.shards.source import read_shard_datasets
from jepa_scale.data.shards.transcode import TranscodeOptions
from jepa_scale.data.synthetic import moving_shape_frames, write_video
from jepa_scale.data.video_batches import ClipLoader

ROOT = Path(__file__).resolve().parents[1]
FPC, STEP, CROP = 16, 4, 224


def make_videos(folder: Path, n: int = 8) -> Path:
    """Camera-like test videos: 640x360, 30 fps, 8 s, sensor noise on every frame, H.264 with x264's default
    keyframe interval (250) as typical uploads have."""
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        path = folder / f"native_{i}.mp4"
        frames = moving_shape_frames(i % 12, 240, 360, 640, rng).astype(np.int16)
        frames = np.clip(frames + rng.integers(-6, 7, frames.shape, dtype=np.int16), 0, 255)
        write_video(path, frames.astype(np.uint8), fps=30, gop=250, options={"preset": "medium"})
        lines.append(f"{path} {i % 12}\n")
    csv = folder / "native.csv"
    csv.write_text("".join(lines))
    return csv


def official_clip(path: str, rng: np.random.Generator) -> torch.Tensor:
    """The official loader's algorithm: decord, then float32 transforms at the source resolution."""
    from decord import VideoReader, cpu

    vr = VideoReader(path, num_threads=1, ctx=cpu(0))
    vr.seek(0)
    (idx,) = clip_indices(len(vr), FPC, STEP, 1, rng)
    frames = torch.from_numpy(vr.get_batch(list(idx)).asnumpy())
    return official_augment(frames, CROP, (0.3, 1.0), (0.75, 1.35), rng)


def seconds(make_clip, items, start: int, clips: int, rng) -> float:
    t = time.perf_counter()
    for i in range(start, start + clips):
        out = make_clip(items[i % len(items)], rng)
        assert out.shape == (3, FPC, CROP, CROP), out.shape
    return time.perf_counter() - t


def compare(paths: dict, clips: int, rounds: int = 6) -> tuple[dict, float]:
    """Interleaved rounds (a, b, a, b, ...), so a change of machine load hits both: rates over all rounds, and the
    median of the per-round ratios."""
    rngs = {k: np.random.default_rng(0) for k in paths}
    for k, (fn, items) in paths.items():  # warm-up
        seconds(fn, items, 0, 2, rngs[k])
    per = max(1, clips // rounds)
    times = {k: [] for k in paths}
    for r in range(rounds):
        for k, (fn, items) in paths.items():
            times[k].append(seconds(fn, items, r * per, per, rngs[k]))
    rates = {k: per * rounds / sum(t) for k, t in times.items()}
    a, b = times
    return rates, float(np.median([ta / tb for ta, tb in zip(times[a], times[b])]))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--csv", help="official CSV video list (default: test videos made here)")
    p.add_argument("--clips", type=int, default=72)
    p.add_argument("--short-side", type=int, default=256)
    args = p.parse_args()
    torch.set_num_threads(1)  # one CPU core per loader worker, as measured
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv = Path(args.csv) if args.csv else make_videos(tmp)
        originals = [r.path for r in read_video_lists([str(csv)])]
        t = time.perf_counter()
        m = make_shards([str(csv)], str(tmp / "shards"), TranscodeOptions(short_side=args.short_side, gop=16),
                        progress=False)
        shard_rate = (m["num_samples"] + len(m["failures"])) / (time.perf_counter() - t)
        (records,), _ = read_shard_datasets([tmp / "shards"])
        cfg = load_config(raw={"data": {"datasets": [str(csv)], "num_frames": FPC, "sampling_rate": STEP,
                                        "crop_size": CROP}})
        ours_loader = ClipLoader(cfg.data, cfg.data_aug)
        rates, ratio = compare({"official": (official_clip, originals), "ours": (ours_loader, records)}, args.clips)
        official, ours = rates["official"], rates["ours"]
    print(f"videos: {len(originals)} ({'given' if args.csv else 'made here: 640x360, 30 fps, 8 s, GOP 250, per-frame noise'})")
    print(f"make_shards: {shard_rate:.2f} videos/s (short side {args.short_side}, GOP 16, x264 fastdecode)")
    print(f"(a) official loader (decord, float32 at source resolution): {official:6.2f} clips/s")
    print(f"(b) ours (shards, PyAV, uint8 crop/resize):                 {ours:6.2f} clips/s")
    print(f"ratio: {ratio:.2f}x (median over interleaved rounds)")
    print(json.dumps({"official_clips_per_s": round(official, 3), "ours_clips_per_s": round(ours, 3),
                      "shards_vs_official_ratio": round(ratio, 3),
                      "make_shards_videos_per_s": round(shard_rate, 3), "clips": args.clips}))


if __name__ == "__main__":
    main()
