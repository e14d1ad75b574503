"""Preemption: a signal only sets a flag; all ranks agree at a step boundary, write a checkpoint, and the job asks
to be requeued.

SIGUSR1 / SIGUSR2 (what `sbatch --signal` and submitit send before a time limit or a preemption) mean: checkpoint,
requeue (rank 0 runs `scontrol requeue` under SLURM) and exit with REQUEUE_EXIT. SIGTERM (a cancel, or a launcher
stopping its workers) means: checkpoint and exit with TERMINATED_EXIT, without requeueing. A rank that acted alone
would leave the others waiting in a collective, hence the agreement; forked loader workers inherit the handler and
ignore it.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading

log = logging.getLogger(__name__)

REQUEUE_EXIT = 144  # "requeue me": what submitit's local executor reads, and what our scripts document
TERMINATED_EXIT = 128 + signal.SIGTERM
REQUEUE_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)
HANDLED = (*REQUEUE_SIGNALS, signal.SIGTERM)


class Preempted(Exception):
    """The run stopped at a step boundary after a preemption signal, with a checkpoint of that step."""

    def __init__(self, signum: int, step: int, checkpoint, requeued: str | None):
        self.signum, self.step, self.requeued = signum, step, requeued
        self.exit_code = REQUEUE_EXIT if signum in REQUEUE_SIGNALS else TERMINATED_EXIT
        again = f"; requeued {requeued}" if requeued else ""
        super().__init__(f"{signal.Signals(signum).name} at step {step}: checkpoint in {checkpoint}{again}")


class PreemptionFlag:
    def __init__(self):
        self.signum = 0  # the signal received, 0 for none; a requeue signal wins over SIGTERM
        self._pid, self._previous = os.getpid(), {}

    def install(self, signals=HANDLED):
        if threading.current_thread() is not threading.main_thread():
            return self  # Python runs signal handlers in the main thread only: a run in a thread is not preemptible
        for s in signals:
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def uninstall(self):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum, frame):
        if os.getpid() != self._pid:  # a forked loader worker: the main process acts for it
            return
        if not self.signum or signum in REQUEUE_SIGNALS:
            self.signum = signum

    def agreed(self, engine) -> int:
        """The signal any rank received (0: none), the same on every rank: one collective."""
        return engine.max_over_ranks(self.signum)


def requeue_job() -> str | None:
    """Ask SLURM to requeue this job (array-aware id); the id, or None outside SLURM or when it refused."""
    env = os.environ
    if "SLURM_JOB_ID" not in env:
        return None
    job = (f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}" if "SLURM_ARRAY_TASK_ID" in env
           else env["SLURM_JOB_ID"])
    try:
        r = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.error("scontrol requeue %s failed: %s", job, e)
        return None
    if r.returncode:
        log.error("scontrol requeue %s failed (exit %d): %s", job, r.returncode, r.stderr.strip())
        return None
    return job
