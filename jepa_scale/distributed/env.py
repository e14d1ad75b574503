"""Rank, local rank and world size from whichever launcher started us: python, torchrun, deepspeed or srun."""
from __future__ import annotations

import datetime
import os
import socket
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    launcher: str = "python"  # python | torchrun | deepspeed | slurm


def detect(environ: dict | None = None, local_rank_arg: int | None = None) -> DistEnv:
    e = os.environ if environ is None else environ
    if "RANK" in e and "WORLD_SIZE" in e:  # torchrun and the deepspeed launcher export these
        # deepspeed's launch.py also exports CROSS_RANK (its node rank; torchrun does not), which still tells the
        # two apart under `deepspeed --no_local_rank`, where no --local_rank argument comes
        launcher = "deepspeed" if local_rank_arg is not None or "CROSS_RANK" in e else "torchrun"
        local = int(e.get("LOCAL_RANK", local_rank_arg if local_rank_arg is not None else 0))
        return DistEnv(int(e["RANK"]), local, int(e["WORLD_SIZE"]), launcher)
    if int(e.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in e:
        return DistEnv(int(e["SLURM_PROCID"]), int(e.get("SLURM_LOCALID", 0)), int(e["SLURM_NTASKS"]), "slurm")
    return DistEnv()


def init_process_group(env: DistEnv, group_of_one: bool = False, timeout_s: float = 1800,
                       deepspeed: bool = False) -> torch.device:
    """Join the process group (NCCL on GPUs, gloo on CPU) when there are several ranks, or for one process when
    `group_of_one` (a sharded engine on a single GPU, e.g. ZeRO-Offload); returns this rank's device. A collective
    that waits `timeout_s` (a rank died) raises instead of hanging."""
    cuda = torch.cuda.is_available()
    # modulo: a launcher that binds one GPU per task (srun --gpus-per-task) shows each rank only its own
    device = torch.device("cuda", env.local_rank % torch.cuda.device_count()) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not cuda and deepspeed:  # only the DeepSpeed engine loads DeepSpeed (its import costs seconds)
        _no_deepspeed_shm_op()
    if (env.world_size > 1 or group_of_one) and not dist.is_initialized():
        # srun (the launch script exports MASTER_ADDR/PORT) and a plain start set none of these; DeepSpeed reads them
        for key, value in (("RANK", env.rank), ("WORLD_SIZE", env.world_size), ("LOCAL_RANK", env.local_rank)):
            os.environ.setdefault(key, str(value))
        # a plain `python` start of one process has no rendezvous: a free local port serves
        init = "env://" if "MASTER_ADDR" in os.environ else f"tcp://127.0.0.1:{_free_port()}"
        dist.init_process_group("nccl" if cuda else "gloo", init_method=init, rank=env.rank,
                                world_size=env.world_size, timeout=datetime.timedelta(seconds=timeout_s))
    return device


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _no_deepspeed_shm_op():
    """DeepSpeed's CPU accelerator JIT-compiles a shared-memory all-reduce (~60 s) at start-up; gloo does the job
    on CPU, so mark the op unavailable when DeepSpeed is installed."""
    try:
        import deepspeed.ops
    except ImportError:
        return
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def local_processes() -> int:
    """Processes of this job on this machine (they share its cores and memory)."""
    e = os.environ  # torchrun's name, DeepSpeed's, SLURM's (which may read "2(x3)": 2 tasks on each of 3 nodes)
    value = e.get("LOCAL_WORLD_SIZE", e.get("LOCAL_SIZE", e.get("SLURM_NTASKS_PER_NODE", "1")))
    return int(value.split("(")[0].split(",")[0] or 1)


# how gloo and NCCL say that a peer is gone: waited too long, or its sockets closed (it died)
_PEER_GONE = ("timed out", "connection closed", "connection reset", "broken pipe", "watchdog")


def collective_failed(e: BaseException) -> bool:
    return isinstance(e, RuntimeError) and dist.is_initialized() and any(w in str(e).lower() for w in _PEER_GONE)


def _store():
    from torch.distributed.distributed_c10d import _get_default_store

    return _get_default_store()


def post_step(rank: int, step: int):
    """Where this rank is, in the rendezvous store (at log flushes): after a timeout the others can say who
    stopped."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        _store().set(f"jepa_scale/step/{rank}", str(step))


def missing_ranks(wait_s: float = 5) -> str:
    """The ranks that do not answer, after a collective timed out: every survivor marks itself in the rendezvous
    store; who has not after `wait_s` stopped or hangs. '' when it cannot tell (no store, e.g. it lived on the
    rank that stopped)."""
    if not dist.is_initialized():
        return ""
    try:
        store, world = _store(), dist.get_world_size()
        store.set_timeout(datetime.timedelta(seconds=wait_s))
        store.set(f"jepa_scale/timed_out/{dist.get_rank()}", "1")
        deadline = time.monotonic() + wait_s
        while True:
            silent = [r for r in range(world) if not store.check([f"jepa_scale/timed_out/{r}"])]
            if not silent or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        seen = {r: store.get(f"jepa_scale/step/{r}").decode() for r in silent if store.check([f"jepa_scale/step/{r}"])}
    except (RuntimeError, ValueError):  # the store is gone
        return ""
    return ", ".join(f"rank {r} does not answer" + (f" (last seen at step {seen[r]})" if r in seen else "")
                     for r in silent)
