"""sbatch scripts for pretraining and frozen evals: `python launch/slurm.py --config FILE --out job.sh [options]`, then
`sbatch job.sh`.

The config's kind picks the entry point (`job_kind`): a pretraining config runs launch/pretrain.py, an eval config
(it has `eval_name`) launch/eval.py. The script is self-contained (it runs from any working directory) and
resumable: every start passes the kind's resume override (`--set meta.load_checkpoint=true`, for an eval
`--set resume_checkpoint=true`), so a requeued job continues from the newest complete checkpoint (a first start
with none starts fresh). Two layouts:

- `srun` (default): one task per GPU, `srun --kill-on-bad-exit=1 python -u launch/<entry>.py ...`; every rank reads
  SLURM_PROCID / SLURM_LOCALID / SLURM_NTASKS and the MASTER_ADDR / MASTER_PORT the script exports.
- `deepspeed`: one task per node running DeepSpeed's launcher with a hostfile built from
  `scontrol show hostnames` (`--no_ssh --node_rank=$SLURM_NODEID`), which starts `tasks_per_node` ranks.

Signals. `#SBATCH --signal=<SIG>@<lead>` makes SLURM signal the job's steps `lead` seconds (up to 60 s more)
before the time limit; `scancel --signal=<SIG> JOBID` does the same by hand. SLURM delivers such a signal to each
task's own process only, not to what that process starts (seen with SLURM 22.05, proctrack/cgroup: a child of the
task got nothing; tests/test_slurm.py checks what reaches the ranks). The training processes catch USR1, USR2 and
TERM, agree at the next log flush, checkpoint, and on USR1/USR2 rank 0 requeues the job (`scontrol requeue`, which
ends the running job at once) and all exit 144; on TERM they checkpoint and exit 143.
- `srun` mode: the ranks are the tasks, so the signal reaches them directly.
- `deepspeed` mode: the task is a node shell that starts DeepSpeed's runner, which starts `launch.py`, which starts
  the ranks. The runner and `launch.py` have no USR1/USR2 handler (the default action would kill them and their
  ranks): the node shell starts the runner with USR1/USR2 ignored (an ignored signal stays ignored across fork and
  exec; each rank installs its own handler over it) and forwards USR1, USR2 and TERM to the ranks (the children of
  `launch.py`; not their loader workers, which ignore them anyway). Once a rank exits non-zero (144, 143),
  `launch.py` sends SIGTERM to the others and SIGKILL 30 s later; the ranks exit together after their common
  checkpoint, so that only ends the stragglers.
- The batch shell is not signalled by `--signal` without `B:`; it traps USR1/USR2 anyway and forwards them to srun
  (which forwards them to the tasks), so `scancel --batch --signal=...` or a hand-edited `--signal=B:...` also
  reaches the ranks instead of killing the job without a checkpoint.

Rendezvous: MASTER_ADDR is the first host of `scontrol show hostnames "$SLURM_JOB_NODELIST"`; MASTER_PORT is
`10000 + (SLURM_JOB_ID % 2000) * 10 + SLURM_RESTART_COUNT % 10`: fixed for all ranks of one start, different
after a requeue (the previous start's sockets may still be in TIME_WAIT) and outside Linux's ephemeral ports.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[2]  # the repository (launch/pretrain.py lives there)
SIGNALS = ("USR1", "USR2", "TERM")
MODES = ("srun", "deepspeed")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# set by the script itself: a --env of these would break the rendezvous or the launch
_RESERVED_ENV = {"MASTER_ADDR", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "PYTHONPATH"}


@dataclass(frozen=True)
class Entry:
    """How a kind of run is launched."""
    what: str  # in the script's comments
    script: str  # the entry point, relative to the repository
    resume: str  # the override every start passes last, so that a requeued job resumes
    example: str  # an override for the script's usage line
    call: str  # module:function the submitit job calls with the loaded config
    summary: str  # launch/submit.py's line for rank 0's result

    def function(self):
        module, name = self.call.split(":")
        return getattr(importlib.import_module(module), name)


PRETRAIN = Entry("pretraining", "launch/pretrain.py", "meta.load_checkpoint=true", "optimization.lr=1e-4",
                 "jepa_scale.trainer:train", "done: {step} steps, final loss {loss:.4f}; checkpoint {checkpoint}")
EVAL = Entry("frozen-backbone evaluation", "launch/eval.py", "resume_checkpoint=true", "probe.num_workers=8",
             "jepa_scale.evals.runner:evaluate",
             "done: top-1 {top1:.2f}% on {num_samples} validation samples; results {results_json}")


class JobKind(NamedTuple):
    entry: Entry
    cpus: int  # per rank by default: its loader workers (at least 1)
    folder: Path  # the run's outputs (submitit keeps its files under it)


def job_kind(cfg) -> JobKind:
    """What a loaded config runs as: an eval config (it has `eval_name`) through launch/eval.py with its loader
    workers' CPUs, else pretraining with data.num_workers' (either way a V-JEPA 2 config's `cpus_per_task` when set)."""
    if not hasattr(cfg, "eval_name"):  # a V-JEPA 2 train config's cpus_per_task wins, as the official launcher
        return JobKind(PRETRAIN, getattr(cfg, "cpus_per_task", 0) or max(1, cfg.data.num_workers),
                       Path(cfg.logging.folder))
    from jepa_scale.evals.spec import eval_spec

    spec = eval_spec(cfg)
    workers = spec.num_workers if cfg.probe.num_workers is None else cfg.probe.num_workers
    return JobKind(EVAL, getattr(cfg, "cpus_per_task", 0) or max(1, workers), spec.folder)


@dataclass
class SlurmOptions:
    config: str
    nodes: int = 1
    tasks_per_node: int = 1
    mode: str = "srun"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str | None = None
    gpus_per_node: int | None = None  # None: tasks_per_node (one GPU per rank)
    gpus_per_task: int | None = None
    cpus_per_task: int = 1  # per training process (rank), in both modes
    mem: str | None = None  # per node
    mem_per_gpu: str | None = None  # excludes mem
    constraint: str | None = None
    job_name: str = "jepa"
    output_dir: str | None = None
    signal: str = "USR2"
    signal_lead_s: int = 120
    requeue: bool = True
    env: list[tuple[str, str]] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    portable: bool = False
    entry: Entry = PRETRAIN  # options_from_args takes it from the config (job_kind)

    def check(self):
        if self.mode not in MODES:
            raise ValueError(f"--mode {self.mode}: expected one of {', '.join(MODES)}")
        if self.signal not in SIGNALS:
            raise ValueError(f"--signal {self.signal}: expected one of {', '.join(SIGNALS)}")
        if not 0 <= self.signal_lead_s <= 65535:
            raise ValueError(f"--signal-lead-s {self.signal_lead_s}: SLURM takes 0..65535 seconds")
        for name in ("nodes", "tasks_per_node", "cpus_per_task"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.gpus_per_node is not None and self.gpus_per_task is not None:
            raise ValueError("--gpus-per-node and --gpus-per-task exclude each other (SLURM refuses both)")
        if self.mem is not None and self.mem_per_gpu is not None:
            raise ValueError("--mem and --mem-per-gpu exclude each other (SLURM refuses both)")
        for key, _ in self.env:
            if not _ENV_KEY.match(key):
                raise ValueError(f"--env {key}=...: not a shell variable name")
            if key in _RESERVED_ENV:
                raise ValueError(f"--env {key}: the script sets it itself")
        for o in self.overrides:
            if "=" not in o:
                raise ValueError(f"--set {o}: expected KEY=VALUE")


# -- command line (shared with launch/submit.py)

def add_job_arguments(p: argparse.ArgumentParser):
    """The options launch/slurm.py and launch/submit.py share: the config, its overrides and the allocation."""
    p.add_argument("--config", required=True,
                   help="pretraining or eval YAML (a file, or a name the config loader resolves); its `nodes` and "
                        "`tasks_per_node` give the layout; an eval config (with `eval_name`) runs launch/eval.py")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override passed to launch/pretrain.py or launch/eval.py (repeatable); "
                        "`nodes=`/`tasks_per_node=` also change the layout")
    p.add_argument("--nodes", type=int, help="override the config's `nodes`")
    p.add_argument("--tasks-per-node", type=int, help="override the config's `tasks_per_node` (ranks per node)")
    p.add_argument("--partition")
    p.add_argument("--account")
    p.add_argument("--qos")
    p.add_argument("--time", help="time limit: minutes, or [D-]HH:MM[:SS] as sbatch takes it")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--gpus-per-node", type=int,
                   help="GPUs per node (default: tasks_per_node, one per rank; 0: none, e.g. CPU runs)")
    g.add_argument("--gpus-per-task", type=int, help="GPUs per SLURM task instead of per node")
    p.add_argument("--cpus-per-task", type=int,
                   help="CPUs per training process (default: data.num_workers, at least 1; an eval config's "
                        "loader workers, or its `cpus_per_task`; in deepspeed mode the node task asks for this "
                        "times tasks_per_node)")
    m = p.add_mutually_exclusive_group()
    m.add_argument("--mem", help="memory per node, as sbatch --mem takes it (e.g. 400G, 0 for all)")
    m.add_argument("--mem-per-gpu", help="memory per GPU, as sbatch --mem-per-gpu takes it (default without --mem: "
                                         "a V-JEPA 2 eval config's `mem_per_gpu`)")
    p.add_argument("--constraint")
    p.add_argument("--job-name", help="default: the config file's stem")
    p.add_argument("--output-dir", help="folder for the job's output files (default: sbatch's working directory)")
    p.add_argument("--signal", choices=SIGNALS, default="USR2",
                   help="preemption signal SLURM sends before the time limit (USR1/USR2: checkpoint and requeue; "
                        "TERM: checkpoint and stop); default USR2 (NCCL may catch USR1)")
    p.add_argument("--signal-lead-s", type=int, default=120,
                   help="seconds before the time limit to send it: one step + one checkpoint + SLURM's up to "
                        "60 s early delivery (default 120)")
    p.add_argument("--no-requeue", dest="requeue", action="store_false",
                   help="never requeue the job (pair it with --signal TERM)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="export this in the job, e.g. NCCL_SOCKET_IFNAME=eth0 (repeatable; the value is literal)")
    p.add_argument("--mode", choices=MODES, default="srun",
                   help="srun: one task per GPU (default); deepspeed: one task per node running DeepSpeed's launcher")


def options_from_args(args) -> SlurmOptions:
    """The options an argparse namespace of add_job_arguments() gives, the layout read from the config."""
    from jepa_scale.config import load_config

    cfg = load_config(args.config, args.overrides)  # fails here, not in the queue, on a bad config or override
    kind = job_kind(cfg)
    # a V-JEPA 2 config's memory per GPU, unless --mem is given or the job asks for no GPU (sbatch then refuses it)
    no_gpu = args.gpus_per_node == 0 or args.gpus_per_task == 0
    mem_per_gpu = args.mem_per_gpu or (None if args.mem or no_gpu else getattr(cfg, "mem_per_gpu", "") or None)
    env = []
    for item in args.env:
        if "=" not in item:
            raise ValueError(f"--env {item}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        env.append((key, value))
    opts = SlurmOptions(
        config=args.config, nodes=cfg.nodes if args.nodes is None else args.nodes,
        tasks_per_node=cfg.tasks_per_node if args.tasks_per_node is None else args.tasks_per_node,
        mode=args.mode, partition=args.partition, account=args.account, qos=args.qos, time=args.time,
        gpus_per_node=args.gpus_per_node, gpus_per_task=args.gpus_per_task,
        cpus_per_task=kind.cpus if args.cpus_per_task is None else args.cpus_per_task, mem=args.mem,
        mem_per_gpu=mem_per_gpu, constraint=args.constraint,
        job_name=args.job_name or Path(args.config).stem, output_dir=args.output_dir, signal=args.signal,
        signal_lead_s=args.signal_lead_s, requeue=args.requeue, env=env, overrides=list(args.overrides),
        portable=getattr(args, "portable", False), entry=kind.entry)
    opts.check()
    return opts


# -- the script

def _q(s) -> str:
    r"""One shell word meaning `s` literally; double quotes (with \ \" \$ \` escaped) when it holds a `$` or a
    backquote, which shellcheck would otherwise take for an expansion meant to happen."""
    s = str(s)
    if re.search(r"[$`]", s):
        return '"' + re.sub(r'([\\"$`])', r"\\\1", s) + '"'
    return shlex.quote(s)


def _inside(path: Path, root: Path) -> str | None:
    """`path` relative to `root` when it lies inside it, else None."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return None


def _config_arg(config: str, repo: Path) -> str:
    """The --config word of the script: a file under the repository as "$REPO/...", another file absolute, a name
    (not a file here) as given, for the config loader to resolve."""
    path = Path(config)
    if not path.is_file():
        return _q(config)
    rel = _inside(path, repo)
    return f'"$REPO"/{_q(rel)}' if rel is not None else _q(path.resolve())


def sbatch_lines(o: SlurmOptions) -> list[str]:
    per_node_task = o.mode == "deepspeed"
    lines = [("job-name", o.job_name), ("nodes", o.nodes),
             ("ntasks-per-node", 1 if per_node_task else o.tasks_per_node),
             ("cpus-per-task", o.cpus_per_task * (o.tasks_per_node if per_node_task else 1))]
    if o.gpus_per_task is not None:
        lines.append(("gpus-per-task", o.gpus_per_task))
    elif (o.gpus_per_node if o.gpus_per_node is not None else o.tasks_per_node) > 0:
        lines.append(("gpus-per-node", o.gpus_per_node if o.gpus_per_node is not None else o.tasks_per_node))
    for key in ("mem", "mem_per_gpu", "time", "partition", "account", "qos", "constraint"):
        if getattr(o, key) is not None:
            lines.append((key.replace("_", "-"), getattr(o, key)))
    out = "%x-%j.out"
    if o.output_dir is not None:
        folder = o.output_dir if o.portable else os.path.abspath(o.output_dir)
        out = f"{folder.rstrip('/')}/{out}"
    lines += [("output", out), ("signal", f"{o.signal}@{o.signal_lead_s}"),
              ("requeue" if o.requeue else "no-requeue", None), ("open-mode", "append")]
    return [f"#SBATCH --{k}" + ("" if v is None else f"={v}") for k, v in lines]


def generator_command(o: SlurmOptions, repo: Path) -> str:
    """The launch/slurm.py arguments that give this script again (without --out)."""
    config = Path(o.config)
    rel = _inside(config, repo) if config.is_file() else None
    args = ["--config", rel if rel is not None else o.config, "--mode", o.mode, "--nodes", str(o.nodes),
            "--tasks-per-node", str(o.tasks_per_node), "--cpus-per-task", str(o.cpus_per_task)]
    if o.gpus_per_task is not None:
        args += ["--gpus-per-task", str(o.gpus_per_task)]
    elif o.gpus_per_node is not None:
        args += ["--gpus-per-node", str(o.gpus_per_node)]
    for key in ("partition", "account", "qos", "time", "mem", "mem_per_gpu", "constraint", "job_name", "output_dir"):
        if getattr(o, key) is not None:
            args += ["--" + key.replace("_", "-"), str(getattr(o, key))]
    args += ["--signal", o.signal, "--signal-lead-s", str(o.signal_lead_s)]
    if not o.requeue:
        args.append("--no-requeue")
    for k, v in o.env:
        args += ["--env", f"{k}={v}"]
    for s in o.overrides:
        args += ["--set", s]
    if o.portable:
        args.append("--portable")
    return "python launch/slurm.py " + shlex.join(args)


_REPO_PORTABLE = r'''# The repository: $JEPA_SCALE_ROOT, else the folder above where this script was submitted from (sbatch runs a
# copy of it in its spool folder, so $0 does not tell; scontrol does), else the folder above $0.
repo_of() { [ -n "$1" ] && [ -f "$1/launch/pretrain.py" ] && (cd "$1" && pwd); }
submitted=
if [ -n "${SLURM_JOB_ID:-}" ]; then
  submitted=$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null | sed -n 's/^ *Command=//p' | head -n 1)
  if [ $# -gt 0 ]; then submitted=${submitted% "$*"}; fi
fi
REPO=$(repo_of "${JEPA_SCALE_ROOT:-}" || repo_of "$(dirname "${submitted:-.}")/@UP@" \
       || repo_of "$(dirname "$0")/@UP@") || {
  echo "jepa_scale: cannot find the repository (no launch/pretrain.py): set JEPA_SCALE_ROOT" >&2; exit 2; }
PYTHON=${PYTHON:-python}
'''

_WAIT = r'''# srun runs in the background so that this shell can run its trap while it waits: a USR1/USR2 sent to the
# batch shell (scancel -b/-f --signal, or --signal=B:...) is forwarded to srun, which forwards it to the tasks.
# shellcheck disable=SC2317  # called by the traps
forward() { trapped=1; [ -z "${step:-}" ] || kill -s "$1" "$step" 2>/dev/null || true; }
trap 'forward USR1' USR1
trap 'forward USR2' USR2
@SRUN@ &
step=$!
while :; do
  trapped=0 rc=0
  wait "$step" || rc=$?
  # a trapped signal cuts the wait short (status > 128): wait again for srun's own status
  if [ "$trapped" = 0 ] || [ "$rc" -le 128 ]; then break; fi
done
echo "jepa_scale: job $SLURM_JOB_ID restart $RESTART: srun exited $rc ($(date -Is))"
exit "$rc"
'''

_NODE_DEEPSPEED = r'''# Run on every node by srun (one task per node). SLURM signals only the task's own process (this node shell), not
# what it starts; DeepSpeed's runner and launch.py have no USR1/USR2 handler (the default action would kill them and
# their ranks), and with --no_ssh the runner has no TERM handler either. So: the launcher starts with USR1/USR2
# ignored (kept through exec and by its children; each rank installs its own handler over it), and this shell
# forwards USR1, USR2 and TERM to the ranks (the children of launch.py, itself the runner's child). The hostfile is
# written on the node itself (no shared folder needed).
read -r -d '' NODE_CMD <<'EOF' || true
set -euo pipefail
python=$1; shift
hostfile=${TMPDIR:-/tmp}/jepa_scale-hostfile.$SLURM_JOB_ID.$SLURM_NODEID
printf '%s\n' "$JEPA_HOSTFILE" > "$hostfile"
(trap '' USR1 USR2; exec "$python" -u -m deepspeed.launcher.runner --hostfile "$hostfile" --no_ssh \
  --node_rank="$SLURM_NODEID" --master_addr="$MASTER_ADDR" --master_port="$MASTER_PORT" "$@") &
launcher=$!
# shellcheck disable=SC2317  # called by forward
ranks() {
  local p
  for p in $(ps -o pid= --ppid "$launcher"); do ps -o pid= --ppid "$p"; done | tr -d ' '
}
# shellcheck disable=SC2317  # called by the traps
forward() {
  trapped=1
  local pids=()
  mapfile -t pids < <(ranks)
  echo "jepa_scale: node $SLURM_NODEID: SIG$1 to the ranks (pids ${pids[*]})" >&2
  [ "${#pids[@]}" -eq 0 ] || kill -s "$1" "${pids[@]}" 2>/dev/null || true
}
trap 'forward USR1' USR1
trap 'forward USR2' USR2
trap 'forward TERM' TERM
while :; do
  trapped=0 rc=0
  wait "$launcher" || rc=$?
  if [ "$trapped" = 0 ] || [ "$rc" -le 128 ]; then break; fi
done
exit "$rc"
EOF
'''


def _header(o: SlurmOptions, repo: Path) -> list[str]:
    """The shebang, what the script is and how to use it, and the #SBATCH lines."""
    ranks = o.nodes * o.tasks_per_node
    layout = ("one task per rank" if o.mode == "srun" else
              "one task per node, DeepSpeed's launcher starts its ranks")
    return [
        "#!/bin/bash",
        f"# V-JEPA {o.entry.what} on SLURM: {o.nodes} node(s) x {o.tasks_per_node} = {ranks} rank(s), {o.mode} mode "
        f"({layout}).",
        f"# Generated by: {generator_command(o, repo)}",
        f"# Submit: sbatch THIS_SCRIPT [more {o.entry.script} arguments, e.g. --set {o.entry.example}]",
        f"# Preemption: SLURM sends SIG{o.signal} {o.signal_lead_s} s (up to 60 s more) before the time limit "
        "(by hand:",
        f"# scancel --signal={o.signal} JOBID); the ranks checkpoint at the next log flush; on USR1/USR2 rank 0 "
        "requeues",
        f"# the job, which resumes from that checkpoint (every start passes {o.entry.resume}); on TERM "
        "they stop.",
        *sbatch_lines(o),
        "set -euo pipefail",
        ': "${SLURM_JOB_ID:?submit this script with sbatch}"',
        "",
    ]


def render(o: SlurmOptions, repo: Path = ROOT, python: str | None = None) -> str:
    """The sbatch script for options `o`. Not portable: this repository's absolute path and `python` (default
    this interpreter) are written in; portable (`o.portable`): found when the job starts (the script must then lie
    inside the repository), python from $PYTHON or PATH, so the text is the same on every machine."""
    o.check()
    repo = Path(repo).resolve()
    head = _header(o, repo)
    if o.portable:
        body = [_REPO_PORTABLE.replace("@UP@", "..")]  # the script lies in launch/ (write_script checks)
    else:
        body = [f"REPO={_q(repo)}", f"PYTHON={_q(python or sys.executable)}", ""]
    body.append("# Relative paths in the config and in --set resolve against the repository, as with "
                f"`python {o.entry.script}` run there.")
    body += ['cd "$REPO"', 'export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"', ""]
    body += [
        "# Rendezvous: the first host; a port from the job id and the restart count (a requeued job must not reuse",
        "# the previous start's port, whose sockets may still be in TIME_WAIT), outside Linux's ephemeral ports.",
        'RESTART=${SLURM_RESTART_COUNT:-0}',
        'mapfile -t HOSTS < <(scontrol show hostnames "$SLURM_JOB_NODELIST")',
        '[ "${#HOSTS[@]}" -gt 0 ] || {',
        '  echo "jepa_scale: scontrol show hostnames \'$SLURM_JOB_NODELIST\' gave no host" >&2; exit 1; }',
        'export MASTER_ADDR=${HOSTS[0]}',
        'export MASTER_PORT=$((10000 + (SLURM_JOB_ID % 2000) * 10 + RESTART % 10))',
        "# a launcher's variables from the submitting shell (sbatch exports its environment) would override SLURM's",
        "unset RANK WORLD_SIZE LOCAL_RANK LOCAL_WORLD_SIZE",
        "# srun of SLURM 22.05-23.02 does not inherit --cpus-per-task from the job",
        'export SRUN_CPUS_PER_TASK=${SLURM_CPUS_PER_TASK:-1}',
        f"export OMP_NUM_THREADS={o.cpus_per_task}",
    ]
    if o.mode == "deepspeed":
        body.append(f"export LOCAL_WORLD_SIZE={o.tasks_per_node}  # ranks per node (DeepSpeed sets only LOCAL_SIZE)")
    if o.env:
        body.append("# --env")
        body += [f"export {k}={_q(v)}" for k, v in o.env]
    body += [
        "",
        "echo \"jepa_scale: job $SLURM_JOB_ID restart $RESTART on ${#HOSTS[@]} node(s) ${HOSTS[*]}, "
        "master $MASTER_ADDR:$MASTER_PORT ($(date -Is))\"",
        "",
        "ARGS=(",
        f"  --config {_config_arg(o.config, repo)}",
        *[f"  --set {_q(s)}" for s in o.overrides],
        ")",
        "# last: a requeued or restarted job resumes from the newest complete checkpoint (a first start has none)",
        f'ARGS+=("$@" --set {o.entry.resume})',
        "",
    ]
    if o.mode == "srun":
        srun = f'srun --kill-on-bad-exit=1 "$PYTHON" -u "$REPO/{o.entry.script}" "${{ARGS[@]}}"'
    else:
        body += [
            f"# hostfile: one `host slots={o.tasks_per_node}` line per node, in SLURM's order (= node rank order)",
            "JEPA_HOSTFILE=$(for h in \"${HOSTS[@]}\"; do echo \"$h slots=" + str(o.tasks_per_node) + "\"; done)",
            "export JEPA_HOSTFILE",
            'echo "jepa_scale: hostfile:"; echo "$JEPA_HOSTFILE"',
            "",
            _NODE_DEEPSPEED,
        ]
        srun = ('srun --kill-on-bad-exit=1 --ntasks-per-node=1 bash -c "$NODE_CMD" jepa-node "$PYTHON" '
                f'"$REPO/{o.entry.script}" "${{ARGS[@]}}"')
    body.append(_WAIT.replace("@SRUN@", srun))
    return "\n".join(head + body).rstrip("\n") + "\n"


def write_script(o: SlurmOptions, out: str | Path, repo: Path = ROOT, python: str | None = None) -> Path:
    out = Path(out)
    if o.portable and _inside(out.parent, repo) != "launch":
        raise ValueError(f"--portable: the script finds the repository from its own place, so it must be written "
                         f"into {Path(repo) / 'launch'}, not {out.parent}")
    if o.output_dir is not None and not o.portable:
        Path(o.output_dir).mkdir(parents=True, exist_ok=True)  # sbatch does not create it
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(o, repo, python))
    out.chmod(0o755)
    return out


def main(argv=None) -> int:
    from jepa_scale.launch.cli import run_main

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_job_arguments(p)
    p.add_argument("--out", required=True, help="where to write the sbatch script (- for stdout)")
    p.add_argument("--portable", action="store_true",
                   help="machine-independent script for the repository's launch/ folder: finds the repository when "
                        "it runs, python from $PYTHON or PATH (default: this repository's path and this python)")
    args = p.parse_args(argv)
    return run_main(_generate, args, option_errors="launch/slurm.py")


def _generate(args) -> int:
    opts = options_from_args(args)
    if not opts.requeue and opts.signal != "TERM":
        print(f"launch/slurm.py: note: with --no-requeue SLURM refuses rank 0's `scontrol requeue` after the "
              f"SIG{opts.signal} checkpoint (the job then ends, failed, with exit code 144); --signal TERM "
              f"checkpoints and stops", file=sys.stderr)
    if args.out == "-":
        sys.stdout.write(render(opts))
    else:
        path = write_script(opts, args.out)
        print(f"wrote {path}: {opts.nodes} node(s) x {opts.tasks_per_node}, {opts.mode} mode; "
              f"submit with: sbatch {path}")
    return 0
