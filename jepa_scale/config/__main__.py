"""`python -m jepa_scale.config FILE... [--set KEY=VALUE]`: validate configs and list the official keys each one
sets that change nothing here; non-zero exit when any file is bad."""
import argparse
import re
import sys

import yaml

from jepa_scale.config.loader import ConfigError, load_config
from jepa_scale.config.names import resolve_config_path
from jepa_scale.config.schema import dead_key_reason, dead_keys_of, ignored_keys


def file_ignored_keys(path: str, overrides: list[str]) -> list[tuple[str, str]]:
    """The dead keys a file (already loaded without error) and its `--set` overrides set, each once."""
    raw = yaml.safe_load(resolve_config_path(path).read_text()) or {}
    found, table = ignored_keys(raw), dead_keys_of(raw)
    for assignment in overrides:
        # `mask.1.key` named as the file walk names it, so a key set in both places is listed once
        key = re.sub(r"\.(\d+)(?=\.|\[|$)", r"[\1]", assignment.split("=", 1)[0].strip())
        if (why := dead_key_reason(key, table)) is not None:
            found.append((key, why))
    return list(dict.fromkeys(found))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jepa_scale.config", description=__doc__)
    p.add_argument("files", nargs="+")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    bad = 0
    for f in args.files:
        try:
            load_config(f, args.overrides)
        except ConfigError as e:
            print(f"error {e}", file=sys.stderr)
            bad += 1
            continue
        print(f"ok {f}")
        for key, why in file_ignored_keys(f, args.overrides):
            print(f"  ignored {key} = {why}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
