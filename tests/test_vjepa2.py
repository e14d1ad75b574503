"""The V-JEPA 2 recipe: official configs, models at the released sizes, the recipe's loss and schedules, the
cooldown from a pretraining checkpoint, strict loading of the released layout."""
import csv
import math
from pathlib import Path

import pytest
import torch

import jepa_scale
from jepa_scale.checkpoint import CheckpointError, atomic_save, official_checkpoint
from jepa_scale.config import ConfigError, load_config
from jepa_scale.config.schema import ignored_keys
from jepa_scale.optim import Schedules
from jepa_scale.recipes import RECIPES
from jepa_scale.trainer import train
from tests.conftest import ROOT, SHARED, tiny_v2_raw

OFFICIAL_V2 = sorted((SHARED / "reference/official_configs/vjepa2").glob("train_*.yaml")) if SHARED.exists() else []
OURS_V2 = [ROOT / "configs/pretrain" / n for n in ("vitg16_256_v2.yaml", "vitg16_384_64f_cooldown.yaml",
                                                     "tiny_cpu_v2.yaml")]


@pytest.mark.parametrize("path", OFFICIAL_V2 + OURS_V2, ids=lambda p: p.name)
def test_every_v2_train_config_loads_unchanged_as_the_v2_recipe(path):
    cfg = load_config(path)
    assert cfg.recipe == "vjepa2" and cfg.app == "vjepa" and RECIPES.get(cfg.recipe).config_class is type(cfg)
    assert cfg.model.use_rope and cfg.optimization.clip_grad is None  # V2 does not clip
    assert cfg.data.num_frames == max(cfg.data.dataset_fpcs) and cfg.data.fps == 4.0
    if cfg.folder is not None:
        assert cfg.logging.folder == cfg.folder  # the V2 files' run folder
    import yaml
    raw = yaml.safe_load(path.read_text())
    dead = dict(ignored_keys(raw))
    if "cpus_per_task" in raw:
        assert "cpus_per_task" in dead and "mem_per_gpu" in dead
    assert not any(k.startswith("optimization.") for k in dead)  # the cooldown keys act in V2


@pytest.mark.skipif(not OFFICIAL_V2, reason="../shared is not here")
def test_the_official_cooldown_selects_the_linear_decay_and_stops_at_80_percent_of_it():
    cfg = load_config(ROOT / "configs/pretrain/vitg16_384_64f_cooldown.yaml")
    o = cfg.optimization
    assert o.is_anneal and o.lr_schedule == "linear" and cfg.start_checkpoint == o.anneal_ckpt
    s = Schedules.from_config(o)
    steps = o.epochs * o.ipe
    assert steps == 12_000 and s.total_steps == 15_000
    lr_last = s.at_iteration(steps - 1)[0]
    assert lr_last == pytest.approx(5.25e-4 - 0.8 * (5.25e-4 - 1e-6), rel=1e-6)  # ~1.058e-4, not final_lr
    assert s.at_iteration(0)[0] == pytest.approx(5.25e-4 + (1 / 15_000) * (1e-6 - 5.25e-4))
    pre = load_config(ROOT / "configs/pretrain/vitg16_256_v2.yaml")
    sp = Schedules.from_config(pre.optimization)  # warmup-constant: final_lr = lr
    assert sp.at_iteration(0)[0] == pytest.approx(1e-4 + (4.25e-4) / 12_000)
    assert sp.at_iteration(12_000)[0] == sp.at_iteration(239_999)[0] == pytest.approx(5.25e-4)


def test_v2_keys_are_checked_by_name(tmp_path):
    raw = tiny_v2_raw(None, str(tmp_path / "r"))
    with pytest.raises(ConfigError, match="optimization.anneal_ckpt: is null, but optimization.is_anneal is true"):
        load_config(raw={**raw, "optimization": {**raw["optimization"], "is_anneal": True}})
    with pytest.raises(ConfigError, match=r"data.fps: exactly one of data.fps, data.sampling_rate"):
        load_config(raw={**raw, "data": {**raw["data"], "sampling_rate": 2}})
    with pytest.raises(ConfigError, match=r"data.num_frames: is 8, but the encoder is built for max"):
        load_config(raw={**raw, "data": {**raw["data"], "num_frames": 8}})
    with pytest.raises(ConfigError, match=r"folder: is '/a' but logging.folder is '/b'"):
        load_config(raw={**raw, "folder": "/a", "logging": {**raw["logging"], "folder": "/b"}})
    # V1 files refuse the V2 options by name rather than running them as V1
    v1 = {k: v for k, v in raw.items() if k != "app"}
    v1["data"] = {k: v for k, v in raw["data"].items() if k not in ("dataset_fpcs", "fps")}
    v1["model"] = {k: v for k, v in raw["model"].items() if k != "use_rope"}
    v1["mask"] = [{**raw["mask"][0], "full_complement": True}]
    with pytest.raises(ConfigError, match=r"mask\[0\].full_complement: is a V-JEPA 2 mask option"):
        load_config(raw=v1)


def test_released_sizes_on_the_meta_device():
    """Parameter counts of the released V2 models (family.md 1.1 and 1.3, computed with RoPE, no table)."""
    cfg = load_config(ROOT / "configs/pretrain/vitg16_256_v2.yaml")
    with torch.device("meta"):
        models = RECIPES.get("vjepa2")(cfg).build_models()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(models.trainable["encoder"]) / 1e6 == pytest.approx(1012.2, abs=0.05)
    assert count(models.trainable["predictor"]) / 1e6 == pytest.approx(22.38, abs=0.01)
    assert len(models.trainable["predictor"].mask_tokens) == 6  # len(mask) x len(dataset_fpcs)
    assert models.trainable["encoder"].pos_embed is None


@pytest.mark.parametrize("name,hidden", [("vit_large", 2736), ("vit_giant_xformers", 4096)])
def test_swiglu_option_and_its_flops(name, hidden):
    from jepa_scale.models.vit import Block, SwiGLU
    from jepa_scale.models.vit import PRESETS

    p = PRESETS[name]
    with torch.device("meta"):
        mlp = SwiGLU(p.embed_dim, int(p.embed_dim * p.mlp_ratio), wide=True)
    assert mlp.fc1.out_features == mlp.fc2.out_features == mlp.fc3.in_features == hidden
    torch.manual_seed(0)
    blk = Block(32, 2, 4.0, "math", rope="official", swiglu=True)
    x = torch.randn(2, 6, 32)
    m = blk.mlp
    ref = m.fc3(torch.nn.functional.silu(m.fc1(x)) * m.fc2(x))  # the official SwiGLUFFN
    assert torch.equal(m(x), ref)
    from torch.utils.flop_counter import FlopCounterMode

    from jepa_scale.models.rope import grid_positions

    pos = grid_positions(torch.arange(6).unsqueeze(0).expand(2, -1), (1, 2, 3))
    counter = FlopCounterMode(display=False)
    with counter:
        blk(x, pos)
    assert blk.flops(6) * 2 == pytest.approx(counter.get_total_flops(), rel=1e-6)


def test_a_stale_pos_embed_in_a_released_file_is_dropped_by_name_and_nothing_else(tmp_path):
    cfg = load_config(raw=tiny_v2_raw(None, str(tmp_path / "r")))
    models = RECIPES.get("vjepa2")(cfg).build_models()
    states = {k: m.state_dict() for k, m in models.all().items()}
    stale = {**states, "encoder": {**states["encoder"], "pos_embed": torch.zeros(1, 4, 48)},
             "target_encoder": {**states["target_encoder"], "pos_embed": torch.zeros(1, 4, 48)}}
    path = tmp_path / "released.pt"
    atomic_save(official_checkpoint(stale, {}, epoch=1, loss=0.0, batch_size=1, world_size=1, lr=0.0), path)
    loaded = jepa_scale.load_pretrained(cfg, path)
    for k, st in states.items():
        assert all(torch.equal(loaded.modules[k].state_dict()[n], v) for n, v in st.items())
    bad = {**stale, "encoder": {**stale["encoder"], "blocks.0.attn.extra": torch.zeros(1)}}
    atomic_save(official_checkpoint(bad, {}, epoch=1, loss=0.0, batch_size=1, world_size=1, lr=0.0), path)
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): blocks.0.attn.extra"):
        jepa_scale.load_pretrained(cfg, path)


def losses(folder: Path) -> list[float]:
    return [float(r["loss"]) for r in csv.DictReader(open(folder / "jepa_r0.csv"))]


@pytest.mark.slow
def test_tiny_v2_pretrains_with_a_falling_loss_then_cools_down_at_more_frames_and_pixels_and_resumes(
        tmp_path, video_csv):
    pre = tmp_path / "pre"
    raw = tiny_v2_raw(str(video_csv), str(pre), optimization={"max_steps": 30, "ipe": 10, "epochs": 3})
    out = train(load_config(raw=raw))
    first, last = losses(pre)[:5], losses(pre)[-5:]
    assert out["step"] == 30 and sum(last) / 5 < sum(first) / 5
    # the cooldown: 8 frames at 96 px from the 4-frame 64 px checkpoint (RoPE: no table to resize)
    ckpt = pre / "jepa-latest.pth.tar"
    cool = dict(data={"dataset_fpcs": [8], "crop_size": 96},
                optimization={"is_anneal": True, "anneal_ckpt": str(ckpt), "resume_anneal": True, "warmup": 0,
                              "lr": 5e-4, "final_lr": 1e-6, "ipe": 4, "epochs": 3})
    start = load_config(raw=tiny_v2_raw(str(video_csv), str(tmp_path / "cool_start"),
                                        optimization={**cool["optimization"], "max_steps": 1},
                                        data=cool["data"]))
    from jepa_scale.trainer import Trainer

    t = Trainer(start)
    saved = torch.load(ckpt, weights_only=True)
    for name in ("encoder", "predictor", "target_encoder"):  # step 0 holds the pretraining weights
        mine = t.engine.modules[name].state_dict()
        assert all(torch.equal(mine[k], v) for k, v in jepa_scale.checkpoint.official.strip_prefix(saved[name]).items())
    assert t.step == 0 and t.engine.optimizer.state_dict()["state"]  # the optimizer moments came along
    t.run()
    full = tmp_path / "cool_full"
    train(load_config(raw=tiny_v2_raw(str(video_csv), str(full), **cool)))
    split = tmp_path / "cool_split"
    train(load_config(raw=tiny_v2_raw(str(video_csv), str(split), data=cool["data"],
                                      optimization={**cool["optimization"], "max_steps": 5})))
    # a requeued cooldown continues from its own checkpoint, not from anneal_ckpt again
    train(load_config(raw=tiny_v2_raw(str(video_csv), str(split), data=cool["data"], meta={"load_checkpoint": True},
                                      optimization=cool["optimization"])))
    assert len(losses(full)) == 12 and losses(split) == pytest.approx(losses(full), rel=1e-5)
    lrs = [float(r["lr"]) for r in csv.DictReader(open(full / "jepa_r0.csv"))]
    assert lrs == pytest.approx([5e-4 + (s + 1) / 15 * (1e-6 - 5e-4) for s in range(12)], rel=1e-6)
    assert math.isfinite(losses(full)[-1])
    # V-JEPA 2's 4-block probe (the head grid) on the pretrained V2 backbone, loaded strictly from the run
    from jepa_scale.data.synthetic import split_list
    from jepa_scale.evals.runner import evaluate

    import shutil

    train_csv, val_csv = split_list(shutil.copy(video_csv, tmp_path / "videos.csv"), 0.25)
    probe = load_config(ROOT / "configs/evals/vitl16_ssv2_16x2x3_v2.yaml", [
        f"experiment.data.dataset_train={train_csv}", f"experiment.data.dataset_val={val_csv}",
        "experiment.data.num_classes=12", "experiment.data.resolution=64", "experiment.data.frames_per_clip=4",
        "experiment.data.frame_step=2", "experiment.data.num_views_per_segment=1",
        "experiment.data.num_segments=1", "experiment.optimization.num_epochs=1",
        "experiment.optimization.batch_size=4", "experiment.classifier.num_heads=2",
        f"model_kwargs.checkpoint={ckpt}", "model_kwargs.pretrain_kwargs.encoder.depth=2",
        "model_kwargs.pretrain_kwargs.encoder.embed_dim=48", "model_kwargs.pretrain_kwargs.encoder.num_heads=2",
        "model_kwargs.pretrain_kwargs.encoder.model_name=vit_tiny",
        f"probe.output_folder={tmp_path / 'probe'}", "probe.num_workers=0", "probe.tensorboard=false", "num_workers=0"])
    r = evaluate(probe)
    assert len(r["per_head"]) == 20 and 0 <= r["top1"] <= 100
