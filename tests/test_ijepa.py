"""The I-JEPA recipe: models and loss against a literal transcription of the official code, presets, checkpoints,
configs, image batches, FLOPs, and a tiny CPU pretraining that resumes exactly."""
import csv
import glob
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from jepa_scale.checkpoint import CheckpointError
from jepa_scale.config import ConfigError, load_config
from jepa_scale.data.batch import Batch
from jepa_scale.masks.multiblock2d import MultiBlock2DMasks
from jepa_scale.models.predictor_ijepa import IJEPAEncoder, IJEPAPredictor, repeat_interleave_batch
from jepa_scale.pretrained import load_pretrained
from jepa_scale.recipes.ijepa import IJEPA
from tests.conftest import ROOT, SHARED, tiny_ijepa_raw
from tests.reference_ijepa import (RefPredictor, RefVisionTransformer, np_sincos_2d_mae, randomise, ref_loss,
                                   repeat_interleave_batch as ref_repeat_interleave_batch)

OFFICIAL = sorted(glob.glob(str(SHARED / "reference" / "official_configs" / "ijepa" / "*.yaml")))


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def pair(backend="sdpa", seed=0, img=96, patch=8):
    ref_enc = randomise(RefVisionTransformer(img, patch, 48, 2, 2), seed)
    ref_pred = randomise(RefPredictor(ref_enc.num_patches, 48, 32, 1, 2), seed + 1)
    enc = IJEPAEncoder(img_size=img, patch_size=patch, num_frames=1, tubelet_size=1, embed_dim=48, depth=2,
                       num_heads=2, attention=backend)
    pred = IJEPAPredictor(enc.num_patches, 48, 32, 1, 2, attention=backend)
    enc.load_state_dict(ref_enc.state_dict(), strict=True)
    pred.load_state_dict(ref_pred.state_dict(), strict=True)
    return enc, pred, ref_enc, ref_pred


def random_masks(B, n, k, count, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.stack([torch.randperm(n, generator=g)[:k].sort().values for _ in range(B)]) for _ in range(count)]


def test_position_tables_are_the_official_mae_layout():
    enc, pred, ref_enc, ref_pred = pair()
    assert torch.equal(enc.pos_embed, ref_enc.pos_embed) and torch.equal(pred.predictor_pos_embed,
                                                                          ref_pred.predictor_pos_embed)
    table = torch.from_numpy(np_sincos_2d_mae(8, 3)).float()
    # row (h, w) = (0, 1): the first half encodes the column, the second the row
    assert torch.allclose(table[1, :4], torch.tensor([0.8415, 0.0100, 0.5403, 1.0000]), atol=1e-4)
    assert torch.allclose(table[1, 4:], torch.tensor([0.0, 0.0, 1.0, 1.0]))


def test_repeat_interleave_batch_matches_the_official_loop():
    x = torch.arange(3 * 4 * 2).reshape(12, 2)
    for repeat in (1, 2, 3):
        assert torch.equal(repeat_interleave_batch(x, 4, repeat), ref_repeat_interleave_batch(x, 4, repeat))


@pytest.mark.parametrize("backend", ["sdpa", "math"])
@pytest.mark.parametrize("nenc,npred", [(1, 4), (2, 3)])
def test_encoder_and_predictor_match_the_transcription(backend, nenc, npred):
    enc, pred, ref_enc, ref_pred = pair(backend)
    x = torch.randn(3, 3, 96, 96)
    ctx, tgt = random_masks(3, 144, 40, nenc, 1), random_masks(3, 144, 17, npred, 2)
    with torch.no_grad():
        assert rel_err(enc(x), ref_enc(x)) < 1e-5
        z = enc(x, masks=ctx)
        z_ref = ref_enc(x, ctx)
        assert rel_err(torch.cat(z), z_ref) < 1e-5
        p, p_ref = pred(z, ctx, tgt), ref_pred(z_ref, ctx, tgt)
        assert p.shape == (npred * nenc * 3, 17, 48) and rel_err(p, p_ref) < 1e-5
        assert rel_err(pred(torch.cat(z), ctx, tgt), p_ref) < 1e-5  # concatenated input, as the official


def test_loss_and_gradients_equal_the_official_loss(tmp_path, ijepa_images):
    cfg = load_config(raw=tiny_ijepa_raw(str(ijepa_images), str(tmp_path)))
    recipe = IJEPA(cfg)
    ms = recipe.build_models()
    enc, pred, tgt = ms.trainable["encoder"], ms.trainable["predictor"], ms.frozen["target_encoder"]
    ref_enc, ref_tgt = RefVisionTransformer(96, 8, 48, 2, 2), RefVisionTransformer(96, 8, 48, 2, 2)
    ref_pred = RefPredictor(144, 48, 32, 1, 2)
    for ours, ref in ((enc, ref_enc), (pred, ref_pred), (tgt, ref_tgt)):
        randomise(ours, 5) if ours is not tgt else ours.load_state_dict(enc.state_dict())
        ref.load_state_dict(ours.state_dict(), strict=True)
    masks = recipe.mask_fns()["image"](4, 3, 11)
    x = torch.randn(4, 3, 96, 96)
    loss, logged = recipe.loss(ms.all(), Batch({"image": x}, torch.zeros(4), 3, {"image": masks}))
    expected = ref_loss(ref_enc, ref_pred, ref_tgt, x, masks.context, masks.target)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5) and logged["target_std"] > 0
    loss.backward()
    expected.backward()
    for name, p in pred.named_parameters():
        if p.requires_grad:
            ref = dict(ref_pred.named_parameters())[name].grad
            assert rel_err(p.grad, ref) < 1e-4, name


def test_build_reinitialises_like_init_model(tmp_path, ijepa_images):
    cfg = load_config(raw=tiny_ijepa_raw(str(ijepa_images), str(tmp_path), meta={"depth": 4}))
    ms = IJEPA(cfg).build_models()
    enc, pred = ms.trainable["encoder"], ms.trainable["predictor"]
    # helper.init_model re-draws every Linear: the per-block rescale of the model class is gone
    stds = [b.attn.proj.weight.std().item() for b in enc.blocks]
    assert max(stds) / min(stds) < 1.3
    assert 0.01 < pred.mask_token.std().item() < 0.03  # trunc-normal 0.02, not zeros
    assert torch.equal(ms.frozen["target_encoder"].blocks[0].mlp.fc1.weight, enc.blocks[0].mlp.fc1.weight)
    assert not pred.predictor_pos_embed.requires_grad and not enc.pos_embed.requires_grad


@pytest.mark.parametrize("name,encoder_m,predictor_m", [("in1k_vith14_ep300", 630.8, 22.4),
                                                        ("in22k_vitg16_ep44", 1011.4, 29.6)])
def test_official_preset_parameter_counts(name, encoder_m, predictor_m):
    cfg = load_config(SHARED / "reference" / "official_configs" / "ijepa" / f"{name}.yaml")
    with torch.device("meta"):
        ms = IJEPA(cfg).build_models()
    count = {k: sum(p.numel() for p in m.parameters()) / 1e6 for k, m in ms.all().items()}
    assert round(count["encoder"], 1) == encoder_m and round(count["predictor"], 1) == predictor_m
    assert count["target_encoder"] == count["encoder"]
    assert ms.trainable["predictor"].predictor_blocks[0].attn.num_heads == 16  # the encoder's heads


def test_official_configs_validate_unchanged_and_the_shipped_one_has_their_values():
    assert len(OFFICIAL) == 4
    for path in OFFICIAL:
        cfg = load_config(path)
        assert cfg.recipe == "ijepa" and cfg.meta.dtype == "bfloat16" and cfg.optimization.clip_grad is None
    shipped = yaml.safe_load((ROOT / "configs" / "pretrain" / "ijepa_vith14_224.yaml").read_text())
    official = yaml.safe_load(Path(OFFICIAL[0]).read_text())
    assert "in1k_vith14_ep300" in OFFICIAL[0] and shipped == official
    g = load_config(OFFICIAL[2])
    assert g.model.model_name == "vit_giant" and g.meta.pred_depth == 16 and g.mask.patch_size == 16


def test_a_missing_official_key_is_named(tmp_path):
    text = Path(OFFICIAL[0]).read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("  min_keep: 10\n", ""))
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: mask.min_keep: missing"):
        load_config(bad)
    raw = yaml.safe_load(text)
    del raw["logging"]
    del raw["meta"]["pred_emb_dim"]
    with pytest.raises(ConfigError, match="logging: missing section"):
        load_config(raw=raw)


@pytest.mark.parametrize("key", ["use_horizontal_flip", "use_color_distortion", "use_gaussian_blur"])
def test_unimplemented_augmentations_are_refused(key):
    with pytest.raises(ConfigError, match=f"data.{key}: .*not implemented"):
        load_config(OFFICIAL[0], [f"data.{key}=true"])


def test_dead_keys_and_typos(capsys):
    from jepa_scale.config.schema import ignored_keys

    dead = dict(ignored_keys(yaml.safe_load(Path(OFFICIAL[0]).read_text())))
    assert set(dead) == {"meta.copy_data", "data.pin_mem", "data.color_jitter_strength"}
    with pytest.raises(ConfigError, match=r"meta.pred_dept: unknown key \(did you mean 'pred_depth'\?\)"):
        load_config(OFFICIAL[0], ["meta.pred_dept=3"])


def test_ipe_null_is_the_images_over_the_global_batch(tmp_path, ijepa_images):
    cfg = load_config(raw=tiny_ijepa_raw(str(ijepa_images), str(tmp_path), data={"batch_size": 5}))
    assert cfg.optimization.ipe == 48 // 5
    cfg = load_config(raw=tiny_ijepa_raw(str(ijepa_images), str(tmp_path), optimization={"ipe": 3}))
    assert cfg.optimization.ipe == 3
    with pytest.raises(ConfigError, match="optimization.ipe: must be positive"):
        load_config(raw=tiny_ijepa_raw(str(ijepa_images), str(tmp_path), optimization={"ipe": 0}))


def image_batches(cfg, records=None):
    from jepa_scale.data.image_batches import ImageBatches, open_images

    return ImageBatches(records or open_images(cfg.data), cfg, cfg.meta.seed, mask_fns=IJEPA(cfg).mask_fns())


def test_image_batches_are_pure_functions_with_official_masks(tmp_path, ijepa_images):
    cfg = load_config(raw=tiny_ijepa_raw(str(ijepa_images), str(tmp_path)))
    batches = image_batches(cfg)
    a, b = batches[3], image_batches(cfg)[3]
    assert a.inputs["image"].shape == (8, 3, 96, 96) and torch.equal(a.inputs["image"], b.inputs["image"])
    masks = a.masks["image"]
    assert len(masks.context) == 1 and len(masks.target) == 4
    assert all(torch.equal(x, y) for x, y in zip(masks.target, b.masks["image"].target))
    # sizes follow the batch counter, as the official collator's step counter
    (th, tw), _ = MultiBlock2DMasks.from_config(cfg.mask, 96).block_sizes(3)
    assert masks.target[0].shape == (8, th * tw)
    assert not torch.equal(batches[4].inputs["image"], a.inputs["image"])
    m = a.inputs["image"].mean(dim=(0, 2, 3))
    assert m.abs().max() < 3  # ImageNet-normalised


def test_image_shards_give_the_same_batches(tmp_path, ijepa_images):
    from jepa_scale.data.shards.images import make_image_shards

    make_image_shards(str(ijepa_images / "train"), str(tmp_path / "shards"), progress=False)
    folder = load_config(raw=tiny_ijepa_raw(str(ijepa_images), str(tmp_path / "a")))
    shards = load_config(raw=tiny_ijepa_raw(str(ijepa_images), str(tmp_path / "b"),
                                            data={"shards": [str(tmp_path / "shards")]}))
    x, y = image_batches(folder)[2], image_batches(shards)[2]
    assert torch.equal(x.inputs["image"], y.inputs["image"]) and torch.equal(x.labels, y.labels)


def test_unreadable_images_are_skipped_and_reported(tmp_path, ijepa_images):
    import shutil

    from jepa_scale.data.image_batches import open_image_streams

    root = tmp_path / "imgs"
    shutil.copytree(ijepa_images, root)
    bad = sorted((root / "train").rglob("*.png"))[::3]
    for p in bad:
        p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
    cfg = load_config(raw=tiny_ijepa_raw(str(root), str(tmp_path / "run")))
    report = tmp_path / "skipped.tsv"
    (stream,) = open_image_streams(cfg, [0], 1, torch.device("cpu"), IJEPA(cfg).mask_fns(), report)
    seen = 0
    for _ in range(6):  # one epoch of 48 images
        batch = next(stream)
        seen += batch.size
        assert batch.masks["image"].context[0].shape[0] == batch.size
    stream.close()
    assert seen + sum(stream.skipped.values()) == 48 and stream.skipped == {"not a readable image": len(bad)}
    lines = report.read_text().splitlines()
    assert len(lines) == len(bad) and all("not a readable image" in line for line in lines)


def test_step_flops_agree_with_the_flop_counter(tmp_path, ijepa_images):
    cfg = load_config(raw=tiny_ijepa_raw(str(ijepa_images), str(tmp_path), meta={"attention": "math"}))
    recipe = IJEPA(cfg)
    models = recipe.build_models().all()
    batch = image_batches(cfg)[1]
    counter = FlopCounterMode(display=False)
    with counter:
        loss, _ = recipe.loss(models, batch)
        loss.backward()
    assert recipe.step_flops(models, batch) == pytest.approx(counter.get_total_flops(), rel=0.02)
    shapes = recipe.mask_shapes(batch.masks)
    assert len(shapes) == 4 and [s for s, _ in recipe.trained_sequences(shapes)] == ["encoder"] + ["predictor"] * 4


def write_official_checkpoint(path, modules):
    """The official train.py's save_dict: DDP state dicts (`module.` prefix) and its other keys."""
    ckpt = {name: {f"module.{k}": v for k, v in m.state_dict().items()} for name, m in modules.items()}
    ckpt.update(opt={"state": {}, "param_groups": []}, scaler=None, epoch=3, loss=0.1, batch_size=128,
                world_size=16, lr=1e-3)
    torch.save(ckpt, path)
    return ckpt


def test_official_checkpoints_load_strictly(tmp_path, ijepa_images):
    cfg = load_config(raw=tiny_ijepa_raw(str(ijepa_images), str(tmp_path)))
    source = IJEPA(cfg).build_models().all()
    for m in source.values():
        randomise(m, 9)
    path = tmp_path / "jepa-latest.pth.tar"
    ckpt = write_official_checkpoint(path, source)
    model = load_pretrained(cfg, path)
    for name in ("encoder", "predictor", "target_encoder"):
        for k, v in getattr(model, name).state_dict().items():
            assert torch.equal(v, source[name].state_dict()[k]), (name, k)
    wrong = dict(ckpt, predictor={k.replace("mask_token", "mask_tokens.0"): v for k, v in ckpt["predictor"].items()})
    torch.save(wrong, tmp_path / "wrong.pth.tar")
    with pytest.raises(CheckpointError, match=r"'predictor'.*missing keys \(1\): mask_token.*unexpected keys \(1\): "
                                              r"mask_tokens.0"):
        load_pretrained(cfg, tmp_path / "wrong.pth.tar")
    missing = dict(ckpt, encoder={k: v for k, v in ckpt["encoder"].items() if k != "module.norm.bias"})
    torch.save(missing, tmp_path / "missing.pth.tar")
    with pytest.raises(CheckpointError, match=r"'encoder'.*missing keys \(1\): norm.bias"):
        load_pretrained(cfg, tmp_path / "missing.pth.tar")


def losses(folder):
    with open(Path(folder) / "jepa_r0.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def test_tiny_config_pretrains_with_a_falling_loss_and_resumes_exactly(tmp_path, ijepa_images):
    from jepa_scale.checkpoint import read_checkpoint
    from jepa_scale.trainer import train

    def cfg(folder, steps, resume, workers=0):
        return load_config(raw=tiny_ijepa_raw(str(ijepa_images), str(tmp_path / folder),
                                              data={"num_workers": workers}, optimization={"max_steps": steps},
                                              meta={"load_checkpoint": resume}, distributed={"engine": "single"}))
    out = train(cfg("whole", 16, False))
    assert out["step"] == 16 and out["skipped_videos"] == {}
    whole = losses(tmp_path / "whole")
    assert sum(whole[-4:]) < sum(whole[:4]) * 0.9, whole
    train(cfg("split", 7, False, workers=1))
    train(cfg("split", 16, True))
    split = losses(tmp_path / "split")
    assert len(split) == 16
    assert split == pytest.approx(whole, rel=1e-6, abs=0)
    a = read_checkpoint(tmp_path / "whole" / "jepa-latest.pth.tar")
    b = read_checkpoint(tmp_path / "split" / "jepa-latest.pth.tar")
    for k, v in a["target_encoder"].items():
        assert torch.allclose(v, b["target_encoder"][k], rtol=1e-5, atol=1e-7), k
    assert load_pretrained(cfg("whole", 16, False), tmp_path / "whole" / "jepa-latest.pth.tar").predictor is not None


def test_shipped_tiny_config_loads():
    cfg = load_config(ROOT / "configs" / "pretrain" / "tiny_cpu_ijepa.yaml")
    assert cfg.recipe == "ijepa" and cfg.meta.embed_dim == 96 and cfg.data.train_folder == "demo_out/images/train/"
