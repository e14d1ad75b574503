"""Launch layer: config names as users type them, DeepSpeed hostfiles from node lists, and DeepSpeed's own
`deepspeed` launcher running launch/pretrain.py on this machine's CPUs."""
import csv
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import yaml

from jepa_scale.config import ConfigError, load_config
from jepa_scale.config.names import resolve_config_path, shipped_configs
from jepa_scale.distributed.env import DistEnv, detect
from jepa_scale.launch.hostfile import HostfileError, expand_nodelist, hostfile_text, write_hostfile
from tests.conftest import ROOT, tiny_raw

PRETRAIN = ROOT / "configs" / "pretrain"


# --- config names ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["vith16_384.yaml", "vith16_384"])
def test_a_bare_config_name_loads_the_shipped_config_from_another_directory(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    assert load_config(name) == load_config(PRETRAIN / "vith16_384.yaml")


def test_a_file_in_the_working_directory_wins_over_a_shipped_name(tmp_path, monkeypatch):
    (tmp_path / "vith16.yaml").write_text(yaml.safe_dump(tiny_raw(None, str(tmp_path / "run"))))
    monkeypatch.chdir(tmp_path)
    assert load_config("vith16.yaml").model.model_name == "vit_tiny"


def test_an_unknown_name_lists_the_shipped_configs_closest_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        load_config("vith16_38.yaml")
    msg = str(e.value)
    assert msg.startswith("vith16_38.yaml: no such config file; shipped configs: vith16_384.yaml (configs/pretrain/), ")
    assert all(p.name in msg for p in shipped_configs())


def test_a_missing_path_with_a_folder_is_not_looked_up_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^elsewhere/vith16_384.yaml: no such config file \(closest shipped config: "
                                          r"vith16_384.yaml in configs/pretrain/\)$"):
        load_config("elsewhere/vith16_384.yaml")
    with pytest.raises(ConfigError, match=r"^nowhere/zzz.yaml: no such config file$"):
        load_config("nowhere/zzz.yaml")


def test_a_name_shipped_in_two_folders_is_ambiguous(tmp_path, monkeypatch):
    dirs = [tmp_path / "pretrain", tmp_path / "evals"]
    for d in dirs:
        d.mkdir()
        (d / "both.yaml").write_text("{}")
    (dirs[1] / "probe.yaml").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path("probe", dirs) == dirs[1] / "probe.yaml"
    with pytest.raises(ConfigError, match="both: ambiguous config name"):
        resolve_config_path("both", dirs)


# --- hostfiles ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("nodelist,hosts", [
    ("node-[1-4]", ["node-1", "node-2", "node-3", "node-4"]),
    ("gpu[01-03,07]", ["gpu01", "gpu02", "gpu03", "gpu07"]),
    ("a,b[1-2]", ["a", "b1", "b2"]),
    ("x[08-10]", ["x08", "x09", "x10"]),
    ("x[8-10]", ["x8", "x9", "x10"]),
    ("node-[1-2],gpu[01,03]", ["node-1", "node-2", "gpu01", "gpu03"]),
    ("r[1-2]-n[1-2].cluster", ["r1-n1.cluster", "r1-n2.cluster", "r2-n1.cluster", "r2-n2.cluster"]),
    ("c, d", ["c", "d"]),
])
def test_nodelist_expansion(nodelist, hosts):
    assert expand_nodelist(nodelist) == hosts


@pytest.mark.parametrize("nodelist,why", [
    ("x[3-1]", "runs backwards"), ("x[1-2", "not closed"), ("x]1", "without '\\['"), ("x[[1]]", "nested"),
    ("x[a-b]", "bad range 'a-b'"), ("x[1-4:2]", "bad range"), ("x[]", "bad range ''"), (" , ", "no hosts"),
])
def test_bad_nodelists_are_refused_naming_the_list(nodelist, why):
    with pytest.raises(HostfileError, match=f"node list .*{why}"):
        expand_nodelist(nodelist)


def test_deepspeed_parses_our_hostfile_with_the_hosts_in_order(tmp_path):
    runner = pytest.importorskip("deepspeed.launcher.runner", reason="DeepSpeed is not installed")
    hosts = expand_nodelist("node-[3-4],gpu[01,03],a")  # not sorted: the order is DeepSpeed's rank order
    expected = OrderedDict((h, 4) for h in hosts)
    assert runner.fetch_hostfile(str(write_hostfile(tmp_path / "hostfile", hosts, 4))) == expected
    assert list(runner._parse_hostfile(hostfile_text(hosts, 4).splitlines(keepends=True)).items()) == \
        list(expected.items())


def test_what_deepspeed_would_refuse_is_refused_before_writing(tmp_path):
    with pytest.raises(HostfileError, match="'n2' is listed twice"):
        write_hostfile(tmp_path / "hostfile", expand_nodelist("n[1-2],n2"))
    for slots in (0, True, "8"):
        with pytest.raises(HostfileError, match="slots="):
            hostfile_text(["a"], slots)
    with pytest.raises(HostfileError, match="'#a'"):
        hostfile_text(["#a"])
    assert not (tmp_path / "hostfile").exists()


def hostfile_cli():
    spec = importlib.util.spec_from_file_location("launch_hostfile", ROOT / "launch" / "hostfile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_the_hostfile_cli(tmp_path, capsys, monkeypatch):
    main = hostfile_cli()
    assert main(["--nodelist", "node-[1-2]", "--slots", "2", "--out", str(tmp_path / "hostfile")]) == 0
    assert (tmp_path / "hostfile").read_text() == "node-1 slots=2\nnode-2 slots=2\n"
    assert main(["--nodes", "a,b"]) == 0
    assert capsys.readouterr().out == "a slots=8\nb slots=8\n"
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[07-08]")  # inside a job the node list is optional
    assert main(["--slots", "1"]) == 0
    assert capsys.readouterr().out == "gpu07 slots=1\ngpu08 slots=1\n"
    for argv, why in ((["--nodes", "a,a"], "'a' is listed twice"), (["--nodes", "n[1-2]"], "use --nodelist"),
                      (["--nodes", "a", "--out", str(tmp_path / "no" / "dir")], "--out .*no/dir")):
        assert main(argv) == 2
        assert re.search(why, capsys.readouterr().err)


def test_detect_tells_the_deepspeed_launcher_from_torchrun_without_a_local_rank_argument():
    # what deepspeed's launch.py exports to each process; `deepspeed --no_local_rank` passes no --local_rank
    ds = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500",
          "CROSS_RANK": "0", "CROSS_SIZE": "1", "LOCAL_SIZE": "2"}
    assert detect(ds) == DistEnv(1, 1, 2, "deepspeed")
    assert detect(ds, local_rank_arg=1) == DistEnv(1, 1, 2, "deepspeed")


# --- the deepspeed launcher --------------------------------------------------------------------------------------

DEEPSPEED = shutil.which("deepspeed", path=str(Path(sys.executable).parent))
LAUNCHER_TIMEOUT_S = 420


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_process_group(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run, but a timeout kills the whole session it started: the runner, launch.py and every rank
    (subprocess.run would kill the runner alone and leave the ranks running)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                         **kwargs)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        pytest.fail(f"{' '.join(cmd[:8])} ... ran past {timeout}s:\n{out[-3000:]}")
    return subprocess.CompletedProcess(cmd, p.returncode, out, "")


def deepspeed_pretrain(launcher_args: list[str], folder: Path, video_csv, *overrides: str) -> str:
    """`deepspeed LAUNCHER_ARGS launch/pretrain.py --config tiny_cpu.yaml ...`, 2 steps, from a working directory
    outside the repository (the bare config name must resolve there); returns the output after checking the run
    ended (exit 0) with its step-2 checkpoint complete."""
    if DEEPSPEED is None:
        pytest.skip(f"no deepspeed executable next to {sys.executable} (make test installs DeepSpeed)")
    cwd = folder.parent / "elsewhere"
    cwd.mkdir(parents=True, exist_ok=True)
    # --master_addr: without it a hostfile makes the runner ask `ssh <first host> hostname -I`, even with --no_ssh
    cmd = [DEEPSPEED, *launcher_args, "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
           str(ROOT / "launch" / "pretrain.py"), "--config", "tiny_cpu.yaml", "--set", f"data.datasets=[{video_csv}]",
           "--set", f"logging.folder={folder}", "--set", "optimization.max_steps=2", "--set", "data.batch_size=2"]
    for o in overrides:
        cmd += ["--set", o]
    # a set CUDA_VISIBLE_DEVICES would become the runner's --include; the rank variables belong to the launcher
    drop = {"CUDA_VISIBLE_DEVICES", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}
    env = {k: v for k, v in os.environ.items() if k not in drop} | {"OMP_NUM_THREADS": "1"}
    r = run_process_group(cmd, LAUNCHER_TIMEOUT_S, cwd=cwd, env=env)
    assert r.returncode == 0, r.stdout[-6000:]
    assert (folder / "checkpoints" / "step-00000002" / "MANIFEST.json").is_file(), r.stdout[-3000:]
    return r.stdout


def csv_steps(folder: Path, rank: int = 0) -> int:
    with open(folder / f"jepa_r{rank}.csv") as f:
        return len(list(csv.DictReader(f)))


def needs_two_cpu_ranks():
    import torch

    if 0 < torch.cuda.device_count() < 2:  # the launcher would give each rank its own GPU
        pytest.skip("2 ranks need 2 GPUs on a GPU machine (these runs are meant for CPU)")


@pytest.mark.slow
def test_deepspeed_launcher_with_our_hostfile_runs_pretrain_on_two_cpu_ranks(tmp_path, video_csv):
    """`deepspeed --hostfile H --no_ssh --node_rank 0 --master_addr 127.0.0.1 --master_port P launch/pretrain.py`
    with `localhost slots=2`: on a machine without GPUs DeepSpeed's accelerator is the CPU and a hostfile's slots
    are simply processes (no device check); launch.py starts one process per slot with RANK/LOCAL_RANK/WORLD_SIZE,
    CUDA_VISIBLE_DEVICES=0,1 and `--local_rank=N` first in the script's argv. engine=auto picks DeepSpeed (gloo).
    What the runner refuses here: a hostfile without --no_ssh (or --no_ssh_check) -> `ssh localhost hostname`
    check fails ('host=localhost was not reachable via ssh'); a hostfile without --master_addr, even with
    --no_ssh -> `ssh localhost hostname -I` fails ('Unable to detect suitable master address'); --no_ssh without
    --node_rank -> AssertionError ('--node_rank is not set correctly')."""
    needs_two_cpu_ranks()
    hostfile = write_hostfile(tmp_path / "hostfile", ["localhost"], slots=2)
    out = deepspeed_pretrain(["--hostfile", str(hostfile), "--no_ssh", "--node_rank", "0"], tmp_path / "run",
                             video_csv)
    assert "engine DeepSpeedEngine, 2 rank(s)" in out
    assert csv_steps(tmp_path / "run") == 2


@pytest.mark.slow
def test_deepspeed_num_gpus_without_a_hostfile_starts_cpu_ranks(tmp_path, video_csv):
    """`deepspeed --num_gpus 2` with no hostfile: the runner takes localhost with the CPU accelerator's
    device_count() (NUMA nodes with cores, 1 here), and --num_gpus N then replaces the slot list by range(N)
    unchecked, so N CPU processes start (so does `--num_gpus 2` over a `localhost slots=1` hostfile).
    `--num_nodes 2` without a hostfile is refused ('Num nodes is >1 but no extra nodes available via hostfile').
    With --no_local_rank no --local_rank argument comes: the launcher is still recognised (CROSS_RANK) and
    engine=auto still picks DeepSpeed."""
    needs_two_cpu_ranks()
    out = deepspeed_pretrain(["--hostfile", str(tmp_path / "no-hostfile"), "--num_gpus", "2", "--no_local_rank"],
                             tmp_path / "run", video_csv)
    assert "engine DeepSpeedEngine, 2 rank(s)" in out
    assert csv_steps(tmp_path / "run") == 2 and csv_steps(tmp_path / "run", rank=1) == 2


@pytest.mark.slow
def test_deepspeed_launcher_with_one_slot_runs_one_process(tmp_path, video_csv):
    """`localhost slots=1`: one process (WORLD_SIZE=1), so engine=auto trains without a process group."""
    hostfile = write_hostfile(tmp_path / "hostfile", ["localhost"], slots=1)
    out = deepspeed_pretrain(["--hostfile", str(hostfile), "--no_ssh", "--node_rank", "0"], tmp_path / "run",
                             video_csv)
    assert "1 rank(s)" in out
    assert csv_steps(tmp_path / "run") == 2
