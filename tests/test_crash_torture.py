"""kill -9 a rank at random moments, again and again, resuming each time with the same command line: the run must
end with the losses of an uninterrupted run, no temporaries, and no more checkpoints than retention keeps.

Checkpoints are written every step, so many kills land inside a checkpoint write. JEPA_TORTURE_KILLS sets the
number of kills per engine (default 2: the suite's time budget)."""
import csv
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from jepa_scale.launch.local import local_command
from tests.conftest import ROOT, tiny_raw

pytestmark = pytest.mark.slow
KILLS = int(os.environ.get("JEPA_TORTURE_KILLS", "2"))
# engine -> (processes, settings, steps per kill: each attempt trains that many steps, about, before its kill;
# one process steps fastest)
ENGINES = {"single": (1, [], 16), "fsdp": (2, ["distributed.engine=fsdp"], 8),
           "zero3": (2, ["distributed.engine=deepspeed", "distributed.zero_stage=3"], 8)}


def command(cfg_file: Path, nproc: int, sets: list[str]) -> list[str]:
    args = ["launch/pretrain.py", "--config", str(cfg_file), "--set", "meta.load_checkpoint=true"]
    for s in sets:
        args += ["--set", s]
    return local_command(args, nproc)


def start(cmd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def ranks(proc, nproc: int) -> list[int]:
    """The training processes: the launched one, or torchrun's workers."""
    if nproc == 1:
        return [proc.pid]
    try:
        return [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    except OSError:
        return []


def checkpoint_written_since(root: Path, t: float) -> bool:
    latest = root / "latest"
    return latest.is_file() and latest.stat().st_mtime > t


def kill_while_training(proc, nproc, root: Path, rng: random.Random, timeout: float = 240) -> bool:
    """Wait until this attempt has written a checkpoint, then kill -9 one rank a random moment later; False
    when the run ended first."""
    t0, deadline = time.time(), time.time() + timeout
    while not checkpoint_written_since(root, t0):
        if proc.poll() is not None:
            return False
        assert time.time() < deadline, "no checkpoint within the timeout"
        time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 0.6))
    victims = ranks(proc, nproc)
    if proc.poll() is not None or not victims:
        return False
    os.kill(rng.choice(victims), signal.SIGKILL)
    try:
        proc.wait(timeout=120)  # torchrun ends the other ranks when one dies
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return True


def finish(proc, timeout: float = 300):
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 0, err.decode()[-3000:]


def losses(folder: Path, steps: int) -> list[float]:
    with open(folder / "jepa_r0.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["itr"]) for r in rows] == list(range(steps))
    return [float(r["loss"]) for r in rows]


@pytest.mark.parametrize("engine", list(ENGINES))
def test_killed_runs_resume_to_the_uninterrupted_losses(engine, video_csv, tmp_path):
    if engine == "zero3":
        pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (make test installs it)")
    nproc, sets, per_kill = ENGINES[engine]
    steps = max(24, per_kill * (KILLS + 1))
    raw = tiny_raw(str(video_csv), str(tmp_path / "unused"), data={"batch_size": 4 // nproc},
                   optimization={"max_steps": steps, "ipe": 8, "epochs": steps // 8 + 1},
                   logging={"checkpoint_freq": 1, "keep_latest": 2, "tensorboard": False, "log_freq": 1})
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    whole, tortured = tmp_path / "whole", tmp_path / "tortured"
    finish(start(command(cfg_file, nproc, sets + [f"logging.folder={whole}"])))
    rng, kills = random.Random(f"{engine}-{KILLS}"), 0
    cmd = command(cfg_file, nproc, sets + [f"logging.folder={tortured}"])
    for _ in range(3 * KILLS):
        if kills == KILLS:
            break
        proc = start(cmd)
        if kill_while_training(proc, nproc, tortured / "checkpoints", rng):
            kills += 1
            folders = sorted((tortured / "checkpoints").glob("step-*"))
            assert len(folders) <= 2 + 1, folders  # retention, plus the save a kill interrupted
        else:
            finish(proc)
            break
    assert kills == KILLS, f"only {kills} kills landed before the run finished"
    finish(start(cmd))  # the last attempt runs to the end
    assert losses(tortured, steps) == pytest.approx(losses(whole, steps), rel=1e-5)
    left = [p for p in tortured.rglob("*") if ".tmp" in p.name]
    assert not left, left
    assert sorted(p.name for p in (tortured / "checkpoints").glob("step-*")) == [f"step-{s:08d}"
                                                                               for s in (steps - 1, steps)]
