"""Write a synthetic labelled video set and its V-JEPA CSV: `--kind shapes` (moving shapes; class = shape x
direction, 12 classes) or `--kind pan` (a random texture sliding across the frame; class = direction, 4 classes,
told by motion alone); with
--val-fraction also train.csv / val.csv (classes spread evenly over both) for a probe; with --audio each video also
has a sound, a tone whose pitch encodes the class (AAC mono), for AV-JEPA."""
import argparse
from pathlib import Path

from jepa_scale.data.synthetic import KINDS, PAN_SPEED, make_moving_shapes, split_list


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="demo_out/videos")
    p.add_argument("--num-videos", type=int, default=96)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kind", choices=sorted(KINDS), default="shapes", help="what the videos show (default shapes)")
    p.add_argument("--pan-speed", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                   help=f"--kind pan: speeds drawn from U(LO, HI) pixels a frame (default {PAN_SPEED[0]} "
                   f"{PAN_SPEED[1]})")
    p.add_argument("--val-fraction", type=float, default=None, help="also write train.csv and val.csv")
    p.add_argument("--audio", action="store_true", help="give each video a tone whose pitch encodes its class "
                   "(300 Hz x 2^(3 label / 12): the 12 classes over 3 octaves), files named *_av.mp4")
    p.add_argument("--audio-rate", type=int, default=16000, help="sample rate of the sound, Hz (default 16000)")
    args = p.parse_args(argv)
    if args.audio and args.kind != "shapes":
        p.error(f"--audio: the class tone is defined for --kind shapes only, not --kind {args.kind}")
    if args.pan_speed is not None and args.kind != "pan":
        p.error("--pan-speed is for --kind pan")
    if args.pan_speed is not None and not 0 <= args.pan_speed[0] <= args.pan_speed[1]:
        p.error(f"--pan-speed {args.pan_speed[0]} {args.pan_speed[1]}: need 0 <= LO <= HI")
    options = {"speed": tuple(args.pan_speed)} if args.pan_speed is not None else None
    csv = make_moving_shapes(args.out, args.num_videos, args.frames, seed=args.seed, progress=True, audio=args.audio,
                             audio_rate=args.audio_rate, kind=args.kind, frame_options=options)
    print(f"wrote {args.num_videos} videos{' with sound' if args.audio else ''} and {csv}")
    if args.val_fraction is not None:
        train, val = split_list(csv, args.val_fraction)
        print(f"split: {train} ({len(Path(train).read_text().splitlines())} videos), {val} "
              f"({len(Path(val).read_text().splitlines())} videos)")


if __name__ == "__main__":
    main()
