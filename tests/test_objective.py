import pytest
import torch

from jepa_scale.config import load_config
from jepa_scale.optim import set_lr_wd
from jepa_scale.recipes.objective import jepa_loss, std_regulariser, target_features
from jepa_scale.recipes.vjepa import VJEPA, param_groups
from tests.conftest import tiny_raw, vjepa_models


def test_loss_is_l1_averaged_over_mask_configs():
    z = [torch.zeros(2, 3, 4), torch.ones(1, 2, 4)]
    h = [torch.full((2, 3, 4), 0.5), torch.full((1, 2, 4), -1.0)]
    assert jepa_loss(z, h).item() == pytest.approx((0.5 + 2.0) / 2)
    assert jepa_loss(z, h, loss_exp=2.0).item() == pytest.approx((0.25 / 2 + 4.0 / 2) / 2)


def test_targets_are_layer_normed_without_affine_then_gathered():
    class Fixed(torch.nn.Module):
        def forward(self, x):
            return torch.arange(2 * 5 * 8, dtype=torch.float32).reshape(2, 5, 8) ** 1.5

    idx = [torch.tensor([[0, 4], [1, 2]]), torch.tensor([[3], [0]])]
    targets, std = target_features(Fixed(), None, idx)
    assert targets[0].shape == (2, 2, 8) and targets[1].shape == (2, 1, 8)
    for t in targets:
        assert torch.allclose(t.mean(-1), torch.zeros(t.shape[:2]), atol=1e-5)
        assert torch.allclose(t.var(-1, unbiased=False), torch.ones(t.shape[:2]), atol=1e-3)
    full = torch.nn.functional.layer_norm(Fixed()(None), (8,))
    assert torch.equal(targets[0][1, 1], full[1, 2]) and std > 0


def test_std_regulariser_penalises_collapse():
    assert std_regulariser([torch.zeros(2, 10, 4)]).item() == pytest.approx(1 - 0.01)
    assert std_regulariser([torch.randn(2, 1000, 4) * 3]).item() == 0.0


def test_param_groups_follow_the_official_rule(tmp_path):
    cfg = load_config(raw=tiny_raw(None, str(tmp_path)))
    enc, pred, _ = vjepa_models(cfg)
    groups = param_groups(enc, pred)
    name_of = {id(p): n for m in (enc, pred) for n, p in m.named_parameters()}
    names = [[name_of[id(p)] for p in g["params"]] for g in groups]
    assert "blocks.0.attn.qkv.weight" in names[0] and "pos_embed" in names[0]  # frozen, listed, skipped by AdamW
    assert "mask_tokens.0" in names[1]  # [1, 1, Dp]: decayed, as in the official code
    assert "blocks.0.attn.qkv.bias" in names[2] and "norm.weight" in names[2]
    assert "predictor_norm.weight" in names[3] and groups[2]["WD_exclude"] and groups[3]["weight_decay"] == 0
    all_params = {id(p) for m in (enc, pred) for p in m.parameters()}
    assert sorted(id(p) for g in groups for p in g["params"]) == sorted(all_params)
    opt = VJEPA(cfg).optimizer({"encoder": enc, "predictor": pred})
    set_lr_wd(opt, 1e-3, 0.3)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.3, 0.3, 0.0, 0.0]
    assert all(g["lr"] == 1e-3 for g in opt.param_groups) and opt.defaults["betas"] == (0.9, 0.999)
