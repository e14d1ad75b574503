"""AV-JEPA's parts on their own: masks over both modalities (hiding one, redrawing an empty audio context), the joint
encoder's token order, the predictor's sequence, the per-modality losses, the config's checks by key."""
import pytest
import torch

from jepa_scale.config.avjepa_schema import AVJEPAConfig, AVMaskConfig
from jepa_scale.data.batch import Batch
from jepa_scale.data.seeds import draw_masks
from jepa_scale.masks.audiovisual import AudioBlocks, audiovisual_mask_fns
from jepa_scale.models.audiovisual import AudioPatchEmbed
from jepa_scale.models.pos_embed import sincos_1d
from jepa_scale.recipes.avjepa import AVJEPA, av_loss
from jepa_scale.recipes.objective import jepa_loss


def small_cfg(**mask_kw) -> AVJEPAConfig:
    cfg = AVJEPAConfig()
    d, m, a = cfg.data, cfg.model, cfg.audio
    d.crop_size, d.num_frames, d.batch_size = 64, 4, 3
    m.model_name, m.embed_dim, m.depth, m.num_heads, m.pred_depth, m.pred_embed_dim = "vit_tiny", 48, 2, 2, 1, 32
    a.n_mels, a.num_frames = 32, 48  # a 2 x 3 audio grid
    cfg.mask = [AVMaskConfig(num_blocks=2, spatial_scale=[0.2, 0.2], audio_block_size=[1, 2], **mask_kw),
                AVMaskConfig(hide="video"), AVMaskConfig(hide="audio")]
    assert cfg.problems() == []
    return cfg


def random_batch(cfg, recipe, batch=3, seed=0):
    masks = draw_masks(recipe.mask_fns(), batch, seed, 0, 0, groups={"video": batch})
    d, a = cfg.data, cfg.audio
    inputs = {"video": torch.randn(batch, 3, d.num_frames, d.crop_size, d.crop_size),
              "audio": torch.randn(batch, 1, a.n_mels, a.num_frames)}
    return Batch(inputs, torch.zeros(batch, dtype=torch.long), 0, masks)


def test_hiding_a_modality_makes_it_all_target_and_the_other_all_context():
    cfg = small_cfg()
    fns = audiovisual_mask_fns(cfg)
    v, a = fns["video"](3, 0, 5), fns["audio"](3, 0, 6)
    n_v, n_a = 2 * 4 * 4, 2 * 3
    every_v, every_a = torch.arange(n_v).expand(3, -1), torch.arange(n_a).expand(3, -1)
    # mask config 1 hides the video: predicted from the sound alone
    assert v.context[1].shape == (3, 0) and torch.equal(v.target[1], every_v)
    assert torch.equal(a.context[1], every_a) and a.target[1].shape == (3, 0)
    # mask config 2 hides the sound
    assert torch.equal(v.context[2], every_v) and v.target[2].shape == (3, 0)
    assert a.context[2].shape == (3, 0) and torch.equal(a.target[2], every_a)
    # config 0 masks both: context and target partition each modality's tokens
    for m, n in ((v, n_v), (a, n_a)):
        for c, t in zip(m.context[0], m.target[0]):
            assert len(set(c.tolist()) & set(t.tolist())) == 0 and max(c.max(), t.max()) < n


def test_audio_blocks_are_boxes_on_the_frequency_time_grid_and_the_context_is_their_complement():
    gen = AudioBlocks((8, 12), (4, 6), num_blocks=1)
    ctx, tgt = gen(5, 0, torch.Generator().manual_seed(0))
    assert ctx.shape == (5, 96 - 24) and tgt.shape == (5, 24)
    for t in tgt:
        rows, cols = t // 12, t % 12  # frequency outermost
        assert rows.max() - rows.min() == 3 and cols.max() - cols.min() == 5


def test_an_empty_audio_context_is_redrawn_not_cut_to_zero():
    # two 1 x 2 blocks on a 1 x 4 grid cover it whole in 1 draw of 9 (upstream then cut the batch's audio to nothing)
    gen = AudioBlocks((1, 4), (1, 2), num_blocks=2)
    for seed in range(20):
        ctx, tgt = gen(16, 0, torch.Generator().manual_seed(seed))
        assert ctx.shape[1] >= 1
    with pytest.raises(ValueError, match="cover the whole"):
        AudioBlocks((1, 2), (1, 2), num_blocks=1)(1, 0, torch.Generator())


def test_audio_masks_are_drawn_from_their_own_seed():
    cfg = small_cfg()
    cfg.audio.n_mels, cfg.audio.num_frames = 128, 192
    cfg.mask = [AVMaskConfig(num_blocks=1, spatial_scale=[0.3, 0.3], audio_num_blocks=1)]
    fns = audiovisual_mask_fns(cfg)
    a = draw_masks(fns, 4, 3, 0, 0, groups={"video": 4})["audio"]
    same_seed_as_video = fns["audio"](4, 0, draw_masks({"x": lambda b, c, s: s}, 4, 3, 0, 0)["x"])
    assert not torch.equal(a.target[0], same_seed_as_video.target[0])
    again = draw_masks(fns, 4, 3, 0, 0, groups={"video": 4})["audio"]
    assert torch.equal(a.target[0], again.target[0])


def test_audio_tokens_are_frequency_major_with_a_rectangular_sincos_table():
    emb = AudioPatchEmbed(32, 48, 16, 8)
    spec = torch.zeros(1, 1, 32, 48)
    spec[0, 0, 16:, 32:] = 1.0  # the patch at frequency row 1, time column 2
    with torch.no_grad():
        tokens = emb(spec) - emb.pos_embed
    changed = (tokens - tokens[:, :1]).abs().sum(-1)[0]
    assert changed.argmax().item() == 1 * 3 + 2
    table = emb.pos_embed[0]
    want_row = torch.cat([sincos_1d(4, torch.tensor([1.0])), sincos_1d(4, torch.tensor([2.0]))], 1)[0].float()
    assert torch.allclose(table[5], want_row)


def test_the_joint_encoder_orders_video_then_audio_and_either_can_be_left_out():
    cfg = small_cfg()
    recipe = AVJEPA(cfg)
    enc = recipe.build_models().trainable["encoder"]
    b = random_batch(cfg, recipe)
    full = enc(b.inputs)
    assert full.shape == (3, 32 + 6, 48)
    assert enc(b.inputs["video"]).shape == (3, 32, 48) == enc({"video": b.inputs["video"]}).shape
    assert enc({"audio": b.inputs["audio"]}).shape == (3, 6, 48)
    # with every token kept, masked encoding is the plain one; a config may keep no video token at all
    every = {"video": torch.arange(32).expand(3, -1), "audio": torch.arange(6).expand(3, -1)}
    assert torch.allclose(enc(b.inputs, masks=every), full, atol=1e-5)
    only_audio = enc(b.inputs, masks={"video": torch.zeros(3, 0, dtype=torch.long), "audio": every["audio"]})
    assert torch.allclose(only_audio, enc({"audio": b.inputs["audio"]}), atol=1e-5)


def test_the_modality_embedding_is_an_option_and_changes_the_tokens():
    cfg = small_cfg()
    plain = AVJEPA(cfg).build_models().trainable["encoder"]
    cfg.model.modality_embed = True
    tagged = AVJEPA(cfg).build_models().trainable["encoder"]
    assert "modality_embed.audio" in dict(tagged.named_parameters())
    assert not any("modality" in n for n, _ in plain.named_parameters())


def test_the_predictor_sequence_is_video_context_targets_then_audio_context_targets():
    cfg = small_cfg()
    recipe = AVJEPA(cfg)
    models = recipe.build_models().all()
    pred, enc = models["predictor"], models["encoder"]
    b = random_batch(cfg, recipe)
    v, a = b.masks["video"], b.masks["audio"]
    z = enc(b.inputs, masks={"video": v.context[0], "audio": a.context[0]})
    seen = {}
    hook = pred.predictor_blocks[0].register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    out = pred(z, (v.context[0], a.context[0]), (v.target[0], a.target[0]), mask_index=0)
    hook.remove()
    kv = v.context[0].size(1)
    from jepa_scale.models.tokens import gather_tokens as g
    want = torch.cat([pred.predictor_embed(z[:, :kv]) + g(pred.predictor_pos_embed, v.context[0]),
                      g(pred.predictor_pos_embed, v.target[0]) + pred.mask_tokens[0],
                      pred.predictor_embed_audio(z[:, kv:]) + g(pred.predictor_pos_embed_audio, a.context[0]),
                      g(pred.predictor_pos_embed_audio, a.target[0]) + pred.mask_tokens_audio[0]], dim=1)
    assert torch.allclose(seen["x"], want)
    assert out.shape == (3, v.target[0].size(1) + a.target[0].size(1), 48)


def test_token_weighting_is_upstreams_mean_over_the_concatenation_and_modality_weighting_weighs_means():
    cfg = small_cfg()
    torch.manual_seed(0)
    preds = [torch.randn(2, 7, 4), torch.randn(2, 5, 4)]
    targets = [torch.randn(2, 7, 4), torch.randn(2, 5, 4)]
    k_video = [5, 0]  # config 1 predicts audio only
    cfg.loss.weighting = "tokens"
    loss, lv, la = av_loss(preds, targets, k_video, cfg.loss)
    assert torch.allclose(loss, jepa_loss(preds, targets))
    cfg.loss.weighting, cfg.loss.audio_weight = "modality", 3.0
    loss, lv, la = av_loss(preds, targets, k_video, cfg.loss)
    err = [torch.abs(z - h) for z, h in zip(preds, targets)]
    m0 = (err[0][:, :5].mean() + 3 * err[0][:, 5:].mean()) / 4
    assert torch.allclose(loss, (m0 + err[1].mean()) / 2)
    assert torch.allclose(lv, err[0][:, :5].mean()) and torch.allclose(la, (err[0][:, 5:].mean() + err[1].mean()) / 2)


def test_the_loss_trains_both_modalities_and_its_flops_are_counted():
    from jepa_scale.monitor.flops import counted_flops

    cfg = small_cfg()
    cfg.model.attention = "math"  # the counter sees math attention's matmuls
    recipe = AVJEPA(cfg)
    models = recipe.build_models().all()
    b = random_batch(cfg, recipe)
    logged = {}

    def step():
        loss, out = recipe.loss(models, b)
        loss.backward()
        logged.update(out)

    counted = counted_flops(step)
    assert set(logged) == set(recipe.logged) and logged["loss_audio"] > 0 and logged["loss_video"] > 0
    enc = models["encoder"]
    assert enc.audio_embed.proj.weight.grad.abs().sum() > 0 and enc.patch_embed.proj.weight.grad.abs().sum() > 0
    no_targets = models["predictor"].mask_tokens_audio[1].grad  # config 1 hides the video: no audio targets
    assert no_targets is None or not no_targets.any()
    assert models["predictor"].mask_tokens_audio[2].grad.abs().sum() > 0
    assert recipe.step_flops(models, b) == pytest.approx(counted, rel=1e-6)


@pytest.mark.parametrize("key,value,message", [
    ("audio.n_mels", 100, "not divisible by audio.patch_size"),
    ("mask[0].audio_block_size", [9, 1], "within the 8 x 12 audio grid"),
    ("mask[0].hide", "both", "must be one of none, video, audio"),
    ("audio.front_end", "mfcc", "must be one of avjepa, kaldi"),
    ("model.model_name", "videomamba_tiny", "VideoMamba backbone"),
    ("loss.weighting", "count", "must be modality or tokens"),
    ("data.decoder", "dali", "dali decodes video only"),
])
def test_config_checks_name_the_key(key, value, message):
    from jepa_scale.config import ConfigError, load_config

    raw = {"app": "avjepa", "data": {"datasets": ["x.csv"]}, "mask": [{"num_blocks": 8}]}
    with pytest.raises(ConfigError, match=message) as err:
        load_config(raw=raw, overrides=[f"{key}={value}"])
    assert key.split("[")[0] in str(err.value)


def test_hiding_a_modality_whose_loss_weight_is_zero_is_refused():
    from jepa_scale.config import ConfigError, load_config

    raw = {"app": "avjepa", "data": {"datasets": ["x.csv"]}, "loss": {"audio_weight": 0.0},
           "mask": [{"num_blocks": 8}, {"hide": "audio"}]}
    with pytest.raises(ConfigError, match=r"mask\[1\].hide: hides audio, whose loss weight is 0"):
        load_config(raw=raw)


@pytest.mark.slow
def test_a_tiny_av_jepa_trains_on_video_and_sound_with_a_falling_loss(av_video_csv, tmp_path):
    import csv
    import time

    from jepa_scale.config import load_config
    from jepa_scale.trainer import train
    from tests.conftest import tiny_av_raw

    folder = tmp_path / "run"
    raw = tiny_av_raw(str(av_video_csv), str(folder), data={"batch_size": 4},
                      optimization={"max_steps": 24, "ipe": 8, "epochs": 3, "lr": 0.001})
    raw["logging"]["tensorboard"] = False
    start = time.perf_counter()
    out = train(load_config(raw=raw))
    rows = list(csv.DictReader(open(folder / f"{raw['logging']['write_tag']}_r0.csv")))
    seen = [float(r["loss"]) for r in rows]
    print(f"tiny AV-JEPA: loss {seen[0]:.4f} -> {seen[-1]:.4f}, {time.perf_counter() - start:.1f} s")
    assert out["step"] == 24 and len(seen) == 24
    assert sum(seen[-4:]) < 0.9 * sum(seen[:4]), seen
    for key in ("loss_video", "loss_audio"):  # each modality's loss is logged, and is a real number
        assert all(float(r[key]) > 0 for r in rows), key
