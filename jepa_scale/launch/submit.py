"""Pretraining or a frozen eval through submitit:
`python launch/submit.py --config FILE [--cluster slurm|local|debug] [options]`.

The job's callable is `RunJob`, a `submitit.helpers.Checkpointable`: it runs the config as its kind says
(`jepa_scale.launch.slurm.job_kind`: `train` for pretraining, `jepa_scale.evals.runner.evaluate` for an eval config)
with the kind's resume override (`meta.load_checkpoint=true`, `resume_checkpoint=true`), so whatever restarts it (a
requeue by rank 0 after a preemption checkpoint, submitit's own checkpoint-and-requeue, the local executor
restarting tasks that exit 144) resumes from the newest complete checkpoint. The ranks find each other through
submitit's `TorchDistributedEnvironment().export()` (MASTER_ADDR = the first host, RANK / WORLD_SIZE / LOCAL_RANK
from SLURM or the local executor) with MASTER_PORT chosen first like the sbatch scripts do: from the job id and
SLURM_RESTART_COUNT, so a requeued job does not reuse a port whose sockets may still be in TIME_WAIT.

Signals. SLURM (`--signal`, default USR2, `--signal-lead-s` before the time limit) signals every task (the local
executor sends USR2 `--signal-lead-s` before its emulated time limit); submitit installs its handler for the
preemption signal when a task starts, and the trainer (or the eval runner) installs its own over it as it starts
(flag, checkpoint at the next log flush, rank 0 requeues under SLURM, exit 144 = the local executor's "restart
me"). A signal that arrives before that (unpickling, reading the config) goes to submitit's handler: rank 0
requeues the job through `checkpoint()`, which resubmits the same callable.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import zlib
from pathlib import Path

import submitit

from jepa_scale.launch.slurm import (
    ROOT,
    SlurmOptions,
    add_job_arguments,
    job_kind,
    options_from_args,
)

DEFAULT_TIME_MIN = 4300  # the official launcher's default (about 3 days); submitit's own (5 min) is too short


def master_port(job_id, restart: int = 0) -> int:
    """The port the sbatch scripts use: 10000 + (job id % 2000) * 10 + restart % 10 (a job id that is not a number,
    e.g. `123_4`, is hashed)."""
    text = str(job_id)
    n = int(text) if text.isdigit() else zlib.crc32(text.encode())
    return 10000 + (n % 2000) * 10 + restart % 10


def parse_time_min(text: str) -> float:
    """sbatch's --time formats in minutes: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise ValueError(f"--time {text}: expected minutes or [D-]HH:MM[:SS]")
    d, a, b, c = m.groups()
    if d is None:  # M | M:S | H:M:S
        if b is None:
            return float(a)
        if c is None:
            return int(a) + int(b) / 60
        return int(a) * 60 + int(b) + int(c) / 60
    minutes = int(d) * 1440 + int(a) * 60  # D-H | D-H:M | D-H:M:S
    return minutes + (int(b) if b else 0) + (int(c) / 60 if c else 0)


def job_function(cfg):
    """The function that runs a loaded config: `train` for pretraining, `evaluate` for an eval config."""
    return job_kind(cfg).entry.function()


class RunJob(submitit.helpers.Checkpointable):
    """What every task of the job runs. Checkpointable: its `checkpoint()` (called by submitit's handler on rank 0)
    resubmits this same object, which always resumes (the kind's resume override)."""

    def __init__(self, config: str, overrides: list[str], env: dict[str, str] | None = None, threads: int = 1):
        self.config, self.overrides, self.env, self.threads = config, list(overrides), dict(env or {}), threads

    def __call__(self) -> dict:
        import torch

        from jepa_scale.config import load_config
        from jepa_scale.launch.cli import setup_logging
        from jepa_scale.launch.preemption import Preempted

        os.environ.update(self.env)
        job = submitit.JobEnvironment()
        if job.num_tasks > 1:
            os.environ["MASTER_PORT"] = str(master_port(os.environ.get("SLURM_JOB_ID", job.job_id),
                                                        int(os.environ.get("SLURM_RESTART_COUNT", "0"))))
            # every task sees all GPUs of its node and picks cuda:LOCAL_RANK (jepa_scale.distributed.env)
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        torch.set_num_threads(self.threads)
        os.chdir(ROOT)  # relative paths resolve against the repository, as with launch/pretrain.py run there
        setup_logging()
        # loaded twice: the resume override depends on the kind, which only the loaded config tells
        resume = job_kind(load_config(self.config, self.overrides)).entry.resume
        cfg = load_config(self.config, [*self.overrides, resume])
        try:
            return job_function(cfg)(cfg)
        except Preempted as e:  # checkpoint written (and, under SLURM, rank 0 requeued the job)
            print(f"preempted: {e}", file=sys.stderr, flush=True)
            # SystemExit passes submitit's `except Exception` (no error result is written); 144 makes the local
            # executor restart the tasks
            sys.exit(e.exit_code)


PretrainJob = RunJob  # the name that jobs submitted by earlier versions pickled: their requeues unpickle it


def make_executor(o: SlurmOptions, folder: str | Path, cluster: str | None = None):
    """An AutoExecutor for options `o` (None: SLURM when srun is on PATH, else local)."""
    ex = submitit.AutoExecutor(folder=str(folder), cluster=cluster, slurm_max_num_timeout=20)
    gpus = o.gpus_per_node if o.gpus_per_node is not None else (None if o.gpus_per_task else o.tasks_per_node)
    params = dict(name=o.job_name, nodes=o.nodes, tasks_per_node=o.tasks_per_node, cpus_per_task=o.cpus_per_task,
                  timeout_min=int(parse_time_min(o.time)) if o.time else DEFAULT_TIME_MIN,
                  gpus_per_node=gpus or None, slurm_gpus_per_task=o.gpus_per_task, slurm_partition=o.partition,
                  slurm_account=o.account, slurm_qos=o.qos, slurm_mem=o.mem, slurm_mem_per_gpu=o.mem_per_gpu,
                  slurm_constraint=o.constraint, slurm_signal_delay_s=o.signal_lead_s,
                  slurm_srun_args=["--kill-on-bad-exit=1"])
    if o.time:
        params["slurm_time"] = o.time  # exactly as given
    extra = {"requeue": True} if o.requeue else {"no-requeue": True}
    setup = []
    if o.signal != "USR2":  # submitit writes USR2; its handler listens to SUBMITIT_PREEMPT_SIGNAL
        extra["signal"] = f"{o.signal}@{o.signal_lead_s}"
        setup.append(f"export SUBMITIT_PREEMPT_SIGNAL={o.signal}")
    params.update(slurm_additional_parameters=extra, slurm_setup=setup or None)
    ex.update_parameters(**params)
    if ex.cluster == "local":  # its USR2 before the emulated time limit; AutoExecutor does not pass this key on
        ex._executor._internal_update_parameters(signal_delay_s=o.signal_lead_s)
    return ex


def default_folder(o: SlurmOptions) -> Path:
    """Where submitit keeps its pickles and logs (`<job id>_<task>_log.out` ...): --output-dir, else
    `<run folder>/submitit` (logging.folder, an eval's output folder: shared between the nodes, as submitit's folder
    must be)."""
    from jepa_scale.config import load_config

    if o.output_dir:
        return Path(o.output_dir).absolute()
    folder = job_kind(load_config(o.config, o.overrides)).folder
    return (folder if folder.is_absolute() else ROOT / folder) / "submitit"


def submit(o: SlurmOptions, cluster: str | None = None, folder: str | Path | None = None):
    """Submit the run (pretraining or eval) of options `o`; returns the submitit Job."""
    config = str(Path(o.config).resolve()) if Path(o.config).is_file() else o.config
    job = RunJob(config, o.overrides, dict(o.env), threads=o.cpus_per_task)
    return make_executor(o, folder or default_folder(o), cluster).submit(job)


def main(argv=None) -> int:
    from jepa_scale.launch.cli import run_main

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_job_arguments(p)
    p.add_argument("--cluster", choices=("slurm", "local", "debug"),
                   help="submitit executor (default: slurm when srun is on PATH, else local); local: this machine, "
                        "one node, tasks_per_node processes; debug: in this process")
    p.add_argument("--wait", action="store_true",
                   help="wait for the job and print its result (always for local and debug: their job ends with "
                        "this process)")
    args = p.parse_args(argv)
    return run_main(_submit, args, option_errors="launch/submit.py")


def _submit(args) -> int:
    opts = options_from_args(args)
    if opts.mode != "srun":
        raise ValueError("--mode deepspeed: submitit starts one task per rank itself (use launch/slurm.py)")
    job = submit(opts, args.cluster)
    print(f"submitted job {job.job_id} ({type(job).__name__}); logs: {job.paths.stdout.parent}")
    if args.wait or args.cluster in ("local", "debug"):
        result = job.results()[0]  # rank 0's summary
        print(opts.entry.summary.format(**result))
    return 0
