"""The image probe (V1's attentive probe on ImageFolder splits) on an I-JEPA backbone pretrained here: a V1 image
eval with `pretrain.frames_per_clip: 1` builds the 2-D image ViT, and the I-JEPA run's target encoder loads into it
strictly (its own [w | h] position table included, so the probe sees the positions it was trained with)."""
import shutil

import torch

from jepa_scale.checkpoint import read_checkpoint, strip_prefix
from jepa_scale.config import load_config
from jepa_scale.evals.backbone import load_encoder
from jepa_scale.evals.runner import evaluate
from jepa_scale.evals.spec import eval_spec
from jepa_scale.trainer import train
from tests.conftest import ROOT, tiny_ijepa_raw


def test_the_image_probe_runs_on_a_pretrained_ijepa_backbone(ijepa_images, tmp_path):
    out = train(load_config(raw=tiny_ijepa_raw(str(ijepa_images), str(tmp_path / "pre"),
                                               optimization={"max_steps": 4}, logging={"tensorboard": False})))
    assert out["step"] == 4
    ckpt = tmp_path / "pre" / "jepa-latest.pth.tar"
    assert all(k.startswith("module.") and not k.startswith("module.backbone.")
               for k in read_checkpoint(ckpt)["target_encoder"])  # the official I-JEPA layout
    images = tmp_path / "images" / "set"
    shutil.copytree(ijepa_images / "train", images / "train")
    shutil.copytree(ijepa_images / "train", images / "val")
    cfg = load_config(ROOT / "configs/evals/vitl16_in1k.yaml", [
        f"data.root_path={tmp_path / 'images'}", "data.image_folder=set", "data.num_classes=12",
        "data.resolution=96", "pretrain.model_name=vit_tiny", "pretrain.depth=2", "pretrain.embed_dim=48",
        "pretrain.num_heads=2", "pretrain.patch_size=8", "pretrain.frames_per_clip=1",
        f"pretrain.folder={ckpt.parent}", f"pretrain.checkpoint={ckpt.name}", "pretrain.checkpoint_key=target_encoder",
        "optimization.num_epochs=1", "optimization.batch_size=8", f"probe.output_folder={tmp_path / 'out'}",
        "probe.num_workers=0", "probe.tensorboard=false"])
    encoder = load_encoder(eval_spec(cfg))
    saved = strip_prefix(read_checkpoint(ckpt)["target_encoder"])
    assert all(torch.equal(encoder.state_dict()[k], v) for k, v in saved.items())
    r = evaluate(cfg)
    assert r["num_samples"] == 48 and len(r["per_class"]) == 12 and 0 <= r["top1"] <= 100
