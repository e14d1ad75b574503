"""Write a synthetic labelled video set (moving shapes; class = shape x direction) and its V-JEPA CSV; with
--val-fraction also train.csv / val.csv (classes spread evenly over both) for a probe."""
import argparse
from pathlib import Path

from jepa_scale.data.synthetic import make_moving_shapes, split_list


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="demo_out/videos")
    p.add_argument("--num-videos", type=int, default=96)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=None, help="also write train.csv and val.csv")
    args = p.parse_args(argv)
    csv = make_moving_shapes(args.out, args.num_videos, args.frames, seed=args.seed, progress=True)
    print(f"wrote {args.num_videos} videos and {csv}")
    if args.val_fraction is not None:
        train, val = split_list(csv, args.val_fraction)
        print(f"split: {train} ({len(Path(train).read_text().splitlines())} videos), {val} "
              f"({len(Path(val).read_text().splitlines())} videos)")


if __name__ == "__main__":
    main()
