import dataclasses

import pytest
import torch

from jepa_scale.config.schema import MaskConfig, PretrainConfig
from jepa_scale.models import VisionTransformer
from jepa_scale.models.predictor_v2 import PredictorV2, build_predictor_v2
from tests import reference_vjepa2_predictor as ref
from tests.reference_vjepa import randomise

GRID_TOKENS = 64  # 8 frames (4 tubelets) of 64x64 pixels: a 4x4x4 grid


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def pair(backend="sdpa", seed=0, **options):
    official = randomise(ref.VisionTransformerPredictor(
        img_size=64, patch_size=16, num_frames=8, tubelet_size=2, embed_dim=48, predictor_embed_dim=64, depth=2,
        num_heads=2, use_mask_tokens=True, num_mask_tokens=3, use_rope=True, use_sdpa=backend == "sdpa",
        **options), seed)
    ours = PredictorV2(img_size=64, patch_size=16, num_frames=8, tubelet_size=2, embed_dim=48, predictor_embed_dim=64,
                       depth=2, num_heads=2, num_mask_tokens=3, attention=backend, **options)
    ours.load_state_dict(official.state_dict(), strict=True)
    return ours, official


def split(n_ctx, n_tgt, sort, seed, batch=2):
    """Disjoint context and target index lists [batch, n] of the grid, ascending or in random order."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.stack([torch.randperm(GRID_TOKENS, generator=g) for _ in range(batch)])
    ctx, tgt = perm[:, :n_ctx], perm[:, n_ctx:n_ctx + n_tgt]
    return (ctx.sort(1).values, tgt.sort(1).values) if sort else (ctx, tgt)


def context(masks_ctx, seed=0):
    return torch.randn(masks_ctx.size(0), masks_ctx.size(1), 48, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("backend", ["sdpa", "math"])
@pytest.mark.parametrize("sort", [True, False])
def test_official_layout_loads_and_predicts_the_same(backend, sort):
    ours, official = pair(backend)
    assert list(ours.state_dict()) == list(official.state_dict())
    assert not any("pos_embed" in k for k in ours.state_dict())
    (ca, ta), (cb, tb) = split(10, 30, sort, 1), split(25, 15, sort, 2)
    za, zb = context(ca, 3), context(cb, 4)
    with torch.no_grad():
        preds = ours([za, zb], [ca, cb], [ta, tb], mask_index=1)
        assert [p.shape for p in preds] == [(2, 30, 48), (2, 15, 48)]
        assert rel_err(preds[0], official(za, ca, ta, mask_index=1)) < 1e-5
        assert rel_err(preds[1], official(zb, cb, tb, mask_index=1)) < 1e-5


def test_context_order_does_not_change_the_prediction_and_targets_keep_their_order():
    ours = pair()[0]
    ctx, tgt = split(20, 20, False, 5)
    z = context(ctx)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        base = ours(z, ctx, tgt)
        # bitwise: after the sort the blocks see the very same sequence (RoPE attention alone is only
        # permutation-equivariant up to rounding)
        assert torch.equal(ours(z[:, perm], ctx[:, perm], tgt), base)
        assert torch.equal(ours(z, ctx, tgt[:, perm]), base[:, perm])


def test_mask_token_follows_mask_index():
    ours, official = pair()
    ctx, tgt = split(12, 20, True, 7)
    z = context(ctx)
    with torch.no_grad():
        outs = [ours(z, ctx, tgt, mask_index=i) for i in range(4)]
        for i in range(3):
            assert rel_err(outs[i], official(z, ctx, tgt, mask_index=i)) < 1e-5
        assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[1], outs[2])
        assert torch.equal(outs[3], outs[0])  # index modulo the token count, as the official model
        per_config = ours([z, z], [ctx, ctx], [tgt, tgt], mask_index=[2, 1])
        assert torch.equal(per_config[0], outs[2]) and torch.equal(per_config[1], outs[1])
    # one frames-per-clip group: every mask config uses token 0, the others get no gradient
    preds = ours([z, z[:, :8]], [ctx, ctx[:, :8]], [tgt, tgt[:, :5]])
    sum(p.square().mean() for p in preds).backward()
    assert ours.mask_tokens[0].grad.abs().sum() > 0
    assert ours.mask_tokens[1].grad is None and ours.mask_tokens[2].grad is None
    with pytest.raises(ValueError, match="2 mask indices for 1 mask configs"):
        ours([z], [ctx], [tgt], mask_index=[0, 1])


def test_return_all_tokens_and_chop_match_the_official_options():
    ctx, tgt = split(12, 20, False, 8)
    z = context(ctx)
    for options in ({"return_all_tokens": True}, {"return_all_tokens": True, "chop_last_n_tokens": 5}):
        ours, official = pair(**options)
        with torch.no_grad():
            out = ours(z, ctx, tgt)
            assert out.shape == (2, 32 - options.get("chop_last_n_tokens", 0), 48)
            assert rel_err(out, official(z, ctx, tgt, mask_index=0)) < 1e-5
    with pytest.raises(ValueError, match="needs return_all_tokens"):
        PredictorV2(embed_dim=48, predictor_embed_dim=64, depth=1, num_heads=2, chop_last_n_tokens=5)


def test_autocast_keeps_the_official_precision():
    # the fp32 mask tokens promote the concatenated stream to fp32 in both models
    ours, official = pair()
    ctx, tgt = split(12, 20, True, 9)
    z = context(ctx)
    stream = []
    ours.predictor_blocks[0].register_forward_pre_hook(lambda module, args: stream.append(args[0].dtype))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out, expected = ours(z, ctx, tgt), official(z, ctx, tgt, mask_index=0)
    assert stream == [torch.float32] and out.dtype == torch.bfloat16 and torch.equal(out, expected)


def test_grid_option_positions_indices_in_another_grid():
    ours = pair()[0]
    ctx, tgt = split(12, 20, True, 10)
    z = context(ctx)
    with torch.no_grad():
        assert torch.equal(ours(z, ctx, tgt, grid=(4, 4, 4)), ours(z, ctx, tgt))
        assert not torch.allclose(ours(z, ctx, tgt, grid=(2, 4, 8)), ours(z, ctx, tgt), atol=1e-3)


@pytest.mark.parametrize("dim,millions", [(1024, 22.08), (1280, 22.28), (1408, 22.38)])
def test_parameter_count_with_the_official_six_mask_tokens(dim, millions):
    with torch.device("meta"):
        ours = PredictorV2(img_size=256, num_frames=16, embed_dim=dim, num_mask_tokens=6)
        official = ref.VisionTransformerPredictor(img_size=256, num_frames=16, embed_dim=dim, depth=12,
                                                  use_mask_tokens=True, num_mask_tokens=6, use_rope=True)
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in official.parameters()) and round(count / 1e6, 2) == millions
    assert ours.attention_head_dim() == 32


def test_activation_checkpointing_gives_identical_outputs_and_gradients():
    ours = pair()[0]
    ctx, tgt = split(12, 20, False, 11)
    z = context(ctx).requires_grad_()

    def run(every):
        ours.zero_grad()
        z.grad = None
        ours.set_activation_checkpointing(every)
        out = ours(z, ctx, tgt, mask_index=1)
        out.square().mean().backward()
        return out.detach(), [p.grad.clone() for p in ours.parameters() if p.grad is not None] + [z.grad.clone()]

    (out_a, grads_a), (out_b, grads_b) = run(0), run(1)
    assert ours.recompute_fraction() == 1.0 and torch.equal(out_a, out_b) and len(grads_a) == len(grads_b)
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(grads_a, grads_b))


def test_build_from_config_follows_the_encoder_and_the_model_keys():
    base = PretrainConfig()
    m = dataclasses.replace(base.model, model_name="vit_tiny", depth=1, embed_dim=96, num_heads=3, use_rope=True,
                            pred_depth=2, pred_embed_dim=64, pred_num_heads=2, rope_variant="corrected",
                            use_activation_checkpointing=True)
    cfg = dataclasses.replace(base, model=m, data=dataclasses.replace(base.data, crop_size=64, num_frames=8),
                              mask=[MaskConfig(), MaskConfig()])
    enc = VisionTransformer(img_size=64, num_frames=8, embed_dim=96, depth=1, num_heads=3, use_rope=True)
    pred = build_predictor_v2(cfg, enc)
    assert len(pred.mask_tokens) == 2 and len(build_predictor_v2(cfg, enc, num_mask_tokens=10).mask_tokens) == 10
    assert pred.grid == (4, 4, 4) and pred.attention_head_dim() == 32 and pred.recompute_fraction() == 1.0
    assert pred.predictor_blocks[0].attn.variant == "corrected" and all(torch.all(t == 0) for t in pred.mask_tokens)
    random_tokens = build_predictor_v2(dataclasses.replace(cfg, model=dataclasses.replace(
        m, zero_init_mask_tokens=False)), enc).mask_tokens
    assert all(0 < t.std() < 0.03 for t in random_tokens)
    x = torch.randn(2, 3, 8, 64, 64)
    ctx, tgt = split(12, 20, True, 12)
    with torch.no_grad():
        preds = pred(enc(x, masks=[ctx, ctx[:, :6]]), [ctx, ctx[:, :6]], [tgt, tgt[:, :9]])
    assert [p.shape for p in preds] == [(2, 20, 96), (2, 9, 96)]
