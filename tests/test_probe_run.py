"""Probe runs end to end on tiny synthetic data: official outputs and layouts, the feature cache against the uncached
path, resume, val_only, image eval, the V2 grid, load_probe."""
import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import jepa_scale
from jepa_scale.checkpoint import read_checkpoint
from jepa_scale.config import load_config
from jepa_scale.data.synthetic import make_moving_shapes, split_list
from jepa_scale.evals.runner import evaluate
from tests.conftest import ROOT

TINY = ROOT / "configs/evals/tiny_cpu_probe.yaml"
SMALL = ["optimization.resolution=64", "pretrain.depth=1", "pretrain.embed_dim=64", "pretrain.num_heads=2",
         "optimization.batch_size=4", "optimization.num_epochs=2", "probe.num_workers=0", "pretrain.folder=''",
         "probe.tensorboard=false"]


@pytest.fixture(scope="module")
def probe_videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("probe_videos")
    csv_path = make_moving_shapes(folder, num_videos=24, num_frames=24, height=64, width=80, seed=3)
    return split_list(csv_path, 0.25)


def tiny(probe_videos, out: Path, *more):
    train, val = probe_videos
    return load_config(TINY, [f"data.dataset_train={train}", f"data.dataset_val={val}",
                              f"probe.output_folder={out}", *SMALL, *more])


def probe_weights(path: Path) -> dict:
    ckpt = read_checkpoint(path)
    return ckpt["classifier"] if "classifier" in ckpt else ckpt["classifiers"]


def test_a_probe_run_writes_the_official_outputs(probe_videos, tmp_path):
    r = evaluate(tiny(probe_videos, tmp_path / "run", "probe.tensorboard=true"))
    assert r["num_samples"] == 12 and r["per_head"] == [r["top1"]] and 0 <= r["top1"] <= 100
    rows = list(csv.reader(open(tmp_path / "run/jepa_r0.csv")))
    assert rows[0] == ["epoch", "train_acc", "val_acc"] and [row[0] for row in rows[1:]] == ["1", "2"]
    ckpt = read_checkpoint(tmp_path / "run/jepa-latest.pth.tar")
    assert {"classifier", "opt", "scaler", "epoch", "batch_size", "world_size", "lr"} <= set(ckpt)
    assert ckpt["epoch"] == 2 and all(k.startswith("module.") for k in ckpt["classifier"])
    assert "module.pooler.cross_attention_block.xattn.proj.weight" in ckpt["classifier"]
    assert [len(g["params"]) for g in ckpt["opt"]["param_groups"]] == [7, 10]  # weights and the query token, then biases and norms
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run/tensorboard"), size_guidance={"images": 0}).Reload()
    assert "val/confusion_matrix" in events.Tags()["images"]
    assert {"val/top1", "train/top1", "train/loss", "train/lr"} <= set(events.Tags()["scalars"])
    assert any(t.startswith("val_per_class/") for t in events.Tags()["scalars"])
    assert len(r["per_class"]) == 12
    loaded = jepa_scale.load_probe(tiny(probe_videos, tmp_path / "run"), tmp_path / "run")
    assert loaded.encoder is None and loaded.classifier(torch.randn(2, 32, 64)).shape == (2, 12)


def test_the_feature_cache_gives_the_uncached_result(probe_videos, tmp_path):
    cached = evaluate(tiny(probe_videos, tmp_path / "cached"))
    assert (tmp_path / "cached/feature_cache").is_dir()
    plain = evaluate(tiny(probe_videos, tmp_path / "plain", "probe.feature_cache=false"))
    assert not (tmp_path / "plain/feature_cache").exists()
    assert cached["per_head"] == plain["per_head"] and cached["per_class"] == plain["per_class"]
    a, b = probe_weights(tmp_path / "cached/jepa-latest.pth.tar"), probe_weights(tmp_path / "plain/jepa-latest.pth.tar")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    # a second run reuses the complete cache; another backbone (a changed config) gets its own
    again = evaluate(tiny(probe_videos, tmp_path / "cached", "probe.overwrite=true"))
    assert again["per_head"] == cached["per_head"]
    evaluate(tiny(probe_videos, tmp_path / "cached", "probe.overwrite=true", "probe.seed=5"))
    assert len(list((tmp_path / "cached/feature_cache").glob("train-*"))) == 1


def test_an_eval_resumes_from_its_latest_checkpoint(probe_videos, tmp_path):
    full = evaluate(tiny(probe_videos, tmp_path / "full"))
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "full", cut)
    steps = sorted((cut / "checkpoints").glob("step-*"))
    shutil.rmtree(steps[-1])  # the run "stopped" after epoch 1
    (cut / "jepa-latest.pth.tar").unlink()
    resumed = evaluate(tiny(probe_videos, cut, "resume_checkpoint=true"))
    assert resumed["per_head"] == full["per_head"]
    a, b = probe_weights(tmp_path / "full/jepa-latest.pth.tar"), probe_weights(cut / "jepa-latest.pth.tar")
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = list(csv.reader(open(cut / "jepa_r0.csv")))
    assert [row[0] for row in rows[1:]] == ["1", "2"]


def test_a_fresh_eval_refuses_a_folder_holding_another(probe_videos, tmp_path):
    evaluate(tiny(probe_videos, tmp_path / "run", "optimization.num_epochs=1"))
    from jepa_scale.checkpoint.checkpointer import RunFolderError

    with pytest.raises(RunFolderError, match="resume_checkpoint=true.*probe.overwrite=true"):
        evaluate(tiny(probe_videos, tmp_path / "run", "optimization.num_epochs=1"))


def test_val_only_reports_the_trained_probe(probe_videos, tmp_path):
    trained = evaluate(tiny(probe_videos, tmp_path / "run"))
    probe_file = tmp_path / "run/jepa-latest.pth.tar"
    only = evaluate(tiny(probe_videos, tmp_path / "val", "probe.val_only=true", f"probe.probe_checkpoint={probe_file}"))
    assert only["per_head"] == trained["per_head"] and only["probe_file"] == str(probe_file)


def test_the_v2_grid_trains_every_head_and_reports_the_best(probe_videos, tmp_path):
    train, val = probe_videos
    cfg = load_config(ROOT / "configs/evals/vitl16_ssv2_16x2x3_v2.yaml", [
        f"experiment.data.dataset_train={train}", f"experiment.data.dataset_val={val}", "experiment.data.num_classes=12",
        "experiment.data.resolution=64", "experiment.data.frames_per_clip=8", "experiment.data.frame_step=2",
        "experiment.data.num_views_per_segment=2", "experiment.optimization.num_epochs=1",
        "experiment.optimization.batch_size=4", "experiment.classifier.num_heads=2",
        "experiment.classifier.num_probe_blocks=2", "model_kwargs.checkpoint=''",
        "model_kwargs.pretrain_kwargs.encoder.depth=1",  # a V-JEPA 2 RoPE encoder, as the config says
        "model_kwargs.pretrain_kwargs.encoder.embed_dim=32", "model_kwargs.pretrain_kwargs.encoder.num_heads=2",
        f"probe.output_folder={tmp_path / 'v2'}", "probe.num_workers=0", "probe.tensorboard=false", "num_workers=0"])
    from jepa_scale.evals.backbone import build_encoder
    from jepa_scale.evals.spec import eval_spec

    assert build_encoder(eval_spec(cfg)).pos_embed is None  # rotary positions, no table
    r = evaluate(cfg)
    assert len(r["per_head"]) == 20 and r["top1"] == max(r["per_head"]) and "validation set" in r["selection"]
    ckpt = read_checkpoint(tmp_path / "v2/latest.pt")
    assert len(ckpt["classifiers"]) == 20 and len(ckpt["opt"]) == 20 and "lr" not in ckpt
    assert all(len(o["param_groups"]) == 1 for o in ckpt["opt"])  # V2: every parameter decayed
    assert not any("xattn.proj" in k for k in ckpt["classifiers"][0])
    lrs = {o["param_groups"][0]["initial_lr"] if "initial_lr" in o["param_groups"][0] else None for o in ckpt["opt"]}
    assert lrs  # per-head optimizer states are there
    assert list(csv.reader(open(tmp_path / "v2/log_r0.csv")))[0] == ["epoch", "train_acc", "val_acc"]
    probes = jepa_scale.load_probe(cfg, tmp_path / "v2/latest.pt")
    assert len(probes.classifiers) == 20


def _image_folder(root: Path, per_class: int = 4):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c, color in enumerate(((220, 30, 30), (30, 30, 220))):
            (root / split / f"class{c}").mkdir(parents=True)
            for i in range(per_class):
                img = rng.integers(0, 60, (40, 48, 3), dtype=np.uint8)
                img[8:30, 10:36] = color
                Image.fromarray(img).save(root / split / f"class{c}" / f"{i}.{'png' if i % 2 else 'jpg'}")


def test_image_eval_on_an_image_folder(tmp_path):
    _image_folder(tmp_path / "images" / "tiny")
    cfg = load_config(ROOT / "configs/evals/vitl16_in1k.yaml", [
        f"data.root_path={tmp_path / 'images'}", "data.image_folder=tiny", "data.num_classes=2",
        "data.resolution=32", "pretrain.depth=1", "pretrain.embed_dim=32", "pretrain.num_heads=2",
        "pretrain.frames_per_clip=2", "pretrain.folder=''", "optimization.num_epochs=1", "optimization.batch_size=4",
        f"probe.output_folder={tmp_path / 'out'}", "probe.num_workers=0", "probe.tensorboard=false"])
    r = evaluate(cfg)
    assert r["num_samples"] == 8 and len(r["per_class"]) == 2
    assert (tmp_path / "out/jepa-latest.pth.tar").is_file()


def test_an_official_probe_file_resumes_at_its_epoch(probe_videos, tmp_path):
    full = evaluate(tiny(probe_videos, tmp_path / "full"))
    ckpt = read_checkpoint(sorted((tmp_path / "full/checkpoints").glob("step-*"))[0] / "checkpoint.pth.tar")
    assert ckpt["epoch"] == 1
    del ckpt["jepa_scale"]  # what the official code writes: weights, optimizer and the completed epochs only
    (tmp_path / "official").mkdir()
    torch.save(ckpt, tmp_path / "official/jepa-latest.pth.tar")
    resumed = evaluate(tiny(probe_videos, tmp_path / "official", "resume_checkpoint=true"))
    assert resumed["steps"] == full["steps"] and resumed["per_head"] == full["per_head"]
    a, b = probe_weights(tmp_path / "full/jepa-latest.pth.tar"), probe_weights(tmp_path / "official/jepa-latest.pth.tar")
    assert all(torch.equal(a[k], b[k]) for k in a)
