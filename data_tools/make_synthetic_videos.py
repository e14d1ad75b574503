"""Write a synthetic labelled video set (moving shapes; class = shape x direction) and its V-JEPA CSV."""
import argparse

from jepa_scale.data.synthetic import make_moving_shapes


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="demo_out/videos")
    p.add_argument("--num-videos", type=int, default=96)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    csv = make_moving_shapes(args.out, args.num_videos, args.frames, seed=args.seed, progress=True)
    print(f"wrote {args.num_videos} videos and {csv}")


if __name__ == "__main__":
    main()
