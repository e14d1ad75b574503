"""The SLURM launch layer: the sbatch generator (launch/slurm.py), submitit submission (launch/submit.py), and both
on a real one-node SLURM (tests/slurm/slurm-local.sh) with a preemption signal, a requeue and a resume that ends
with the losses of an uninterrupted run."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from jepa_scale.launch import slurm as gen
from jepa_scale.launch.submit import make_executor, master_port, parse_time_min
from tests.conftest import ROOT, log_rows

SLURM_LOCAL = ROOT / "tests" / "slurm" / "slurm-local.sh"
VITH = ROOT / "launch" / "slurm_vith.sh"
VITH_ARGS = ["--config", "configs/pretrain/vith16_384.yaml", "--portable"]  # how launch/slurm_vith.sh is made


def generate(capsys, *args: str) -> str:
    assert gen.main([*args, "--out", "-"]) == 0
    return capsys.readouterr().out


def opts(**kw) -> gen.SlurmOptions:
    base = dict(config=str(ROOT / "configs/pretrain/tiny_cpu.yaml"), tasks_per_node=2, gpus_per_node=0)
    return gen.SlurmOptions(**{**base, **kw})


# -- the generator

def test_the_committed_vith_script_is_what_the_generator_writes_today(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    text = generate(capsys, *VITH_ARGS)
    assert VITH.read_text() == text, f"regenerate it: python launch/slurm.py {' '.join(VITH_ARGS)} --out {VITH}"
    assert str(ROOT) not in text and sys.executable not in text  # nothing of this machine


def test_vith_layout_comes_from_the_official_config(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    text = VITH.read_text()
    for line in ["#SBATCH --nodes=30", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --cpus-per-task=12", "#SBATCH --signal=USR2@120", "#SBATCH --requeue",
                 "#SBATCH --open-mode=append", "#SBATCH --job-name=vith16_384"]:
        assert line in text.splitlines()
    assert 'srun --kill-on-bad-exit=1 "$PYTHON" -u "$REPO/launch/pretrain.py" "${ARGS[@]}"' in text
    assert 'ARGS+=("$@" --set meta.load_checkpoint=true)' in text
    assert '--config "$REPO"/configs/pretrain/vith16_384.yaml' in text
    ds = generate(capsys, *VITH_ARGS, "--mode", "deepspeed")
    for line in ["#SBATCH --nodes=30", "#SBATCH --ntasks-per-node=1", "#SBATCH --cpus-per-task=96",
                 "#SBATCH --gpus-per-node=8"]:
        assert line in ds.splitlines()
    assert "slots=8" in ds and "--no_ssh" in ds and '--node_rank="$SLURM_NODEID"' in ds


def test_options_reach_the_script(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    text = generate(capsys, "--config", "configs/pretrain/tiny_cpu.yaml", "--partition", "gpu", "--account", "vis",
                    "--qos", "high", "--time", "2-00:00:00", "--gpus-per-task", "1", "--cpus-per-task", "6",
                    "--mem", "400G", "--constraint", "h100", "--job-name", "my job", "--output-dir", str(tmp_path),
                    "--signal", "USR1", "--signal-lead-s", "300", "--no-requeue", "--env", "NCCL_DEBUG=WARN",
                    "--env", "NCCL_SOCKET_IFNAME=^docker0,lo", "--set", "optimization.lr=1e-4",
                    "--set", "tasks_per_node=4", "--nodes", "2")
    lines = text.splitlines()
    for line in ["#SBATCH --partition=gpu", "#SBATCH --account=vis", "#SBATCH --qos=high",
                 "#SBATCH --time=2-00:00:00", "#SBATCH --gpus-per-task=1", "#SBATCH --cpus-per-task=6",
                 "#SBATCH --mem=400G", "#SBATCH --constraint=h100", "#SBATCH --signal=USR1@300",
                 "#SBATCH --no-requeue", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4",
                 f"#SBATCH --output={tmp_path}/%x-%j.out", "export NCCL_DEBUG=WARN",
                 "export NCCL_SOCKET_IFNAME='^docker0,lo'", "  --set optimization.lr=1e-4",
                 "export OMP_NUM_THREADS=6"]:
        assert line in lines, line
    assert "#SBATCH --gpus-per-node" not in text and "#SBATCH --requeue" not in text
    assert f"REPO={ROOT}" in lines and f"PYTHON={sys.executable}" in lines


@pytest.mark.parametrize("bad", [["--env", "1X=2"], ["--env", "MASTER_ADDR=h"], ["--env", "NOVALUE"],
                                 ["--signal-lead-s", "70000"], ["--set", "nokey"], ["--tasks-per-node", "0"]])
def test_bad_options_are_refused_with_one_line(capsys, monkeypatch, bad):
    monkeypatch.chdir(ROOT)
    assert gen.main(["--config", "configs/pretrain/tiny_cpu.yaml", "--out", "-", *bad]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_a_bad_config_is_a_config_error(capsys, tmp_path):
    assert gen.main(["--config", str(tmp_path / "none.yaml"), "--out", "-"]) == 2
    assert "config error" in capsys.readouterr().err


def test_portable_scripts_belong_in_the_repositorys_launch_folder(tmp_path):
    with pytest.raises(ValueError, match="launch"):
        gen.write_script(opts(portable=True), tmp_path / "job.sh")


def shellcheck() -> str | None:
    """shellcheck, installed from Debian's packages when missing (None when that is impossible here)."""
    if shutil.which("shellcheck") is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "shellcheck"],
                       capture_output=True, timeout=600, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if shutil.which("shellcheck") is None:  # the package lists may be missing
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600)
            subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "shellcheck"],
                           capture_output=True, timeout=600, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    return shutil.which("shellcheck")


@pytest.mark.parametrize("mode", gen.MODES)
@pytest.mark.parametrize("portable", [False, True], ids=["absolute", "portable"])
def test_scripts_pass_bash_n_and_shellcheck(tmp_path, mode, portable):
    o = opts(mode=mode, portable=portable, env=[("NCCL_DEBUG", "WARN"), ("A", "it's $HOME")],
             overrides=["data.datasets=[/a b/c.csv]", "optimization.lr=1e-4"], signal="TERM", time="10:00")
    path = tmp_path / "job.sh"
    path.write_text(gen.render(o))
    r = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    sc = shellcheck()
    if sc is None:
        pytest.skip("shellcheck is not installed and could not be installed (bash -n passed)")
    r = subprocess.run([sc, "--severity=info", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    node = re.search(r"^read -r -d '' NODE_CMD <<'EOF' \|\| true\n(.*?)^EOF$", path.read_text(),
                     re.DOTALL | re.MULTILINE)
    assert (node is not None) == (mode == "deepspeed")
    if node:  # the command each node runs, a string in the script
        body = tmp_path / "node.sh"
        body.write_text(node.group(1))
        r = subprocess.run([sc, "--severity=info", "--shell=bash", str(body)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout
    r = subprocess.run([sc, str(VITH)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


FAKE_BIN = {
    # scontrol show hostnames: expand "n[01-03]" style lists as SLURM does (enough for these tests)
    "scontrol": """
        #!/bin/bash
        [ "$1 $2" = "show hostnames" ] || { echo "fake scontrol: $*" >&2; exit 1; }
        python3 - "$3" <<'EOF'
        import re, sys
        for part in re.findall(r'[^,\\[]+(?:\\[[^\\]]*\\])?', sys.argv[1]):
            m = re.match(r'(.*)\\[(.*)\\]$', part)
            if not m:
                print(part); continue
            for r in m.group(2).split(','):
                a, _, b = r.partition('-')
                for i in range(int(a), int(b or a) + 1):
                    print(f"{m.group(1)}{i:0{len(a)}d}")
        EOF
        """,
    # srun: run the command once per node with that node's SLURM_NODEID (what the real srun does on each node)
    "srun": """
        #!/bin/bash
        while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do echo "srun option $1"; shift; done
        for ((i = 0; i < SLURM_JOB_NUM_NODES; i++)); do SLURM_NODEID=$i "$@"; done
        """,
    # python: say what it was asked to run, and the hostfile it got
    "fakepython": """
        #!/bin/bash
        echo "node $SLURM_NODEID python $* MASTER_ADDR=$MASTER_ADDR MASTER_PORT=$MASTER_PORT"
        while [ $# -gt 0 ]; do [ "$1" = --hostfile ] && sed "s/^/node $SLURM_NODEID hostfile: /" "$2"; shift; done
        """,
}


@pytest.fixture
def fake_slurm(tmp_path):
    """A folder with fake scontrol / srun / python, and the environment a 3-node job would have."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in FAKE_BIN.items():
        (bin_dir / name).write_text(textwrap.dedent(text).lstrip())
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_ID="4321", SLURM_RESTART_COUNT="2",
               SLURM_JOB_NODELIST="gpu[07-09]", SLURM_JOB_NUM_NODES="3", TMPDIR=str(tmp_path), RANK="5")
    return bin_dir, env


def test_deepspeed_mode_writes_the_hostfile_in_node_order_and_gives_each_node_its_rank(tmp_path, fake_slurm):
    bin_dir, env = fake_slurm
    path = tmp_path / "job.sh"
    path.write_text(gen.render(opts(mode="deepspeed", nodes=3, tasks_per_node=4), python=str(bin_dir / "fakepython")))
    r = subprocess.run(["bash", str(path), "--set", "extra=1"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    port = master_port(4321, 2)
    assert port == 10000 + 4321 % 2000 * 10 + 2
    for node in range(3):
        assert (f"node {node} python -u -m deepspeed.launcher.runner --hostfile {tmp_path}/jepa_scale-hostfile.4321."
                f"{node} --no_ssh --node_rank={node} --master_addr=gpu07 --master_port={port} "
                f"{ROOT}/launch/pretrain.py --config {ROOT}/configs/pretrain/tiny_cpu.yaml --set extra=1 "
                f"--set meta.load_checkpoint=true MASTER_ADDR=gpu07 MASTER_PORT={port}") in r.stdout
        assert [line.split(": ", 1)[1] for line in r.stdout.splitlines()
                if line.startswith(f"node {node} hostfile:")] == ["gpu07 slots=4", "gpu08 slots=4", "gpu09 slots=4"]
    assert "srun option --kill-on-bad-exit=1" in r.stdout and "srun option --ntasks-per-node=1" in r.stdout


def test_srun_mode_exports_the_rendezvous_and_clears_a_launchers_variables(tmp_path, fake_slurm):
    bin_dir, env = fake_slurm
    (bin_dir / "fakepython").write_text("#!/bin/bash\necho \"python $* RANK=${RANK-unset} "
                                        "MASTER=$MASTER_ADDR:$MASTER_PORT PYTHONPATH=$PYTHONPATH PWD=$PWD\"\n"
                                        "echo \"A=$A\"\n")
    path = tmp_path / "job.sh"
    o = opts(nodes=3, tasks_per_node=8, env=[("A", "it's $HOME `x`")], overrides=["meta.seed=$1"])
    path.write_text(gen.render(o, python=str(bin_dir / "fakepython")))
    r = subprocess.run(["bash", str(path)], capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "A=it's $HOME `x`" in r.stdout  # --env values are literal
    assert (f"python -u {ROOT}/launch/pretrain.py --config {ROOT}/configs/pretrain/tiny_cpu.yaml --set meta.seed=$1 "
            f"--set meta.load_checkpoint=true RANK=unset MASTER=gpu07:{master_port(4321, 2)} "
            f"PYTHONPATH={ROOT}") in r.stdout
    assert f"PWD={ROOT}" in r.stdout
    assert "srun option --kill-on-bad-exit=1" in r.stdout
    # the port differs after a requeue, and between jobs
    ports = {master_port(j, k) for j in (4321, 4322) for k in range(3)}
    assert len(ports) == 6 and all(10000 <= p < 32768 for p in ports)


def test_the_script_refuses_to_run_outside_a_job(tmp_path):
    path = tmp_path / "job.sh"
    path.write_text(gen.render(opts()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    r = subprocess.run(["bash", str(path)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode != 0 and "submit this script with sbatch" in r.stderr


# -- submitit

def test_time_formats():
    assert [parse_time_min(t) for t in ["90", "10:30", "1:30:00", "2-00", "1-02:03", "1-00:00:30"]] == \
        [90, 10.5, 90, 2880, 1440 + 123, 1440.5]
    with pytest.raises(ValueError):
        parse_time_min("soon")


def test_the_submitit_sbatch_script_has_our_signal_requeue_and_layout(tmp_path, monkeypatch):
    import submitit.slurm.slurm

    # the script is text: it needs no SLURM here (submitit refuses to build a SLURM executor without srun)
    monkeypatch.setattr(submitit.slurm.slurm.SlurmExecutor, "affinity", classmethod(lambda cls: 1))
    o = opts(nodes=2, tasks_per_node=4, gpus_per_node=4, cpus_per_task=6, partition="gpu", time="1:00:00",
             signal="USR1", signal_lead_s=200)
    ex = make_executor(o, tmp_path / "%j", cluster="slurm")
    text = ex._executor._make_submission_file_text("python -u -m submitit.core._submit x", "uid")
    for line in ["#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --cpus-per-task=6", "#SBATCH --partition=gpu", "#SBATCH --time=1:00:00",
                 "#SBATCH --signal=USR1@200", "#SBATCH --requeue", "#SBATCH --open-mode=append",
                 "export SUBMITIT_PREEMPT_SIGNAL=USR1"]:
        assert line in text.splitlines(), line
    assert "--kill-on-bad-exit=1" in text


# -- end to end: shared helpers



def losses_by_itr(folder: Path) -> dict[int, float]:
    got = log_rows(folder)
    itrs = [int(r["itr"]) for r in got]
    assert itrs == sorted(set(itrs)), f"{folder}: CSV rows not one per step in order: {itrs}"
    return {int(r["itr"]): float(r["loss"]) for r in got}


def wait_until(what: str, pred, timeout: float, diagnose, every: float = 0.5):
    deadline = time.time() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.time() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{diagnose()}")
        time.sleep(every)


def tiny_sets(video_csv, folder: Path, steps: int) -> list[str]:
    return [f"data.datasets=[{video_csv}]", f"logging.folder={folder}", "data.batch_size=2",
            f"optimization.max_steps={steps}", "logging.checkpoint_freq=2", "logging.log_freq=1",
            "logging.tensorboard=false"]


# -- submitit's local executor (no SLURM needed)

def local_submit(video_csv, folder: Path, steps: int):
    from jepa_scale.launch.submit import submit

    o = opts(tasks_per_node=1, overrides=tiny_sets(video_csv, folder, steps), time="30")
    return submit(o, cluster="local", folder=folder.parent / f"{folder.name}-submitit")


def task_pids(controller_pid: int) -> list[int]:
    """The local executor's task processes: the children of its controller."""
    children = Path(f"/proc/{controller_pid}/task/{controller_pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


@pytest.mark.slow
def test_submitit_local_runs_to_the_end_and_resumes_after_a_requeue_signal(video_csv, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    job = local_submit(video_csv, whole, 12)
    result = job.result()
    assert result["step"] == 12 and (whole / "checkpoints" / "latest").is_file()
    assert "the job was requeued" not in job.stdout()

    job = local_submit(video_csv, cut, 12)
    def diagnose():
        return f"state {job.state}\nstdout:\n{(job.stdout() or '')[-3000:]}\nstderr:\n{(job.stderr() or '')[-3000:]}"

    wait_until("a first checkpoint", lambda: (cut / "checkpoints" / "latest").is_file(), 240, diagnose)
    first = task_pids(int(job.job_id))
    assert len(first) == 1
    os.kill(first[0], signal.SIGUSR2)  # what the executor sends before its time limit, and SLURM before ours
    result = job.result()
    assert result["step"] == 12
    err = job.stderr()
    m = re.search(r"preempted: SIGUSR2 at step (\d+)", err)
    assert m and int(m.group(1)) < 12, err[-3000:]
    # two starts of training: the second from the checkpoint of the step the first stopped at
    assert re.findall(r"training steps (\d+)\.\.12", err) == ["0", m.group(1)], err[-3000:]
    assert losses_by_itr(cut) == pytest.approx(losses_by_itr(whole), rel=1e-5)
    assert len(losses_by_itr(cut)) == 12


# -- a real SLURM

def _slurm_env() -> dict:
    r = subprocess.run(["bash", "-c", f'eval "$({SLURM_LOCAL} env)" && env -0'], capture_output=True, timeout=60)
    return dict(item.split("=", 1) for item in r.stdout.decode().split("\0") if "=" in item)


@pytest.fixture(scope="module")
def slurm():
    """A one-node SLURM on this machine (installed from Debian's packages the first time: minutes); stopped at the
    end if this fixture started it."""
    if not SLURM_LOCAL.is_file():
        pytest.skip(f"{SLURM_LOCAL} is missing")
    env = _slurm_env()
    was_up = subprocess.run(["sinfo", "-h"], capture_output=True, env=env, timeout=30).returncode == 0 \
        if shutil.which("sinfo", path=env.get("PATH")) else False
    try:
        r = subprocess.run([str(SLURM_LOCAL), "start"], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.skip("SLURM could not be started: slurm-local.sh start took more than 15 minutes")
    if r.returncode:
        pytest.skip(f"SLURM could not be started (slurm-local.sh start exited {r.returncode}): {r.stderr[-1500:]}")
    env = _slurm_env()
    env.pop("RANK", None)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # `python` for portable scripts
    yield env
    if not was_up:
        subprocess.run([str(SLURM_LOCAL), "stop"], capture_output=True, timeout=120)


class Job:
    def __init__(self, env: dict, script: Path, out_dir: Path, *args: str):
        self.env, self.out_dir = env, out_dir
        r = subprocess.run(["sbatch", "--parsable", str(script), *args], capture_output=True, text=True, env=env,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        self.id = r.stdout.strip().split(";")[0]
        self.t0 = time.time()

    def sh(self, *cmd: str) -> str:
        return subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=60).stdout

    def info(self) -> dict:
        text = self.sh("scontrol", "show", "job", self.id)
        return dict(re.findall(r"(\w+)=(\S*)", text))

    def state(self) -> str:
        return self.sh("squeue", "-h", "-j", self.id, "-t", "all", "-o", "%T").strip()

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.out_dir.glob(f"*-{self.id}.out")))

    def diagnose(self) -> str:
        text = self.output()
        key = [line for line in text.splitlines()
               if re.search(r"jepa_scale: |preempted|srun:|error|Error|requeue|resum|training steps", line)]
        return (f"squeue: {self.sh('squeue', '-t', 'all')}\nscontrol: {self.sh('scontrol', 'show', 'job', self.id)}"
                f"\nkey lines of the output:\n" + "\n".join(key[-60:]) + f"\noutput's end:\n{text[-3000:]}")

    def wait_done(self, timeout: float) -> dict:
        wait_until(f"job {self.id} to end", lambda: self.state() in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
                                                                         "NODE_FAIL", "OUT_OF_MEMORY", ""),
                   timeout, self.diagnose, every=1)
        info = self.info()
        assert info.get("JobState") == "COMPLETED" and info.get("ExitCode") == "0:0", self.diagnose()
        return info


def tiny_script(tmp_path: Path, video_csv, name: str, mode: str, steps: int) -> tuple[Path, Path, Path]:
    """(script, run folder, output folder) for tiny_cpu.yaml with 2 CPU ranks on the one node."""
    run, out = tmp_path / f"{name}-run", tmp_path / f"{name}-out"
    o = gen.SlurmOptions(config=str(ROOT / "configs/pretrain/tiny_cpu.yaml"), tasks_per_node=2, cpus_per_task=1,
                         gpus_per_node=0, mode=mode, job_name=name, output_dir=str(out),
                         overrides=tiny_sets(video_csv, run, steps))
    return gen.write_script(o, tmp_path / f"{name}.sh"), run, out


STEPS = 48  # 10-20 s of training on two CPU ranks here (0.2-0.4 s a step with a checkpoint every 2)


@pytest.fixture(scope="module")
def slurm_tmp():
    """/tmp folders (SLURM here runs as root, outside pytest's tmp tree permissions)."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="jepa-slurm-test-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run_whole(slurm, slurm_tmp, video_csv, mode: str) -> dict[int, float]:
    script, run, out = tiny_script(slurm_tmp, video_csv, f"{mode}-whole", mode, STEPS)
    job = Job(slurm, script, out)
    info = job.wait_done(600)
    print(f"\n[{mode}] uninterrupted job {job.id}: {time.time() - job.t0:.0f} s, Restarts={info.get('Restarts')}")
    assert info.get("Restarts") == "0"
    losses = losses_by_itr(run)
    assert sorted(losses) == list(range(STEPS)), job.diagnose()
    return losses


@pytest.fixture(scope="module")
def whole_srun(slurm, slurm_tmp, video_csv):
    return run_whole(slurm, slurm_tmp, video_csv, "srun")


@pytest.fixture(scope="module")
def whole_deepspeed(slurm, slurm_tmp, video_csv):
    pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (make test installs it)")
    return run_whole(slurm, slurm_tmp, video_csv, "deepspeed")


def preempt_and_resume(job: Job, run: Path, sig: str = "USR1", batch_shell: bool = False) -> dict:
    """Wait for a first checkpoint, signal the job as SLURM's --signal would (or its batch shell only), see it
    requeue, resume and finish; what happened, with times."""
    wait_until("a checkpoint, a third of the way in",
               lambda: (run / "checkpoints" / "latest").is_file() and len(log_rows(run)) >= STEPS // 3, 300, job.diagnose)
    t_sig = time.time()
    args = ["scancel", f"--signal={sig}", *(["--batch"] if batch_shell else []), job.id]
    r = subprocess.run(args, capture_output=True, text=True, env=job.env, timeout=60)
    assert r.returncode == 0, r.stderr
    restarted = wait_until("the requeued job to start again", lambda: "restart 1 on" in job.output(), 240,
                           job.diagnose)
    t_restart = time.time()
    info = job.wait_done(600)
    text = job.output()
    first, _, second = text.partition("restart 1 on")
    # `scontrol requeue` (rank 0, after the checkpoint) ends the running job at once: SLURM kills the ranks before
    # they exit 144 themselves, and says why
    assert "DUE TO JOB REQUEUE" in first, job.diagnose()
    m = re.search(r"resumed from \S+/step-(\d+) at step (\d+)", second)
    assert m and int(m.group(1)) == int(m.group(2)), job.diagnose()
    assert f"checkpoint at step {int(m.group(1))}:" in first, job.diagnose()
    assert info.get("Restarts") == "1", job.diagnose()
    return {"job": job.id, "step": int(m.group(1)), "requeued_after_s": t_restart - t_sig,
            "signalled_at_s": t_sig - job.t0, "total_s": time.time() - job.t0, "restarted": restarted}


def check_resumed(mode: str, report: dict, run: Path, whole: dict[int, float]):
    print(f"\n[{mode}] job {report['job']}: signalled at {report['signalled_at_s']:.0f} s, checkpointed step "
          f"{report['step']}, running again {report['requeued_after_s']:.0f} s later (SLURM_RESTART_COUNT=1), "
          f"done at {report['total_s']:.0f} s")
    assert 0 < report["step"] < STEPS
    assert losses_by_itr(run) == pytest.approx(whole, rel=1e-5)


@pytest.mark.slow
def test_srun_job_preempted_requeues_resumes_with_the_same_losses(slurm, slurm_tmp, video_csv, whole_srun):
    script, run, out = tiny_script(slurm_tmp, video_csv, "srun-cut", "srun", STEPS)
    job = Job(slurm, script, out)
    report = preempt_and_resume(job, run)
    check_resumed("srun", report, run, whole_srun)
    ports = re.findall(r"master \S+:(\d+)", job.output())
    assert ports == [str(master_port(job.id, 0)), str(master_port(job.id, 1))]


@pytest.mark.slow
def test_deepspeed_job_preempted_requeues_resumes_with_the_same_losses(slurm, slurm_tmp, video_csv,
                                                                       whole_deepspeed):
    script, run, out = tiny_script(slurm_tmp, video_csv, "deepspeed-cut", "deepspeed", STEPS)
    job = Job(slurm, script, out)
    report = preempt_and_resume(job, run)
    check_resumed("deepspeed", report, run, whole_deepspeed)
    text = job.output()
    assert "engine DeepSpeedEngine, 2 rank(s)" in text, job.diagnose()
    assert re.search(r"jepa_scale: node 0: SIGUSR1 to the ranks \(pids \d+ \d+\)", text), job.diagnose()


class SubmititJob(Job):
    """A job submitit submitted: its output files are <folder>/<id>_<task>_log.{out,err}."""

    def __init__(self, env: dict, job):
        self.env, self.out_dir, self.id, self.t0, self.submitit = env, job.paths.folder, job.job_id, time.time(), job

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.out_dir.glob(f"{self.id}_*_log.*")))


@pytest.mark.slow
def test_submitit_on_slurm_preempted_requeues_resumes_with_the_same_losses(slurm, slurm_tmp, video_csv, whole_srun,
                                                                          monkeypatch):
    from jepa_scale.launch.submit import submit

    for key in ("PATH", "SLURM_CONF"):  # submitit runs sbatch, scontrol and sacct from this process's environment
        monkeypatch.setenv(key, slurm[key])
    run = slurm_tmp / "submitit-run"
    o = gen.SlurmOptions(config=str(ROOT / "configs/pretrain/tiny_cpu.yaml"), tasks_per_node=2, cpus_per_task=1,
                         gpus_per_node=0, job_name="submitit-cut", overrides=tiny_sets(video_csv, run, STEPS))
    job = SubmititJob(slurm, submit(o, cluster="slurm", folder=slurm_tmp / "submitit"))
    wait_until("a checkpoint, a third of the way in",
               lambda: (run / "checkpoints" / "latest").is_file() and len(log_rows(run)) >= STEPS // 3, 300, job.diagnose)
    t_sig = time.time()
    subprocess.run(["scancel", "--signal=USR2", job.id], env=slurm, timeout=60, check=True)  # submitit's signal
    wait_until("the job to resume", lambda: "resumed from" in job.output(), 240, job.diagnose)
    t_restart = time.time()
    info = job.wait_done(600)
    assert info.get("Restarts") == "1", job.diagnose()
    result = job.submitit.results()[0]
    assert result["step"] == STEPS
    m = re.search(r"resumed from \S+/step-(\d+) at step (\d+)", job.output())
    print(f"\n[submitit] job {job.id}: signalled at {t_sig - job.t0:.0f} s, resumed at step {int(m.group(1))} "
          f"{t_restart - t_sig:.0f} s later, done at {time.time() - job.t0:.0f} s")
    assert 0 < int(m.group(1)) < STEPS
    assert losses_by_itr(run) == pytest.approx(whole_srun, rel=1e-5)


# stand-in for launch/pretrain.py: says where it runs and which signals reach it
STUB = r'''
import json, os, signal, sys, time
got = []
for s in (signal.SIGUSR1, signal.SIGUSR2):
    signal.signal(s, lambda n, f: got.append(signal.Signals(n).name))
rank = os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))
restart = os.environ.get("SLURM_RESTART_COUNT", "0")
keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "SLURM_PROCID", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE",
        "OMP_NUM_THREADS", "PYTHONPATH")
info = {k: os.environ.get(k) for k in keys}
info.update(argv=sys.argv[1:], cwd=os.getcwd(), python=sys.executable)
out = os.environ["STUB_OUT"]
with open(f"{out}/start-{rank}-{restart}.json", "w") as f:
    json.dump(info, f)
deadline = time.time() + 110
while not got and time.time() < deadline:
    time.sleep(0.1)
with open(f"{out}/signals-{rank}-{restart}.json", "w") as f:
    json.dump(got, f)
sys.exit(0 if got else 3)
'''


def stub_repo(root: Path) -> Path:
    """A folder shaped like the repository, whose launch/pretrain.py is STUB."""
    (root / "launch").mkdir(parents=True)
    (root / "configs").mkdir()
    (root / "launch" / "pretrain.py").write_text(STUB)
    shutil.copy(ROOT / "configs/pretrain/tiny_cpu.yaml", root / "configs" / "c.yaml")
    return root


def started(out: Path) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in out.glob("start-*.json")}


def signals(out: Path) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in out.glob("signals-*.json")}


@pytest.mark.slow
def test_a_portable_script_finds_its_repository_and_python_from_any_directory(slurm, slurm_tmp):
    repo = stub_repo(slurm_tmp / "portable-repo")
    stub_out, out = slurm_tmp / "portable-stub", slurm_tmp / "portable-out"
    stub_out.mkdir()
    o = gen.SlurmOptions(config=str(repo / "configs" / "c.yaml"), tasks_per_node=2, gpus_per_node=0,
                         output_dir=str(out), portable=True, env=[("STUB_OUT", str(stub_out))])
    out.mkdir()
    script = gen.write_script(o, repo / "launch" / "job.sh", repo=repo)
    elsewhere = slurm_tmp / "elsewhere"
    elsewhere.mkdir()
    r = subprocess.run(["sbatch", "--parsable", str(script), "--set", "extra=1"], capture_output=True, text=True,
                       env=slurm, timeout=60, cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    job = Job.__new__(Job)
    job.env, job.out_dir, job.id, job.t0 = slurm, out, r.stdout.strip(), time.time()
    wait_until("both ranks to start", lambda: len(started(stub_out)) == 2, 120, job.diagnose)
    subprocess.run(["scancel", "--signal=USR2", job.id], env=slurm, timeout=60)
    job.wait_done(120)
    for rank in ("0", "1"):
        info = started(stub_out)[f"start-{rank}-0"]
        assert info["cwd"] == str(repo.resolve()) and info["SLURM_PROCID"] == rank
        assert info["argv"] == ["--config", f"{repo.resolve()}/configs/c.yaml", "--set", "extra=1",
                                "--set", "meta.load_checkpoint=true"]
        assert Path(info["python"]).parent == Path(sys.executable).parent  # `python` on PATH
        assert info["MASTER_ADDR"] == socket.gethostname().split(".")[0]
        assert info["MASTER_PORT"] == str(master_port(job.id, 0))
    assert signals(stub_out) == {"signals-0-0": ["SIGUSR2"], "signals-1-0": ["SIGUSR2"]}


def signal_job(slurm, slurm_tmp, name: str, mode: str, **kw) -> tuple[Job, Path]:
    """A job of STUB ranks (2 on the node) in `mode`; (job, the folder the stubs write to)."""
    repo = stub_repo(slurm_tmp / f"{name}-repo")
    stub_out, out = slurm_tmp / f"{name}-stub", slurm_tmp / f"{name}-out"
    stub_out.mkdir()
    o = gen.SlurmOptions(config=str(repo / "configs" / "c.yaml"), tasks_per_node=2, gpus_per_node=0, mode=mode,
                         output_dir=str(out), env=[("STUB_OUT", str(stub_out))], job_name=name, **kw)
    job = Job(slurm, gen.write_script(o, slurm_tmp / f"{name}.sh", repo=repo), out)
    return job, stub_out


@pytest.mark.slow
@pytest.mark.parametrize("batch_shell", [False, True], ids=["steps", "batch-shell"])
@pytest.mark.parametrize("mode", gen.MODES)
def test_the_signal_reaches_every_rank_and_no_launcher_dies_of_it(slurm, slurm_tmp, mode, batch_shell):
    """`scancel --signal` (what SLURM's --signal does at the lead time) signals each task's own process: in srun
    mode the ranks; in deepspeed mode the node shell, which forwards it to the ranks (the launchers ignore it).
    `--batch` signals only the batch shell: its trap forwards it to srun, which forwards it to the tasks."""
    if mode == "deepspeed":
        pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (make test installs it)")
    job, stub_out = signal_job(slurm, slurm_tmp, f"sig-{mode}-{'batch' if batch_shell else 'steps'}", mode)
    wait_until("both ranks to start", lambda: len(started(stub_out)) == 2, 180, job.diagnose)
    r = subprocess.run(["scancel", "--signal=USR1", *(["--batch"] if batch_shell else []), job.id],
                       capture_output=True, text=True, env=slurm, timeout=60)
    assert r.returncode == 0, r.stderr
    job.wait_done(120)  # exit 0: every rank got USR1 (a stub without it exits 3) and no launcher died of it
    assert signals(stub_out) == {"signals-0-0": ["SIGUSR1"], "signals-1-0": ["SIGUSR1"]}, job.diagnose()
    info = started(stub_out)
    assert {i["RANK"] or i["SLURM_PROCID"] for i in info.values()} == {"0", "1"}
    if mode == "deepspeed":
        assert {i["LOCAL_WORLD_SIZE"] for i in info.values()} == {"2"}


@pytest.mark.slow
def test_the_automatic_time_limit_signal_reaches_the_deepspeed_ranks(slurm, slurm_tmp):
    """#SBATCH --time=2 --signal=USR2@30: SLURM sends USR2 30 s (up to 60 s more) before the limit, by itself."""
    pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (make test installs it)")
    job, stub_out = signal_job(slurm, slurm_tmp, "sig-auto", "deepspeed", time="2", signal_lead_s=30)
    wait_until("both ranks to start", lambda: len(started(stub_out)) == 2, 180, job.diagnose)
    job.wait_done(150)
    print(f"\n[deepspeed] automatic USR2 handled, job {job.id} done after {time.time() - job.t0:.0f} s")
    assert signals(stub_out) == {"signals-0-0": ["SIGUSR2"], "signals-1-0": ["SIGUSR2"]}, job.diagnose()
