"""Pretrain V-JEPA: `python launch/pretrain.py --config FILE [--set KEY=VALUE ...]`."""
import argparse
import logging
import sys

from jepa_scale.config import ConfigError, load_config
from jepa_scale.tasks import NonFiniteTraining
from jepa_scale.trainer import train


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True, help="official-format or jepa_scale pretraining YAML")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optimization.lr=1e-3 (repeatable)")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    try:
        summary = train(cfg, local_rank=args.local_rank)
    except NonFiniteTraining as e:
        print(f"stopped: {e}", file=sys.stderr)
        return 3
    print(f"done: {summary['step']} steps, final loss {summary['loss']:.4f}")
    print(f"  checkpoint:  {summary['checkpoint']}")
    print(f"  CSV log:     {summary['csv']}")
    print(f"  tensorboard: tensorboard --logdir {summary['tensorboard']}")
    if summary["skipped_videos"]:
        print(f"  skipped videos (see skipped_videos.tsv): {summary['skipped_videos']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
