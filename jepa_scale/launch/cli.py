"""What every entry point shares: logging per rank, and errors a user can fix as one line with an exit code."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from jepa_scale.checkpoint.checkpointer import RunFolderError
from jepa_scale.checkpoint.official import CheckpointError
from jepa_scale.config import ConfigError
from jepa_scale.data.csv_source import DataError
from jepa_scale.distributed.env import collective_failed, missing_ranks
from jepa_scale.launch.preemption import Preempted
from jepa_scale.plan import DoesNotFit
from jepa_scale.tasks import NonFiniteTraining

# exception -> (exit code, what the line starts with); the first match wins, so subclasses come first
USER_ERRORS = [(ConfigError, 2, "config error"), (NonFiniteTraining, 3, "stopped"), (DataError, 4, "data error"),
               (CheckpointError, 5, "checkpoint error"), (RunFolderError, 6, "run folder"),
               (DoesNotFit, 7, "does not fit")]


COLLECTIVE_TIMEOUT_EXIT = 8


def setup_logging():
    """INFO on rank 0; the other ranks say only warnings and errors (a line each per rank would drown rank 0's)."""
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s %(levelname)s [rank {rank}] %(name)s: %(message)s")


def run_parser(doc: str, what: str) -> argparse.ArgumentParser:
    """The options every run entry point takes: --config, repeatable --set, and DeepSpeed's --local_rank."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help=f"official-format or jepa_scale {what} YAML")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optimization.lr=1e-3 (repeatable)")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed
    return p


def exit_process(code: int):
    """End the process with `code` once its work is done and its files are closed, without the interpreter's
    teardown: gloo's and DeepSpeed's threads left to C++ static destructors can abort a finished rank ("terminate
    called without an active exception", exit -6), which a launcher reports as a failed run."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_main(fn, *args, option_errors: str | None = None, **kwargs) -> int:
    """fn's exit code; a user-fixable error becomes one line on stderr and its kind's exit code; a preempted run
    exits with the requeue convention (see jepa_scale.launch.preemption). option_errors: the program name of a
    tool whose ValueErrors are bad options (one line, exit 2)."""
    try:
        return fn(*args, **kwargs)
    except Preempted as e:
        print(f"preempted: {e}", file=sys.stderr)
        return e.exit_code
    except tuple(cls for cls, _, _ in USER_ERRORS) as e:  # before RuntimeError: several of them are ones
        code, what = next((c, w) for cls, c, w in USER_ERRORS if isinstance(e, cls))
        print(f"{what}: {e}", file=sys.stderr)
        return code
    except ValueError as e:
        if option_errors is None:
            raise
        print(f"{option_errors}: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        if not collective_failed(e):
            raise
        who = missing_ranks()
        print(f"collective failed on rank {os.environ.get('RANK', '0')}: another rank stopped or hangs "
              f"(distributed.collective_timeout_s){'; ' + who if who else ''} ({str(e).splitlines()[0][:200]})",
              file=sys.stderr)
        return COLLECTIVE_TIMEOUT_EXIT
