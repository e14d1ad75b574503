import pickle

import pytest
import torch

import jepa_scale
from jepa_scale.checkpoint import (CheckpointError, atomic_save, load_strict, official_checkpoint, read_checkpoint,
                                   strip_prefix)
from jepa_scale.config import load_config
from jepa_scale.recipes.vjepa import VJEPA
from tests.conftest import tiny_raw, vjepa_models
from tests.reference_vjepa import RefEncoder, RefPredictor, randomise


@pytest.fixture
def cfg(tmp_path):
    return load_config(raw=tiny_raw(None, str(tmp_path / "run")))


def official_file(tmp_path, enc, pred, target, opt=None):
    """A checkpoint dict exactly as the official trainer writes it (DDP + wrapper prefixes)."""
    pre = lambda sd: {f"module.backbone.{k}": v for k, v in sd.items()}  # noqa: E731
    ckpt = {"encoder": pre(enc.state_dict()), "predictor": pre(pred.state_dict()),
            "target_encoder": pre(target.state_dict()), "opt": opt or {}, "scaler": None, "epoch": 3,
            "loss": 0.5, "batch_size": 4, "world_size": 8, "lr": 1e-4}
    path = tmp_path / "jepa-latest.pth.tar"
    torch.save(ckpt, path)
    return path


def test_official_checkpoint_loads_and_matches_reference_outputs(tmp_path, cfg):
    ref_enc, ref_pred, ref_tgt = randomise(RefEncoder(), 1), randomise(RefPredictor(), 2), randomise(RefEncoder(), 3)
    path = official_file(tmp_path, ref_enc, ref_pred, ref_tgt)
    m = jepa_scale.load_pretrained(cfg, path)
    assert not m.encoder.training and all(p.dtype == torch.float32 for p in m.encoder.parameters())
    x = torch.randn(2, 3, 4, 64, 64)
    ctx = torch.tensor([[0, 2, 5, 9, 11], [1, 3, 4, 20, 30]])
    tgt = torch.tensor([[1, 3, 4, 31], [0, 2, 5, 6]])
    with torch.no_grad():
        for ours, ref in ((m.encoder, ref_enc), (m.target_encoder, ref_tgt)):
            out, expect = ours(x), ref(x)
            assert ((out - expect).norm() / expect.norm()) < 1e-5
        z = m.encoder(x, masks=ctx)
        p, p_ref = m.predictor(z, ctx, tgt, mask_index=1), ref_pred(ref_enc(x, ctx), ctx, tgt, 1)
        assert p.shape == (2, 4, 48) and ((p - p_ref).norm() / p_ref.norm()) < 1e-5


def test_our_checkpoint_uses_official_layout_and_loads_back_bit_exactly(tmp_path, cfg):
    enc, pred, tgt = vjepa_models(cfg)
    opt = VJEPA(cfg).optimizer({"encoder": enc, "predictor": pred})
    ckpt = official_checkpoint({"encoder": enc.state_dict(), "predictor": pred.state_dict(),
                                "target_encoder": tgt.state_dict()}, opt.state_dict(), epoch=1, loss=0.3, batch_size=4,
                               world_size=1, lr=1e-3, extra={"step": 4})
    path = tmp_path / "ours.pth.tar"
    atomic_save(ckpt, path)
    raw = torch.load(path, weights_only=True)
    assert {"encoder", "predictor", "target_encoder", "opt", "scaler", "epoch", "loss", "batch_size", "world_size",
            "lr"} <= set(raw)
    keys = set(raw["encoder"])
    for k in ("pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.1.mlp.fc2.bias",
              "norm.weight"):
        assert "module.backbone." + k in keys
    pkeys = set(raw["predictor"])
    for k in ("predictor_embed.weight", "mask_tokens.0", "mask_tokens.1", "predictor_pos_embed",
              "predictor_blocks.0.attn.proj.weight", "predictor_norm.bias", "predictor_proj.weight"):
        assert "module.backbone." + k in pkeys
    m = jepa_scale.load_pretrained(cfg, path)
    for ours, src in ((m.encoder, enc), (m.predictor, pred), (m.target_encoder, tgt)):
        for (k, a), (k2, b) in zip(ours.state_dict().items(), src.state_dict().items()):
            assert k == k2 and torch.equal(a, b), k


def test_mismatches_are_listed_never_skipped(tmp_path, cfg):
    enc, pred, tgt = vjepa_models(cfg)
    sd = enc.state_dict()
    sd.pop("norm.bias")
    sd["blocks.0.extra"] = torch.zeros(1)
    sd["blocks.1.attn.qkv.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError) as e:
        load_strict(enc, sd, "encoder", "f.pth")
    msg = str(e.value)
    assert "missing keys (1): norm.bias" in msg and "unexpected keys (1): blocks.0.extra" in msg
    assert "blocks.1.attn.qkv.weight: checkpoint (3, 3) vs model (144, 48)" in msg


def test_missing_section_and_wrong_architecture(tmp_path, cfg):
    path = tmp_path / "c.pth"
    torch.save({"encoder": {}}, path)
    with pytest.raises(CheckpointError, match="missing keys"):
        jepa_scale.load_pretrained(cfg, path)
    torch.save({"foo": 1}, path)
    with pytest.raises(CheckpointError, match="no 'encoder' section"):
        jepa_scale.load_pretrained(cfg, path)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        jepa_scale.load_pretrained(cfg, tmp_path / "nope.pth")


class Evil:
    def __reduce__(self):
        return (print, ("unpickled arbitrary code",))


def test_loading_is_weights_only(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"encoder": Evil()}, path)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_checkpoint(path)


class Unpicklable:
    def __reduce__(self):
        raise pickle.PicklingError("boom")


def test_atomic_save_never_replaces_a_good_file_with_a_partial_one(tmp_path):
    path = tmp_path / "jepa-latest.pth.tar"
    atomic_save({"step": 1, "w": torch.ones(3)}, path)
    with pytest.raises(pickle.PicklingError):
        atomic_save({"step": 2, "w": torch.ones(3), "bad": Unpicklable()}, path)
    assert read_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["jepa-latest.pth.tar"]  # no temp file left behind


def test_strip_prefix():
    assert strip_prefix({"module.backbone.a": 1, "module.b": 2, "backbone.c": 3, "d": 4}) == {"a": 1, "b": 2, "c": 3,
                                                                                             "d": 4}
