"""No run is lost, no folder is silently overwritten: the checkpointer's behaviour under the failures users hit."""
import csv
import os
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jepa_scale.checkpoint import CheckpointError
from jepa_scale.checkpoint.checkpointer import RunFolderError
from jepa_scale.trainer import Trainer, train
from tests.conftest import ROOT, one_rank_group

pytestmark = pytest.mark.slow


def losses(folder) -> list[tuple[int, float]]:
    with open(Path(folder) / "jepa_r0.csv") as f:
        return [(int(r["itr"]), float(r["loss"])) for r in csv.DictReader(f)]


def step_dirs(folder) -> list[str]:
    return sorted(p.name for p in (Path(folder) / "checkpoints").glob("step-*"))


@pytest.fixture
def cfg(tiny_cfg, tmp_path):
    """cfg(folder, steps, resume=False, **sections): a tiny run in tmp_path/folder, checkpointing every 2 steps."""
    def make(folder, steps, resume=False, **sections):
        return tiny_cfg(optimization={"max_steps": steps}, meta={"load_checkpoint": resume},
                        logging={"folder": str(tmp_path / folder), "checkpoint_freq": 2, **sections.pop("logging", {})},
                        **sections)
    return make


@pytest.fixture
def run(cfg):
    def go(*args, **kwargs):
        return train(cfg(*args, **kwargs))
    return go


def test_a_fresh_run_refuses_a_folder_with_another_run_and_overwrite_replaces_it(run, tmp_path):
    run("a", 2)
    before = (tmp_path / "a" / "jepa-latest.pth.tar").read_bytes()
    with pytest.raises(RunFolderError, match=r"holds another run \(checkpoints, jepa-latest.pth.tar, jepa_r0.csv\): "
                                             r"resume it with --set meta.load_checkpoint=true.*logging.overwrite=true"):
        run("a", 4)
    assert (tmp_path / "a" / "jepa-latest.pth.tar").read_bytes() == before and len(losses(tmp_path / "a")) == 2
    run("a", 4, logging={"overwrite": True})
    assert [s for s, _ in losses(tmp_path / "a")] == [0, 1, 2, 3]


def test_load_checkpoint_with_nothing_to_resume_starts_fresh(run, tmp_path, caplog):
    with caplog.at_level("INFO"):
        run("b", 2, resume=True)
    assert "no checkpoint in" in caplog.text and "starting fresh" in caplog.text
    run("b", 4, resume=True)  # the same command line then resumes
    assert [s for s, _ in losses(tmp_path / "b")] == [0, 1, 2, 3]


def test_the_log_has_no_duplicate_rows_after_a_crash_and_resume(run, tmp_path):
    run("whole", 8)
    run("crashed", 6)  # checkpoints at 2, 4, 6; the crash lost step 6's checkpoint (rows 4 and 5 were logged)
    shutil.rmtree(tmp_path / "crashed" / "checkpoints" / "step-00000006")
    (tmp_path / "crashed" / "jepa-latest.pth.tar").unlink()
    run("crashed", 8, resume=True)
    got, want = losses(tmp_path / "crashed"), losses(tmp_path / "whole")
    assert [s for s, _ in got] == list(range(8))
    assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6)


def test_retention_keeps_the_newest_complete_checkpoints(run, tmp_path):
    run("r", 8, logging={"keep_latest": 3})
    assert step_dirs(tmp_path / "r") == ["step-00000004", "step-00000006", "step-00000008"]


def test_stale_temporaries_of_interrupted_saves_are_removed_at_start_up(run, tmp_path):
    run("s", 4)
    folder = tmp_path / "s"
    litter = [folder / ".jepa-latest.pth.tar.tmp-4242", folder / "checkpoints" / ".step-00000005.tmp",
              folder / "checkpoints" / "step-00000006"]  # the last: a save that never got its manifest
    litter[0].write_bytes(b"partial")
    for d in litter[1:]:
        d.mkdir()
        (d / "part").write_bytes(b"partial")
    run("s", 6, resume=True)
    assert not any(p.exists() for p in litter[:2])
    assert json.loads((folder / "checkpoints" / "step-00000006" / "MANIFEST.json").read_text())["step"] == 6


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_checkpoint_is_skipped_with_its_reason(run, cfg, tmp_path, caplog, damage):
    run("d", 6)
    newest = tmp_path / "d" / "checkpoints" / "step-00000006" / "checkpoint.pth.tar"
    data = bytearray(newest.read_bytes())
    if damage == "truncate":  # what a rank that died while writing leaves
        data = data[: len(data) // 2]
    else:  # one bit, somewhere in the tensors
        data[len(data) // 2] ^= 0x10
    newest.write_bytes(bytes(data))
    with caplog.at_level("WARNING"):
        trainer = Trainer(cfg("d", 8, resume=True))
    why = "bytes, the manifest says" if damage == "truncate" else "does not match its checksum"
    assert f"skipping {newest.parent}" in caplog.text and why in caplog.text
    assert trainer.step == 4  # the previous complete checkpoint



def test_resuming_a_finished_run_reports_its_last_loss(run, tmp_path):
    first = run("f", 4)
    again = run("f", 4, resume=True)
    assert again["step"] == 4 and again["loss"] == pytest.approx(first["loss"]) and again["loss"] > 0


def test_a_changed_batch_size_on_resume_is_warned_about(run, tmp_path, caplog):
    run("bs", 2)
    with caplog.at_level("WARNING"):
        run("bs", 4, resume=True, data={"batch_size": 2})
    assert "was trained with data.batch_size=4; this run uses 2" in caplog.text


def test_another_engines_checkpoint_names_the_engine_to_resume_with(cfg, tmp_path):
    from jepa_scale.distributed.fsdp import FSDPEngine

    with one_rank_group():
        Trainer(cfg("e", 2), engine=FSDPEngine("cpu", "float32")).run()
    with pytest.raises(CheckpointError, match=r"step-00000002 was written by distributed.engine=fsdp \(dcp format\); "
                                              r"this run uses the single or ddp engine: resume with "
                                              r"distributed.engine=fsdp, or export it"):
        Trainer(cfg("e", 4, resume=True))


def test_the_cli_says_what_is_wrong_in_one_line_with_an_exit_code_per_kind(tmp_path, video_csv):
    def launch(*sets):
        args = ["--config", "configs/pretrain/tiny_cpu.yaml", "--set", f"data.datasets=[{video_csv}]",
                "--set", f"logging.folder={tmp_path / 'cli'}", "--set", "optimization.max_steps=1",
                "--set", "data.batch_size=4", *[x for s in sets for x in ("--set", s)]]
        return subprocess.run([sys.executable, "launch/pretrain.py", *args], capture_output=True, text=True, cwd=ROOT)

    assert launch().returncode == 0
    again = launch()
    assert again.returncode == 6 and "Traceback" not in again.stderr
    assert again.stderr.strip().splitlines()[-1].startswith(f"run folder: {tmp_path / 'cli'} holds another run")
    broken = launch("data.datasets=[/nonexistent/list.csv]", "logging.overwrite=true")
    assert broken.returncode == 4 and "Traceback" not in broken.stderr and "/nonexistent/list.csv" in broken.stderr


def test_the_official_placeholder_folder_is_refused(cfg):
    with pytest.raises(RunFolderError, match="the official config's placeholder"):
        Trainer(cfg("x", 2, logging={"folder": "/your_absolute_file_path_for_saving_logs_and_checkpoints/"}))
    assert not Path("/your_absolute_file_path_for_saving_logs_and_checkpoints").exists()


def test_a_sharded_engine_runs_on_one_plain_process(tmp_path, video_csv):
    # what one GPU with ZeRO-Offload needs: no launcher, a process group of one
    r = subprocess.run([sys.executable, "launch/pretrain.py", "--config", "configs/pretrain/tiny_cpu.yaml",
                        "--set", f"data.datasets=[{video_csv}]", "--set", f"logging.folder={tmp_path / 'one'}",
                        "--set", "optimization.max_steps=2", "--set", "data.batch_size=4",
                        "--set", "distributed.engine=fsdp"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "one" / "checkpoints" / "step-00000002" / ".metadata").is_file()


def test_dali_on_the_cpu_refuses_h264_shards_with_what_it_reads(tmp_path, video_csv, cfg):
    from jepa_scale.data.csv_source import DataError
    from jepa_scale.data.shards.make import make_shards
    from jepa_scale.data.shards.transcode import TranscodeOptions
    from jepa_scale.recipes.vjepa import VJEPA

    make_shards([str(video_csv)], str(tmp_path / "shards"), TranscodeOptions(codec="h264", short_side=64),
                progress=False)
    c = cfg("dali", 2, data={"datasets": [], "shards": [str(tmp_path / "shards")], "decoder": "dali"})
    with pytest.raises(DataError, match=r"h264 shards, but DALI's CPU decoder reads only vp8, vp9, mjpeg: use "
                                        r"data.decoder: pyav"):
        VJEPA(c).open_streams(c, [0], 1, torch.device("cpu"))


def test_a_run_that_cannot_fit_says_so_before_building_the_model(cfg, tmp_path):
    from jepa_scale.plan import DoesNotFit

    big = cfg("big", 2, model={"model_name": "vit_huge", "embed_dim": None, "depth": None, "num_heads": None},
              data={"crop_size": 384, "num_frames": 16, "batch_size": 10})
    with pytest.raises(DoesNotFit, match=r"vit_huge at 16x384px, 10 clips per process on cpu: the planner predicts "
                                         r"[\d.]+ GiB per process \(ddp, checkpointing none\) and [\d.]+ GiB are"):
        Trainer(big)
    assert not (tmp_path / "big").exists()


def test_loader_workers_are_capped_to_the_cores(caplog):
    from jepa_scale.data.sources import loader_workers

    cores = len(os.sched_getaffinity(0))
    with caplog.at_level("WARNING"):
        assert loader_workers(cores * 6, 1) == cores and loader_workers(1, 1) == 1
    assert f"data.num_workers={cores * 6} but {cores} core(s)" in caplog.text
