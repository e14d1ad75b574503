"""python -m jepa_scale.checkpoint export RUN_DIR OUT.pth.tar | import IN.pth.tar RUN_DIR"""
import argparse
import sys

from jepa_scale.checkpoint.convert import export_run, import_checkpoint
from jepa_scale.checkpoint.official import CheckpointError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jepa_scale.checkpoint", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="a run's newest checkpoint (sharded or not) -> one official-layout file")
    e.add_argument("run_dir")
    e.add_argument("out")
    i = sub.add_parser("import", help="an official-layout file -> the checkpoint RUN_DIR resumes from")
    i.add_argument("src")
    i.add_argument("run_dir")
    a = p.parse_args(argv)
    try:
        path = export_run(a.run_dir, a.out) if a.cmd == "export" else import_checkpoint(a.src, a.run_dir)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
