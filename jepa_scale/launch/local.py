"""Processes on this machine: one plain Python process, or a torchrun group (gloo on CPU, NCCL on GPUs)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def torchrun_executable() -> str | None:
    """The torchrun of this Python's environment (a venv's bin), else the one on PATH."""
    return shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")


def local_command(script_args: list[str], nproc: int = 1) -> list[str]:
    """argv that runs `script_args` (a script path and its arguments) in `nproc` processes on this machine."""
    if nproc == 1:
        return [sys.executable, *script_args]
    torchrun = torchrun_executable()
    if torchrun is None:
        raise FileNotFoundError(f"torchrun not found next to {sys.executable} nor on PATH: install torch there")
    return [torchrun, "--standalone", f"--nproc_per_node={nproc}", *script_args]


def run_local(script_args: list[str], nproc: int = 1, cwd=None, env: dict | None = None, timeout: float = 600,
              threads: int | None = None) -> subprocess.CompletedProcess:
    """Run and wait (output captured as text). threads: OMP_NUM_THREADS per process (default: the cores shared
    out between the processes), so that processes do not oversubscribe the cores."""
    threads = threads or max(1, (os.cpu_count() or 1) // nproc)
    env = dict(os.environ if env is None else env, OMP_NUM_THREADS=str(threads))
    return subprocess.run(local_command(script_args, nproc), capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)
