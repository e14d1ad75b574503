"""Preemption without SLURM: a signal to the training processes, a checkpoint at the step all ranks agree on, the
requeue exit code, and a resume that ends with the losses of an uninterrupted run."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from jepa_scale.launch.local import local_command
from jepa_scale.launch.preemption import REQUEUE_EXIT, TERMINATED_EXIT, PreemptionFlag
from tests.conftest import ROOT, log_rows, tiny_raw

pytestmark = pytest.mark.slow
STEPS = 40




@pytest.fixture(scope="module")
def job(video_csv, tmp_path_factory):
    """job(folder, nproc) -> argv of a tiny run that logs every step and checkpoints only at the end."""
    tmp = tmp_path_factory.mktemp("preemption")
    raw = tiny_raw(str(video_csv), str(tmp / "unused"), optimization={"max_steps": STEPS, "ipe": 8, "epochs": 6},
                   logging={"log_freq": 1, "checkpoint_freq": 1000, "tensorboard": False})
    cfg = tmp / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(raw))

    def argv(folder: Path, nproc: int, *sets: str):
        sets = (f"logging.folder={folder}", "meta.load_checkpoint=true", f"data.batch_size={4 // nproc}", *sets)
        return local_command(["launch/pretrain.py", "--config", str(cfg), *[x for s in sets for x in ("--set", s)]],
                             nproc)
    return argv


@pytest.fixture(scope="module")
def whole(job, tmp_path_factory):
    """The uninterrupted runs' losses, on 1 process and on 2 DDP ranks: what every preempted run must end with."""
    out = {}
    for nproc, sets in ((1, ()), (2, ("distributed.engine=ddp",))):
        folder = tmp_path_factory.mktemp(f"whole{nproc}")
        r = run(job(folder, nproc, *sets))
        assert r.returncode == 0, r.stderr[-3000:]
        out[nproc] = losses(folder)
    return out


def run(argv, timeout=300) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    return r


def start(argv):
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"), start_new_session=True)


def wait_for_rows(proc, folder: Path, n: int, timeout: float = 240):
    deadline = time.time() + timeout
    while len(log_rows(folder)) < n:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "the run did not start training in time"
        time.sleep(0.1)


def workers(proc) -> list[int]:
    return [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]


def losses(folder: Path) -> list[float]:
    got = log_rows(folder)
    assert [int(r["itr"]) for r in got] == list(range(STEPS))
    return [float(r["loss"]) for r in got]


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGTERM], ids=["usr1", "term"])
def test_a_signalled_process_checkpoints_exits_with_the_convention_and_resumes(job, whole, tmp_path, signum):
    cut = tmp_path / "cut"
    proc = start(job(cut, 1))
    wait_for_rows(proc, cut, 5)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == (REQUEUE_EXIT if signum == signal.SIGUSR1 else TERMINATED_EXIT), err[-2000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"preempted: {signal.Signals(signum).name} at step ") and "checkpoint in" in line
    step = int(line.split(" at step ")[1].split(":")[0])
    assert (cut / "checkpoints" / f"step-{step:08d}" / "MANIFEST.json").is_file() and step < STEPS
    assert run(job(cut, 1)).returncode == 0  # the same command line resumes
    assert losses(cut) == pytest.approx(whole[1], rel=1e-6)


def test_one_signalled_rank_stops_every_rank_at_the_same_step(job, whole, tmp_path):
    cut = tmp_path / "cut"
    proc = start(job(cut, 2, "distributed.engine=ddp"))
    wait_for_rows(proc, cut, 5)
    os.kill(workers(proc)[1], signal.SIGUSR1)  # as SLURM would signal a task; the other rank hears nothing
    _, err = proc.communicate(timeout=120)
    stops = {line.split(" at step ")[1].split(":")[0] for line in err.splitlines() if "preempted: SIGUSR1" in line}
    assert len(stops) == 1 and err.count("preempted: SIGUSR1") == 2, err[-3000:]  # both ranks, one step
    assert f"exitcode: {REQUEUE_EXIT}" in err  # torchrun's report of its workers
    assert run(job(cut, 2, "distributed.engine=ddp")).returncode == 0
    assert losses(cut) == pytest.approx(whole[2], rel=1e-5)


def test_the_flag_ignores_signals_in_forked_workers_and_restores_handlers():
    before = signal.getsignal(signal.SIGUSR2)
    flag = PreemptionFlag().install()
    pid = os.fork()
    if pid == 0:  # a loader worker: the signal must not count there
        flag._handle(signal.SIGUSR2, None)
        os._exit(3 if flag.signum else 0)
    assert os.waitpid(pid, 0)[1] >> 8 == 0
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGUSR2)
    time.sleep(0.1)
    assert flag.signum == signal.SIGUSR2  # a requeue signal wins over SIGTERM
    flag.uninstall()
    assert signal.getsignal(signal.SIGUSR2) == before


def test_a_hung_rank_ends_the_others_within_the_collective_timeout_naming_it(job, tmp_path):
    from jepa_scale.launch.cli import COLLECTIVE_TIMEOUT_EXIT

    proc = start(job(tmp_path / "hung", 2, "distributed.engine=ddp", "distributed.collective_timeout_s=5"))
    wait_for_rows(proc, tmp_path / "hung", 3)
    rank0, rank1 = workers(proc)
    os.kill(rank1, signal.SIGSTOP)  # alive but silent: no socket closes, only a timeout can tell
    t0 = time.time()
    try:
        while Path(f"/proc/{rank0}").exists() and time.time() - t0 < 120:  # rank 0 gives up on its own
            time.sleep(0.2)
        elapsed = time.time() - t0
        os.kill(rank1, signal.SIGKILL)  # else torchrun waits 30 s for the stopped rank
        _, err = proc.communicate(timeout=150)
    finally:
        for pid in (rank1, proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    line = next(x for x in err.splitlines() if x.startswith("collective failed on rank 0"))
    assert "another rank stopped or hangs (distributed.collective_timeout_s); rank 1 does not answer (last seen at " \
           "step" in line
    assert f"exitcode: {COLLECTIVE_TIMEOUT_EXIT}" in err and elapsed < 60  # timeout 5 s + the 5 s roll call


def test_a_killed_rank_ends_the_others_with_a_message(job, tmp_path):
    proc = start(job(tmp_path / "killed", 2, "distributed.engine=ddp", "distributed.collective_timeout_s=30"))
    wait_for_rows(proc, tmp_path / "killed", 3)
    t0 = time.time()
    os.kill(workers(proc)[1], signal.SIGKILL)
    _, err = proc.communicate(timeout=150)
    # rank 0 sees the closed connection at its next collective, well before the timeout (torchrun reports the
    # first failure, rank 1's SIGKILL)
    line = next((x for x in err.splitlines() if x.startswith("collective failed on rank 0")), None)
    assert line is not None, err[-3000:]
    assert "another rank stopped or hangs (distributed.collective_timeout_s); rank 1 does not answer" in line
    assert proc.returncode != 0 and time.time() - t0 < 30
