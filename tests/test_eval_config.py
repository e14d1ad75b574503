"""Eval configs: the official V1 and V2 files load unchanged into their schema, and their surprising meanings are
resolved as the official code resolves them."""
import subprocess
import sys

import pytest
import yaml

from jepa_scale.config import ConfigError, load_config
from jepa_scale.config.eval_schema import EvalV1ImageConfig, EvalV1VideoConfig, EvalV2VideoConfig
from jepa_scale.evals.backbone import build_encoder
from jepa_scale.evals.spec import V1_FINAL_WD, eval_spec
from tests.conftest import ROOT, SHARED

OFFICIAL = SHARED / "reference" / "official_configs"
SHIPPED = sorted((ROOT / "configs" / "evals").glob("*.yaml"))


def official_eval_files():
    if not OFFICIAL.is_dir():
        return []
    return sorted((OFFICIAL / "evals").glob("*.yaml")) + sorted((OFFICIAL / "vjepa2").glob("eval_*.yaml"))


def test_every_official_eval_config_validates_unchanged():
    files = official_eval_files()
    if not files:
        pytest.skip(f"{OFFICIAL} is absent (it exists only in the development workplace)")
    assert len(files) == 16
    for f in files:
        spec = eval_spec(load_config(f))
        assert spec.num_classes > 0 and spec.epochs == 20, f


def test_shipped_eval_configs_are_the_official_values():
    files = official_eval_files()
    if not files:
        pytest.skip(f"{OFFICIAL} is absent")
    shipped = {p.name: yaml.safe_load(p.read_text()) for p in SHIPPED}
    for f in files:
        assert yaml.safe_load(f.read_text()) in shipped.values(), f"{f.name} is not shipped unchanged"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_eval_configs_validate(path):
    assert eval_spec(load_config(path)).num_classes > 0


def test_v1_video_semantics():
    cfg = load_config(ROOT / "configs/evals/vitl16_k400_16x8x3.yaml")
    assert isinstance(cfg, EvalV1VideoConfig)
    s = eval_spec(cfg)
    assert (s.schema, s.modality, s.num_segments, s.num_views, s.attend_across_segments) == ("v1", "video", 8, 3, True)
    assert (s.probe_layout, s.probe_depth, s.probe_num_heads, s.clip_grad) == ("v1", 1, None, 1.0)
    assert s.heads[0].final_weight_decay == V1_FINAL_WD and not s.decay_norms_and_biases
    assert str(s.folder).endswith("video_classification_frozen/k400-16x8x3")
    assert s.latest_name == "jepa-latest.pth.tar" and s.checkpoint.endswith("jepa-latest.pth.tar")
    # V1 samples with pretrain.frame_step; data.frame_step is dead
    assert eval_spec(load_config(ROOT / "configs/evals/vitl16_k400_16x8x3.yaml", ["data.frame_step=2"])).frame_step == 4
    assert eval_spec(load_config(ROOT / "configs/evals/vitl16_k400_16x8x3.yaml",
                                 ["pretrain.frame_step=2"])).frame_step == 2
    # use_bfloat16: true is bfloat16 here; the official float16 is a flag
    assert s.amp == "bfloat16"
    assert eval_spec(load_config(ROOT / "configs/evals/vitl16_k400_16x8x3.yaml",
                                 ["probe.official_float16=true"])).amp == "float16"


def test_v1_image_and_v2_video_semantics():
    img = load_config(ROOT / "configs/evals/vith16_384_in1k.yaml")
    assert isinstance(img, EvalV1ImageConfig)
    s = eval_spec(img)
    assert (s.modality, s.resolution, s.frames_per_clip, s.num_classes) == ("image", 384, 16, 1000)
    assert s.train_data.endswith("imagenet_full_size/061417/train")
    v2 = load_config(ROOT / "configs/evals/vitl16_ssv2_16x2x3_v2.yaml")
    assert isinstance(v2, EvalV2VideoConfig)
    s = eval_spec(v2)
    assert (s.probe_layout, s.probe_depth, s.probe_num_heads, s.clip_grad) == ("v2", 4, 16, None)
    assert len(s.heads) == 20 and s.decay_norms_and_biases
    assert {(h.lr, h.weight_decay) for h in s.heads} == {(lr, wd) for lr in (5e-3, 3e-3, 1e-3, 3e-4, 1e-4)
                                                       for wd in (0.01, 0.1, 0.4, 0.8)}
    assert (s.latest_name, s.csv_tag, s.resolution) == ("latest.pt", "log", 256)
    assert s.encoder_cfg.model.use_rope


def test_model_overrides_where_the_backbone_is_named():
    v1 = eval_spec(load_config(ROOT / "configs/evals/vitl16_k400_16x8x3.yaml",
                               ["pretrain.depth=2", "pretrain.embed_dim=64", "pretrain.num_heads=4",
                                "optimization.resolution=32"]))
    enc = build_encoder(v1)
    assert (len(enc.blocks), enc.embed_dim, enc.num_heads, enc.num_patches) == (2, 64, 4, 8 * 2 * 2)
    v2 = eval_spec(load_config(ROOT / "configs/evals/vitl16_ssv2_16x2x3_v2.yaml",
                               ["model_kwargs.pretrain_kwargs.encoder.depth=3"]))
    assert v2.encoder_cfg.model.depth == 3


def test_errors_name_the_file_line_and_key(tmp_path):
    text = (ROOT / "configs/evals/vitl16_k400_16x8x3.yaml").read_text().replace("num_segments:", "num_segmnts:")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: data.num_segmnts: unknown key \(did you mean 'num_segments'"):
        load_config(bad)
    with pytest.raises(ConfigError, match="eval_name: must be one of"):
        load_config(raw={"eval_name": "video_classification", "pretrain": {}})
    with pytest.raises(ConfigError, match="distributed.engine: a probe runs on auto, single or ddp"):
        load_config(ROOT / "configs/evals/vitl16_k400_16x8x3.yaml", ["distributed.engine=fsdp"])


def test_validation_cli_finds_the_kind_and_lists_dead_keys():
    out = subprocess.run([sys.executable, "-m", "jepa_scale.config", str(ROOT / "configs/evals/vitl16_k400_16x8x3.yaml"),
                          str(ROOT / "configs/evals/vitl16_ssv2_16x2x3_v2.yaml")], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "ignored data.frame_step = the official V1 eval reads the frame step from pretrain.frame_step" in out.stdout
    assert "ignored max_workers" in out.stdout and "ignored pretrain.use_silu" in out.stdout


def test_a_placeholder_checkpoint_is_named_with_its_keys(tmp_path):
    from jepa_scale.checkpoint import CheckpointError
    from jepa_scale.evals.backbone import load_encoder

    spec = eval_spec(load_config(ROOT / "configs/evals/vitl16_k400_16x8x3.yaml"))
    with pytest.raises(CheckpointError, match="placeholder.*pretrain.folder and pretrain.checkpoint"):
        load_encoder(spec)
    # a video eval of an image backbone would need the official FrameAggregation; an image eval takes it as it is
    with pytest.raises(ConfigError, match="pretrain.frames_per_clip: an image backbone"):
        load_config(ROOT / "configs/evals/vitl16_k400_16x8x3.yaml", ["pretrain.frames_per_clip=1"])
    image = eval_spec(load_config(ROOT / "configs/evals/vitl16_in1k.yaml", ["pretrain.frames_per_clip=1"]))
    assert image.frames_per_clip == 1 and not image.encoder_cfg.data.num_frames > 1
