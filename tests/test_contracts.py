"""Contracts every registered recipe x backbone meets, generated from the registries: a new family is tested the
moment it is registered (and fails here until it has a tiny CPU config)."""
import pytest
import torch

import jepa_scale
from jepa_scale.checkpoint import atomic_save, official_checkpoint
from jepa_scale.config import load_config
from jepa_scale.models import BACKBONES, Stack
from jepa_scale.monitor.flops import counted_flops
from jepa_scale.recipes import RECIPES
from jepa_scale.trainer import Trainer
from tests.conftest import tiny_av_raw, tiny_ijepa_raw, tiny_raw, tiny_v2_raw

# recipe -> (a raw config that trains in seconds on a CPU, the section holding model keys); `data` has the test
# data by modality, the backbone name is filled in per case
TINY = {"vjepa": (lambda data, folder, backbone: tiny_raw(data["video"], folder, model={"model_name": backbone}),
                  "model"),
        "vjepa2": (lambda data, folder, backbone: tiny_v2_raw(data["video"], folder, model={"model_name": backbone}),
                   "model"),
        "ijepa": (lambda data, folder, backbone: tiny_ijepa_raw(data["image"], folder, meta={"model_name": backbone}),
                  "meta"),
        "avjepa": (lambda data, folder, backbone: tiny_av_raw(data["av"], folder, model={"model_name": backbone}),
                   "model")}
# VideoMamba has no RoPE (V-JEPA 2's models need it) and no image preset (I-JEPA's): those recipes refuse it by name
# AV-JEPA's joint encoder is a ViT (attention across both modalities)
REFUSED = {"vjepa2": "model.use_rope", "ijepa": "meta.model_name", "avjepa": "model.model_name"}
ALL = [(r, b) for r in RECIPES.names() for b in BACKBONES.names()]
CASES = [(r, b) for r, b in ALL if not (b.startswith("videomamba") and r in REFUSED)]
# the training step per recipe on one backbone of each MLP ratio (4, 48/11): with the tiny sizes set, that is all
# the presets still change (every case above builds, shards and counts FLOPs)
TRAINED = [(r, b) for r, b in CASES if b in ("vit_tiny", "vit_giant_xformers", "videomamba_tiny")]
# model.pred_type: mamba, V-JEPA 1's other predictor, on a ViT and on a VideoMamba encoder: their contracts again
MAMBA_PRED = [("vjepa", "vit_tiny"), ("vjepa", "videomamba_tiny")]


def with_mamba_pred(cases):
    """The cases as (recipe, backbone, model keys), and again with the Mamba predictor for those in MAMBA_PRED."""
    return ([pytest.param(r, b, {}, id=f"{r}-{b}") for r, b in cases]
            + [pytest.param(r, b, {"pred_type": "mamba"}, id=f"{r}-{b}-mamba_pred") for r, b in cases
               if (r, b) in MAMBA_PRED])


def test_every_recipe_has_a_tiny_config():
    assert sorted(TINY) == sorted(RECIPES.names())


@pytest.fixture
def build(tmp_path, video_csv, ijepa_images, av_video_csv):
    def make(recipe, backbone, **sections):
        tiny, model_section = TINY[recipe]
        data = {"video": str(video_csv), "image": str(ijepa_images), "av": str(av_video_csv)}
        raw = tiny(data, str(tmp_path / "run"), backbone)
        for k, v in sections.items():
            k = model_section if k == "model" else k
            raw[k] = {**raw.get(k, {}), **v}
        return load_config(raw=raw)
    return make


@pytest.mark.parametrize("recipe,backbone", sorted(set(ALL) - set(CASES)))
def test_a_recipe_refuses_a_backbone_it_cannot_drive_by_name(build, recipe, backbone):
    from jepa_scale.config import ConfigError

    with pytest.raises(ConfigError, match=REFUSED[recipe]):
        build(recipe, backbone)


@pytest.mark.parametrize("recipe", [r for r in RECIPES.names() if r != "vjepa"])
def test_the_other_recipes_refuse_the_mamba_predictor_by_name(build, recipe):
    from jepa_scale.config import ConfigError

    with pytest.raises(ConfigError, match=f"{TINY[recipe][1]}.pred_type"):
        build(recipe, "vit_tiny", model={"pred_type": "mamba"})


@pytest.mark.parametrize("recipe,backbone,model", with_mamba_pred(CASES))
def test_config_root_and_model_set(build, recipe, backbone, model):
    cfg = build(recipe, backbone, model=model)
    assert isinstance(cfg, RECIPES.get(recipe).config_class)
    models = RECIPES.get(recipe)(cfg).build_models()
    assert models.trainable and set(models.all()) == set(models.trainable) | set(models.frozen)
    for name, module in models.all().items():
        assert isinstance(module, Stack), name
        assert module.shard_units(), f"{name} has no shard units"
        assert all(isinstance(u, torch.nn.Module) for u in module.shard_units())
    for target, source in models.ema:  # an EMA target mirrors its source tensor for tensor
        pairs = zip(models.frozen[target].parameters(), models.trainable[source].parameters(), strict=True)
        assert all(t.shape == s.shape for t, s in pairs)


@pytest.mark.slow
@pytest.mark.parametrize("recipe,backbone,model", with_mamba_pred(TRAINED))
def test_one_step_trains_and_the_official_layout_round_trips(build, tmp_path, recipe, backbone, model):
    cfg = build(recipe, backbone, model=model, optimization={"max_steps": 1}, logging={"tensorboard": False})
    trainer = Trainer(cfg)
    before = {k: v.clone() for k, v in trainer.engine.modules[next(iter(trainer.engine.model_set.trainable))]
              .state_dict().items()}
    out = trainer.run()
    assert out["step"] == 1 and torch.isfinite(torch.tensor(out["loss"]))
    after = trainer.engine.modules[next(iter(trainer.engine.model_set.trainable))].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the step changed the model
    path = tmp_path / "official.pth.tar"
    atomic_save(official_checkpoint(trainer.engine.state_dicts(), trainer.engine.optimizer.state_dict(), epoch=0,
                                    loss=out["loss"], batch_size=4, world_size=1, lr=0.0), path)
    loaded = jepa_scale.load_pretrained(cfg, path)
    for name, module in trainer.engine.modules.items():
        theirs = loaded.modules[name].state_dict()
        assert list(theirs) == list(module.state_dict())
        assert all(torch.equal(theirs[k], v) for k, v in module.state_dict().items()), name


@pytest.mark.parametrize("recipe,backbone,model", with_mamba_pred(CASES))
def test_step_flops_agree_with_the_flop_counter(build, recipe, backbone, model):
    cfg = build(recipe, backbone, model={"attention": "math", **model})  # the counter sees math attention's matmuls
    r = RECIPES.get(recipe)(cfg)
    models = r.build_models().all()
    stream = r.open_streams(cfg, [0], 1, torch.device("cpu"))[0]
    batch = next(stream)
    stream.close()
    logged = {}

    def step():
        loss, out = r.loss(models, batch)
        loss.backward()
        logged.update(out)

    counted = counted_flops(step)  # FlopCounterMode's count, the selective scans by their analytic rule
    assert set(logged) == set(r.logged)
    assert r.step_flops(models, batch) == pytest.approx(counted, rel=0.02)


def test_unknown_names_get_the_closest_registered_one(tmp_path):
    from jepa_scale.config import ConfigError

    bad = tmp_path / "c.yaml"
    bad.write_text("app: vjepaa\n")
    with pytest.raises(ConfigError, match=r"c.yaml:1: app: unknown recipe 'vjepaa' \(did you mean 'vjepa'\?\)"):
        load_config(bad)
    bad.write_text("model:\n  model_name: vit_hug\n")
    with pytest.raises(ConfigError, match=r"c.yaml:2: model.model_name: unknown backbone 'vit_hug' "
                                          r"\(did you mean 'vit_huge'\?\)"):
        load_config(bad)
