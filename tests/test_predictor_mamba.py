"""The Mamba predictor (`model.pred_type: mamba`, the Video-Mamba-JEPA fork's): its sequence order, outputs, mask
tokens, size, init, FLOPs, activation checkpointing, config rules and a tiny run whose loss falls."""
import csv
import math
import time
from pathlib import Path

import pytest
import torch

from jepa_scale.config import ConfigError, load_config
from jepa_scale.models import build_predictor
from jepa_scale.models.predictor_mamba import MambaPredictor
from jepa_scale.models.videomamba import VideoMamba
from jepa_scale.monitor.flops import counted_flops, jepa_step
from jepa_scale.recipes import RECIPES
from tests.conftest import tiny_ijepa_raw, tiny_raw, tiny_v2_raw

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "pretrain" / "tiny_cpu_videomamba.yaml"
D, DP = 48, 32
# 64 px, 4 frames, tubelet 2: a 2 x 4 x 4 grid of 32 tokens
CTX = torch.tensor([[0, 3, 5, 9, 17, 30], [2, 4, 6, 8, 10, 12]])
TGT = torch.tensor([[1, 2, 31], [0, 7, 20]])


def predictor(depth=2, **kw):
    torch.manual_seed(0)
    kw = {"zero_init_mask_tokens": False, **kw}  # distinct tokens, so that which one was used shows
    return MambaPredictor(img_size=64, patch_size=16, num_frames=4, tubelet_size=2, embed_dim=D,
                          predictor_embed_dim=DP, depth=depth, **kw)


def first_block_input(pred, *args):
    seen = []
    handle = pred.predictor_blocks[0].register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    try:
        out = pred(*args)
    finally:
        handle.remove()
    return seen, out


def test_the_scan_sees_the_context_in_its_order_then_the_mask_tokens_in_target_order():
    pred, z = predictor().eval(), torch.randn(2, CTX.shape[1], D)
    ctx = CTX[:, [3, 0, 5, 1, 4, 2]]  # not sorted: the context is taken in the order it comes
    (seq,), out = first_block_input(pred, z, ctx, TGT, 1)
    pos = pred.predictor_pos_embed[0]
    with torch.no_grad():
        context = pred.predictor_embed(z) + pos[ctx]
        targets = pos[TGT] + pred.mask_tokens[1]
        assert torch.allclose(seq, torch.cat([context, targets], dim=1), atol=1e-6)
        # the output: the target part of the normed sequence, projected back to the encoder's width
        assert out.shape == (2, TGT.shape[1], D)
        assert torch.allclose(out, pred.predictor_proj(pred.mix(seq)[:, ctx.shape[1]:]), atol=1e-6)
        # a scan is not a set function: the same tokens in another order (the two next to the targets, where the
        # decaying state remembers most) predict otherwise
        swap = [0, 1, 2, 3, 5, 4]
        assert (out - pred(z[:, swap], ctx[:, swap], TGT, 1)).abs().max() > 1e-5  # rounding: ~1e-7


def test_each_mask_config_gets_its_own_mask_token_in_one_call():
    pred = predictor().eval()
    zs = [torch.randn(2, CTX.shape[1], D), torch.randn(2, 2, D)]
    ctxs, tgts = [CTX, CTX[:, :2]], [TGT, torch.tensor([[4, 5], [1, 3]])]
    seen, outs = first_block_input(pred, zs, ctxs, tgts)
    pos = pred.predictor_pos_embed[0]
    for i, (seq, c, t, out) in enumerate(zip(seen, ctxs, tgts, outs)):
        assert torch.allclose(seq[:, c.shape[1]:] - pos[t], pred.mask_tokens[i].detach().expand(2, t.shape[1], DP),
                              atol=1e-6)
        assert out.shape == (2, t.shape[1], D)
        assert torch.allclose(out, pred(zs[i], c, t, i), atol=1e-6)  # the list call = one call per config
    (seq,), _ = first_block_input(pred, zs[0], CTX, TGT, 3)  # more configs than tokens: index modulo
    assert torch.allclose(seq[:, CTX.shape[1]:] - pos[TGT], pred.mask_tokens[1].detach().expand(2, 3, DP), atol=1e-6)


def mixer_parameters(d: int, d_state=16, d_conv=4, expand=2) -> int:
    E, R, N = expand * d, math.ceil(d / 16), d_state
    per_direction = E * d_conv + E + E * (R + 2 * N) + R * E + E + E * N + E  # conv, x_proj, dt_proj, A_log, D
    return d * 2 * E + 2 * per_direction + E * d  # in_proj, both directions, out_proj


@pytest.mark.parametrize("depth,tokens", [(2, 2), (3, 1)])
def test_parameters_are_the_formula(depth, tokens):
    pred = predictor(depth, num_mask_tokens=tokens)
    trainable = (D * DP + DP) + tokens * DP + depth * (DP + mixer_parameters(DP)) + DP + (DP * D + D)
    assert sum(p.numel() for p in pred.parameters() if p.requires_grad) == trainable
    assert pred.predictor_pos_embed.shape == (1, 32, DP) and not pred.predictor_pos_embed.requires_grad
    assert 192 + mixer_parameters(192) == 282048  # the formula gives family.md's videomamba_tiny layer (0.282M)


def test_init_is_videomambas_order_with_the_predictors_depth_and_zero_mask_tokens_by_default():
    pred = predictor(4, zero_init_mask_tokens=True)
    assert all(torch.count_nonzero(t) == 0 for t in pred.mask_tokens)
    mix = pred.predictor_blocks[1].mixer
    assert torch.count_nonzero(mix.dt_proj.bias) == 0  # the Linear init overwrote Mamba's dt init, as upstream
    assert torch.equal(mix.A_log[3], torch.arange(1, 17).float().log()) and torch.equal(mix.D, torch.ones(2 * DP))
    bound = 1 / math.sqrt(mix.d_inner) / math.sqrt(4)  # kaiming-uniform / sqrt(pred_depth)
    assert 0.9 * bound < mix.out_proj.weight.abs().max().item() <= bound
    assert pred.predictor_embed.weight.std().item() == pytest.approx(0.02, rel=0.2)
    assert torch.count_nonzero(pred.predictor_proj.bias) == 0
    assert predictor(zero_init_mask_tokens=False).mask_tokens[0].std().item() == pytest.approx(0.02, rel=0.5)
    dt = torch.nn.functional.softplus(predictor(dt_init="mamba").predictor_blocks[0].mixer.dt_proj.bias)
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001


@pytest.mark.parametrize("every", [0, 1])
def test_jepa_steps_predictor_flops_are_the_counted_forward_and_backward(every):
    enc = VideoMamba(img_size=64, num_frames=4, embed_dim=D, depth=1)
    pred = predictor()
    pred.set_activation_checkpointing(every)
    shapes = [(CTX.shape[1], TGT.shape[1]), (2, 5)]
    zs = [torch.randn(2, k, D, requires_grad=True) for k, _ in shapes]  # the context encoder's outputs
    ctxs, tgts = [CTX, CTX[:, :2]], [TGT, torch.arange(5).expand(2, 5) + 20]

    def step():
        sum(o.square().mean() for o in pred(zs, ctxs, tgts)).backward()

    per_sample = jepa_step(enc, pred, shapes)["predictor"]
    recompute = sum(pred.recompute_flops(k_ctx + k_tgt) for k_ctx, k_tgt in shapes)
    assert recompute == (sum(pred.units_flops(n) - len(pred.predictor_blocks) * 2 * n * DP * 2 * DP
                             for n in (9, 7)) if every else 0)  # all but each out_proj runs again
    assert counted_flops(step) == pytest.approx(2 * per_sample, rel=1e-9)  # batch 2


def test_activation_checkpointing_gives_the_same_gradients():
    z = torch.randn(2, CTX.shape[1], D)
    grads = []
    for every in (0, 1):
        pred = predictor().train()
        pred.set_activation_checkpointing(every)
        sum(o.square().mean() for o in pred([z, z], [CTX, CTX], [TGT, TGT[:, :2]])).backward()  # both tokens
        grads.append([p.grad.clone() for p in pred.parameters() if p.requires_grad])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))
    assert pred.recompute_fraction() == 1.0 and pred.attention_backend() is None


def test_the_v1_recipe_builds_it_and_keeps_its_init(tmp_path):
    for backbone in ("vit_tiny", "videomamba_tiny"):
        model = {"model_name": backbone, "pred_type": "mamba", "pred_depth": 2, "drop_path": 0.1}
        cfg = load_config(raw=tiny_raw(None, str(tmp_path), model=model))
        models = RECIPES.get("vjepa")(cfg).build_models().all()
        pred = models["predictor"]
        assert isinstance(pred, MambaPredictor) and len(pred.mask_tokens) == 2 and pred.width == 32
        assert pred.predictor_blocks[0].mixer.out_proj.weight.abs().max() > 0.05  # kaiming, not re-initialised
        assert pred.drop_path.p == 0.1 and pred.predictor_blocks[1].drop_path.p == 0.0
    transformer = build_predictor(load_config(raw=tiny_raw(None, str(tmp_path))), models["encoder"])
    assert not isinstance(transformer, MambaPredictor)


def refused(raw, match):
    with pytest.raises(ConfigError, match=match):
        load_config(raw=raw)


def test_config_rules():
    mamba = {"pred_type": "mamba"}
    refused(tiny_raw(None, "r", model={"pred_type": "mambaa"}), r"model.pred_type: must be transformer or mamba, "
                                                                 r"got 'mambaa'")
    v2 = r"model.pred_type: mamba is a V-JEPA 1 option \(app: vjepa; its fixed sin-cos table, no RoPE\): the vjepa2"
    refused(tiny_v2_raw(None, "r", model={**mamba, "pred_num_heads": None}), v2)
    refused(tiny_ijepa_raw("i", "r", meta=mamba), r"meta.pred_type: must be transformer, got 'mamba'")
    refused(tiny_raw(None, "r", model={**mamba, "pred_num_heads": 2}), r"model.pred_num_heads: the Mamba predictor")
    refused(tiny_raw(None, "r", model={**mamba, "use_rope": True}), v2)  # RoPE makes a file V-JEPA 2's
    # the VideoMamba options apply to the Mamba predictor too, so a ViT encoder may set them with it
    cfg = load_config(raw=tiny_raw(None, "r", model={**mamba, "mamba_dt_init": "mamba", "drop_path": 0.1}))
    assert (cfg.model.pred_type, cfg.model.mamba_dt_init) == ("mamba", "mamba")
    refused(tiny_raw(None, "r", model={"drop_path": 0.1}), r"model.drop_path: applies to VideoMamba backbones only")
    assert load_config(raw=tiny_raw(None, "r")).model.pred_type == "transformer"


def losses(folder: Path, tag: str) -> list[float]:
    with open(folder / f"{tag}_r0.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


@pytest.mark.slow
def test_a_tiny_videomamba_with_the_mamba_predictor_trains_with_a_falling_loss(tmp_path, video_csv):
    from jepa_scale.trainer import train

    folder = tmp_path / "run"
    cfg = load_config(TINY, [f"data.datasets=[{video_csv}]", "data.crop_size=64", "data.num_frames=4",
                             "data.batch_size=4", "data.num_workers=0", "model.depth=2", "model.pred_depth=2",
                             "model.pred_embed_dim=64", "model.pred_type=mamba", "meta.dtype=float32",
                             "optimization.max_steps=24", "optimization.ipe=8", "optimization.epochs=3",
                             "optimization.lr=0.001", f"logging.folder={folder}", "logging.tensorboard=false",
                             "distributed.engine=single"])
    start = time.perf_counter()
    out = train(cfg)
    seen = losses(folder, cfg.logging.write_tag)
    print(f"tiny VideoMamba + Mamba predictor: loss {seen[0]:.4f} -> {seen[-1]:.4f}, "
          f"{time.perf_counter() - start:.1f} s")
    assert out["step"] == 24 and len(seen) == 24
    assert sum(seen[-4:]) < 0.9 * sum(seen[:4]), seen
