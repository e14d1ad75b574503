import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jepa_scale.checkpoint import read_checkpoint
from jepa_scale.config import load_config
from jepa_scale.data.messy_videos import make_corpus, write_csv
from jepa_scale.optim import Schedules
from jepa_scale.trainer import Trainer, train
from tests.conftest import ROOT, tiny_raw

pytestmark = pytest.mark.slow


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_short_run_writes_config_checkpoint_csv_and_tensorboard(tiny_cfg):
    cfg = tiny_cfg(optimization={"max_steps": 6})
    summary = train(cfg)
    folder = Path(cfg.logging.folder)
    assert load_config(folder / "config.yaml") == cfg
    ckpt = read_checkpoint(folder / "jepa-latest.pth.tar")
    assert ckpt["jepa_scale"]["step"] == 6 and ckpt["epoch"] == 1 and ckpt["batch_size"] == 4
    assert ckpt["jepa_scale"]["data"][0][0]["next_batch"] == 6  # [rank][micro-batch]
    log = rows(folder / "jepa_r0.csv")
    assert [int(r["itr"]) for r in log] == list(range(6))
    assert {"epoch", "itr", "loss", "lr", "wd", "momentum"} <= set(log[0])
    sched = Schedules.from_config(cfg.optimization)  # max_steps stops the run, the schedules stay the full run's
    for r in log:
        lr, wd, m = sched.at_iteration(int(r["itr"]))
        assert float(r["lr"]) == lr and float(r["wd"]) == wd and float(r["momentum"]) == m
        assert torch.isfinite(torch.tensor(float(r["loss"])))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(str(folder / "tensorboard"))
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/wd", "train/momentum", "train/samples_per_s", "train/data_wait_frac",
            "train/target_std"} <= tags
    assert len(ea.Scalars("train/loss")) == 6
    assert summary["step"] == 6


def test_resumed_run_continues_with_the_same_losses(tmp_path, video_csv):
    def cfg(folder, steps, resume, workers):
        return load_config(raw=tiny_raw(str(video_csv), str(tmp_path / folder), data={"num_workers": workers},
                                        optimization={"max_steps": steps}, meta={"load_checkpoint": resume}))
    train(cfg("whole", 8, False, 1))
    train(cfg("split", 5, False, 1))
    train(cfg("split", 8, True, 0))  # the worker count may change across a resume
    whole = rows(tmp_path / "whole" / "jepa_r0.csv")
    split = rows(tmp_path / "split" / "jepa_r0.csv")
    assert [r["itr"] for r in split] == [str(i) for i in range(8)]
    for a, b in zip(whole, split):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-6, abs=0), a["itr"]
    end_whole = read_checkpoint(tmp_path / "whole" / "jepa-latest.pth.tar")
    end_split = read_checkpoint(tmp_path / "split" / "jepa-latest.pth.tar")
    for k, v in end_whole["target_encoder"].items():
        assert torch.allclose(v, end_split["target_encoder"][k], rtol=1e-5, atol=1e-7), k


def test_bad_videos_are_skipped_and_training_goes_on(tmp_path, video_csv):
    bad = [e for e in make_corpus(tmp_path / "corpus") if e.broken_reason]
    mixed = tmp_path / "mixed.csv"
    write_csv(bad, mixed)
    mixed.write_text(mixed.read_text() + video_csv.read_text())
    cfg = load_config(raw=tiny_raw(str(mixed), str(tmp_path / "run"), optimization={"max_steps": 6}))
    summary = train(cfg)
    assert summary["step"] == 6 and sum(summary["skipped_videos"].values()) > 0
    report = (tmp_path / "run" / "skipped_videos.tsv").read_text()
    for line in report.splitlines():
        index, source, reason = line.split("\t")
        assert "mixed.csv:" in source and any(e.broken_reason in reason for e in bad)


def test_ema_target_and_clipping_schedule(tiny_cfg):
    cfg = tiny_cfg(optimization={"max_steps": 10})
    trainer = Trainer(cfg)
    clips = []
    original = trainer.engine.step
    trainer.engine.step = lambda clip, loss: (clips.append(clip), original(clip, loss))[1]
    enc, tgt = trainer.engine.models["encoder"], trainer.engine.models["target_encoder"]
    before = [p.detach().clone() for p in tgt.parameters()]
    batch = next(trainer.streams[0])
    trainer.task.train_step(0, [batch])
    m = cfg.optimization.ema[0]  # the momentum of step 0
    for b, t, e in zip(before, tgt.parameters(), enc.parameters()):
        assert torch.allclose(t, m * b + (1 - m) * e, atol=1e-6)
    trainer.run()
    # ipe 4, warmup 1: the official loop clips once epoch > warmup, i.e. from step 8
    assert clips[1:] == [None] * 8 + [10.0] * 2


def test_launch_cli(tmp_path, video_csv):
    bad = subprocess.run([sys.executable, "launch/pretrain.py", "--config", "configs/pretrain/tiny_cpu.yaml",
                          "--set", "model.dpeth=2"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "did you mean 'depth'" in bad.stderr
    ok = subprocess.run([sys.executable, "launch/pretrain.py", "--config", "configs/pretrain/tiny_cpu.yaml",
                         "--set", f"data.datasets=[{video_csv}]", "--set", f"logging.folder={tmp_path / 'run'}",
                         "--set", "optimization.max_steps=2", "--set", "data.batch_size=4"],
                        capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "checkpoint:" in ok.stdout and (tmp_path / "run" / "jepa-latest.pth.tar").exists()


def official_checkpoint_from(ours: dict) -> dict:
    """What the official trainer writes: whole epochs, no data position, and an AdamW of its own (not fused: its
    param groups carry no `fused` flag)."""
    ckpt = {k: v for k, v in ours.items() if k != "jepa_scale"}
    ckpt["opt"] = {**ckpt["opt"], "param_groups": [{k: v for k, v in g.items() if k != "fused"}
                                                   for g in ckpt["opt"]["param_groups"]]}
    return ckpt


def test_resume_from_an_official_checkpoint_trains_on_with_its_state(tmp_path, video_csv):
    def cfg(folder, steps, resume):
        return load_config(raw=tiny_raw(str(video_csv), str(tmp_path / folder), optimization={"max_steps": steps},
                                        meta={"load_checkpoint": resume}))
    train(cfg("ours", 4, False))
    official = official_checkpoint_from(read_checkpoint(tmp_path / "ours" / "jepa-latest.pth.tar"))
    (tmp_path / "official").mkdir()
    torch.save(official, tmp_path / "official" / "jepa-latest.pth.tar")
    trainer = Trainer(cfg("official", 6, True))
    assert trainer.step == 4 and trainer.streams[0].next_batch == 4  # epoch 1 x ipe 4
    opt = trainer.engine.optimizer
    assert all(g["fused"] for g in opt.param_groups)  # the device-side skip still works
    loaded, saved = opt.state_dict()["state"], official["opt"]["state"]
    assert loaded.keys() == saved.keys() and all(torch.equal(loaded[k]["exp_avg"], saved[k]["exp_avg"]) for k in saved)
    out = trainer.run()  # used to fail at the first step: "Expected grad_scale and found_inf to be None"
    assert out["step"] == 6 and torch.isfinite(torch.tensor(out["loss"]))


class PoisonedStream:
    """Wraps a stream and fills the clips of the chosen steps with NaN."""

    def __init__(self, stream, bad_steps):
        self.stream, self.bad_steps, self.n = stream, set(bad_steps), 0

    def __next__(self):
        batch = next(self.stream)
        if self.n in self.bad_steps:
            batch.inputs["video"] = torch.full_like(batch.inputs["video"], float("nan"))
        self.n += 1
        return batch

    def __getattr__(self, name):
        return getattr(self.stream, name)


def test_a_non_finite_step_is_skipped_without_touching_the_model(tiny_cfg):
    trainer = Trainer(tiny_cfg(optimization={"max_steps": 4}, logging={"log_freq": 1}))
    trainer.streams = [PoisonedStream(trainer.streams[0], bad_steps={2})]
    enc, tgt = trainer.engine.modules["encoder"], trainer.engine.modules["target_encoder"]
    snapshots = []
    original = trainer.task.train_step

    def step_and_snapshot(*a):
        out = original(*a)
        snapshots.append(([p.detach().clone() for p in enc.parameters()],
                          [p.detach().clone() for p in tgt.parameters()]))
        return out
    trainer.task.train_step = step_and_snapshot
    trainer.run()
    (enc1, tgt1), (enc2, tgt2), (enc3, _) = snapshots[1], snapshots[2], snapshots[3]
    assert all(torch.equal(a, b) for a, b in zip(enc1, enc2)) and all(torch.equal(a, b) for a, b in zip(tgt1, tgt2))
    assert not all(torch.equal(a, b) for a, b in zip(enc2, enc3))  # training goes on after the bad step
    log = rows(trainer.checkpointer.folder / "jepa_r0.csv")
    assert [float(r["skipped_steps"]) for r in log] == [0, 0, 1, 1]
    assert all(torch.isfinite(p).all() for p in trainer.engine.optimizer.state[next(enc.parameters())].values())


def test_persistent_non_finite_steps_stop_the_run(tiny_cfg):
    from jepa_scale.tasks import NonFiniteTraining

    trainer = Trainer(tiny_cfg(optimization={"max_steps": 12, "max_nonfinite_steps": 3}, logging={"log_freq": 2}))
    trainer.streams = [PoisonedStream(trainer.streams[0], bad_steps=range(1, 12))]
    with pytest.raises(NonFiniteTraining, match=r"3 consecutive steps had a NaN/inf loss .*max_nonfinite_steps=3\); no checkpoint"):
        trainer.run()
    assert trainer.step <= 6  # noticed at the first log interval past the limit


def test_compiled_blocks_train_like_eager_ones(tiny_cfg):
    eager = train(tiny_cfg(optimization={"max_steps": 2}, logging={"folder": str(Path(tiny_cfg().logging.folder) / "e")}))
    # aot_eager traces forward and backward as inductor does, without needing a C++ toolchain in CI
    compiled = tiny_cfg(optimization={"max_steps": 2}, logging={"folder": str(Path(tiny_cfg().logging.folder) / "c")},
                        distributed={"compile": True, "compile_backend": "aot_eager"})
    trainer = Trainer(compiled)
    assert trainer.engine.modules["encoder"].shard_units()[0]._compiled_call_impl is not None
    out = trainer.run()
    assert out["loss"] == pytest.approx(eager["loss"], rel=1e-4)
    assert [k for k in read_checkpoint(out["checkpoint"])["encoder"]][:2] == \
        [k for k in read_checkpoint(eager["checkpoint"])["encoder"]][:2]  # same keys: nothing renamed
