"""`python -m jepa_scale.config FILE... [--set KEY=VALUE]`: validate configs; non-zero exit on the first bad one."""
import argparse
import sys

from jepa_scale.config.loader import ConfigError, load_config
from jepa_scale.config.schema import DEAD_KEYS


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jepa_scale.config", description=__doc__)
    p.add_argument("files", nargs="+")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    bad = 0
    for f in args.files:
        try:
            load_config(f, args.overrides)
            print(f"ok {f}")
        except ConfigError as e:
            print(f"error {e}", file=sys.stderr)
            bad += 1
    if not bad:
        print("ignored official keys: " + "; ".join(f"{k} ({why})" for k, why in DEAD_KEYS.items()))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
