"""Write a DeepSpeed hostfile: `python launch/hostfile.py --nodelist 'node-[1-4]' --slots 8 --out hostfile`.

One `host slots=N` line per host, in the order given (DeepSpeed's rank order). --nodes takes a plain comma list,
--nodelist SLURM's compressed form (`node-[1-4],gpu[01,03]`, expanded here without SLURM); with neither, the
job's $SLURM_JOB_NODELIST. Exit code 2 on a bad node list or option."""
import argparse
import os
import sys

from jepa_scale.launch.hostfile import HostfileError, expand_nodelist, hostfile_text, write_hostfile


def hosts_from(args) -> list[str]:
    if args.nodes is not None:
        if "[" in args.nodes or "]" in args.nodes:
            raise HostfileError(f"--nodes {args.nodes!r}: brackets are node-list syntax, use --nodelist")
        return expand_nodelist(args.nodes)
    nodelist = args.nodelist if args.nodelist is not None else os.environ.get("SLURM_JOB_NODELIST")
    if nodelist is None:
        raise HostfileError("no hosts: give --nodes or --nodelist (or run inside a SLURM job)")
    return expand_nodelist(nodelist)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--nodes", help="comma-separated host names, e.g. a,b,c")
    which.add_argument("--nodelist", help="SLURM node list, e.g. node-[1-4],gpu[01,03] (default $SLURM_JOB_NODELIST)")
    p.add_argument("--slots", type=int, default=8, help="processes (GPUs) per host (default 8)")
    p.add_argument("--out", help="hostfile to write (default: stdout)")
    args = p.parse_args(argv)
    try:
        hosts = hosts_from(args)
        if args.out:
            write_hostfile(args.out, hosts, args.slots)
        else:
            sys.stdout.write(hostfile_text(hosts, args.slots))
    except HostfileError as e:
        print(f"hostfile error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. --out in a folder that does not exist
        print(f"hostfile error: --out {args.out}: {e.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
