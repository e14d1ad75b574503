"""V-JEPA CSV video lists -> webdataset tar shards (transcoded for fast decoding) + manifest.json.

    python data_tools/make_shards.py --csv k710.csv --csv ssv2.csv --weights 0.7 0.3 --out /data/shards \\
        --short-side 256 --fps 15 --gop 16 --codec h264 --workers 16

Every input row ends either in a shard or in manifest.json's `failures` (line, path, reason). A rerun continues
where an interrupted one stopped: finished shards are kept.

--out must be a new or empty folder, or the folder of an earlier run of this very command: the first run records
the CSVs' sha256 and the options that change the output in <out>/make_shards.json, and a rerun with other CSV
contents or options is refused (exit code 2), as is a folder that is not empty and holds no such record.
"""
import argparse
import sys

from jepa_scale.data.csv_source import DataError
from jepa_scale.data.shards.make import make_shards
from jepa_scale.data.shards.transcode import ENCODERS, TranscodeOptions


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--csv", action="append", required=True, help="official CSV list (repeat for several datasets)")
    p.add_argument("--weights", type=float, nargs="+", help="mixing weight per --csv, stored in the manifest")
    p.add_argument("--out", required=True, help="output folder, new or empty (or this command's earlier run, to "
                   "continue it); nothing is written outside it")
    p.add_argument("--short-side", type=int, help="resize so the short side is this many pixels")
    p.add_argument("--fps", type=float, help="resample to this frame rate")
    p.add_argument("--gop", type=int, default=16, help="keyframe interval (default 16: cheap seeks)")
    p.add_argument("--codec", choices=sorted(ENCODERS), default="h264")
    p.add_argument("--crf", type=int, default=23)
    p.add_argument("--no-fastdecode", action="store_true", help="do not tune x264/x265 for decoding speed")
    p.add_argument("--copy", action="store_true", help="keep the original bytes (checked to decode) instead")
    p.add_argument("--min-frames", type=int, default=16, help="videos with fewer frames are failures")
    p.add_argument("--shard-size-mb", type=float, default=256)
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args(argv)
    opts = TranscodeOptions(short_side=a.short_side, fps=a.fps, gop=a.gop, codec=a.codec, crf=a.crf,
                            fastdecode=not a.no_fastdecode, copy=a.copy, min_frames=a.min_frames)
    try:
        m = make_shards(a.csv, a.out, opts, a.weights, a.shard_size_mb, a.workers)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{m['num_samples']} samples in {len(m['shards'])} shards, {len(m['failures'])} failures "
          f"({m['videos_per_s']:.1f} videos/s): {a.out}/manifest.json")
    for f in m["failures"][:20]:
        print(f"  failed {f['dataset']} line {f['line']}: {f['path']}: {f['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
