"""V-JEPA CSV video lists -> webdataset tar shards (transcoded for fast decoding) + manifest.json.

    python data_tools/make_shards.py --csv k710.csv --csv ssv2.csv --weights 0.7 0.3 --out /data/shards \\
        --short-side 256 --no-upscale --gop 32 --bframes 15 --codec h264 --workers 16

--gop 32 --bframes 15 --no-upscale keep the official clip distribution exactly and are the recommended (fastest
exact, and fewest bytes of the exact ones) settings for the PyAV loader, measured by bench/data_throughput.py;
--keep-every K trades exactness for speed (see its help). The defaults (GOP 16, no B-frames) are what DALI's
NVDEC path has been written for.

Every input row ends either in a shard or in manifest.json's `failures` (line, path, reason). A rerun continues
where an interrupted one stopped: finished shards are kept.

--out must be a new or empty folder, or the folder of an earlier run of this very command: the first run records
the CSVs' sha256 and the options that change the output in <out>/make_shards.json, and a rerun with other CSV
contents or options is refused (exit code 2), as is a folder that is not empty and holds no such record.

Images: one ImageFolder split (a subfolder of images per class) -> image shards, the files' bytes unchanged, with
classes.json and manifest.json (kept images, failed files: together, every file scanned). --out follows the same
rules as for videos (the folder's listing, sha256 of its sorted relative paths and sizes, is recorded instead of
CSVs', and a rerun continues an interrupted run); only --shard-size-mb and --workers apply.

Audio (AV-JEPA): --audio keeps each video's sound as a `wav` member (16-bit PCM mono at --audio-rate, cut or padded
to the video's duration, so sample round(i / fps * rate) is frame i's moment), with or without --copy. A video
without an audio track is a failure ("no audio track"), or with --audio-missing silence gets a silent wav and is
listed in manifest.json's `silent_audio`.

    python data_tools/make_shards.py --csv k400.csv --out /data/k400_av --short-side 256 --audio --audio-rate 16000

    python data_tools/make_shards.py --images /data/imagenet/train --out /data/imagenet_shards/train
"""
import argparse
import sys

from jepa_scale.data.csv_source import DataError
from jepa_scale.data.shards.make import make_shards
from jepa_scale.data.shards.transcode import AUDIO_MISSING, ENCODERS, TranscodeOptions

AUDIO_RATE = 16000  # --audio-rate's default: AudioSet's (and AudioMAE's) rate


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", action="append", help="official CSV list (repeat for several datasets)")
    src.add_argument("--images", help="an ImageFolder split (class subfolders of images) to shard instead")
    p.add_argument("--weights", type=float, nargs="+", help="mixing weight per --csv, stored in the manifest")
    p.add_argument("--out", required=True, help="output folder, new or empty (or this command's earlier run, to "
                   "continue it); nothing is written outside it")
    p.add_argument("--short-side", type=int, help="resize so the short side is this many pixels")
    p.add_argument("--fps", type=float, help="resample to this frame rate")
    p.add_argument("--gop", type=int, default=16, help="keyframe interval (default 16: cheap seeks)")
    p.add_argument("--codec", choices=sorted(ENCODERS), default="h264")
    p.add_argument("--crf", type=int, default=23)
    p.add_argument("--no-fastdecode", action="store_true", help="do not tune x264/x265 for decoding speed")
    p.add_argument("--bframes", type=int, default=0, help="h264/hevc: B-frames between P-frames (15 with --gop 32 --no-upscale "
                   "recommended: 1.6x the default's clips/s on real videos with a quarter fewer bytes; the clip "
                   "distribution is unchanged; x264 takes at most 16), never used as references, so the loader skips decoding the "
                   "ones a clip does not show (default 0)")
    p.add_argument("--keep-every", type=int, default=1, metavar="K", help="store every K-th frame only (about 4x "
                   "fewer frames to decode, half the bytes at K=4). NOT the exact official clip distribution: the "
                   "loader draws the official clip and takes the stored frame nearest each drawn frame (within K/2 "
                   "frames); training with a frame step that is not a multiple of K is refused (default 1: all)")
    p.add_argument("--no-upscale", action="store_true", help="--short-side only shrinks: a smaller video keeps its "
                   "size (enlarging adds no detail, only pixels to decode)")
    p.add_argument("--copy", action="store_true", help="keep the original bytes (checked to decode) instead")
    p.add_argument("--min-frames", type=int, default=16, help="videos with fewer frames are failures")
    p.add_argument("--audio", action="store_true", help="also keep each video's sound: a wav member (16-bit PCM "
                   "mono, the video's duration) per sample")
    p.add_argument("--audio-rate", type=int, help=f"sample rate of the wav members, Hz (default {AUDIO_RATE}; "
                   "with --audio)")
    p.add_argument("--audio-missing", choices=AUDIO_MISSING, help="a video without an audio track: 'fail' (default: "
                   "a failure, reason 'no audio track') or 'silence' (a silent wav, listed in manifest.json's "
                   "silent_audio); with --audio")
    p.add_argument("--shard-size-mb", type=float, default=256)
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args(argv)
    if a.images:
        return _images(p, a)
    audio_only = [f for f, v in (("--audio-rate", a.audio_rate), ("--audio-missing", a.audio_missing)) if v]
    if audio_only and not a.audio:
        p.error(f"{', '.join(audio_only)}: audio options, given without --audio")
    if a.audio_rate is not None and a.audio_rate <= 0:
        p.error(f"--audio-rate {a.audio_rate}: must be a positive number of Hz")
    if a.bframes < 0 or a.keep_every < 1:
        p.error(f"--bframes {a.bframes}, --keep-every {a.keep_every}: need --bframes >= 0 and --keep-every >= 1")
    opts = TranscodeOptions(short_side=a.short_side, fps=a.fps, gop=a.gop, codec=a.codec, crf=a.crf,
                            fastdecode=not a.no_fastdecode, bframes=a.bframes, keep_every=a.keep_every,
                            upscale=not a.no_upscale, copy=a.copy, min_frames=a.min_frames, audio=a.audio,
                            audio_rate=a.audio_rate or AUDIO_RATE, audio_missing=a.audio_missing or "fail")
    return _run(lambda: make_shards(a.csv, a.out, opts, a.weights, a.shard_size_mb, a.workers),
                lambda m: f"{m['num_samples']} samples in {len(m['shards'])} shards, {len(m['failures'])} failures"
                          f"{_silent(m) if a.audio else ''} ({m['videos_per_s']:.1f} videos/s): {a.out}/manifest.json",
                lambda f: f"{f['dataset']} line {f['line']}: {f['path']}: {f['reason']}")


def _silent(m: dict) -> str:
    return f", {m['num_silent_audio']} with silent audio (no audio track)" if m["num_silent_audio"] else ""


def _run(make, summary, failure) -> int:
    """Exit code 2 with the error on a DataError; else the summary line and the first failures."""
    try:
        m = make()
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary(m))
    for f in m["failures"][:20]:
        print(f"  failed {failure(f)}")
    return 0


def _images(p: argparse.ArgumentParser, a) -> int:
    video_only = [f for f, v in (("--weights", a.weights), ("--short-side", a.short_side), ("--fps", a.fps),
                                 ("--copy", a.copy), ("--no-fastdecode", a.no_fastdecode), ("--audio", a.audio),
                                 ("--bframes", a.bframes), ("--keep-every", a.keep_every != 1),
                                 ("--no-upscale", a.no_upscale),
                                 ("--audio-rate", a.audio_rate), ("--audio-missing", a.audio_missing)) if v]
    if video_only:
        p.error(f"{', '.join(video_only)}: video options, not for --images")
    from jepa_scale.data.shards.images import make_image_shards

    return _run(lambda: make_image_shards(a.images, a.out, a.shard_size_mb, workers=a.workers),
                lambda m: f"{m['num_samples']} images of {len(m['classes'])} classes in {len(m['shards'])} shards, "
                          f"{len(m['failures'])} failures: {a.out}/manifest.json",
                lambda f: f"{f['path']}: {f['reason']}")


if __name__ == "__main__":
    sys.exit(main())
