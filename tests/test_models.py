import math

import pytest
import torch

from jepa_scale.models import PRESETS, Predictor, VisionTransformer, attention, preset_arch
from jepa_scale.models.pos_embed import sincos_2d, sincos_3d
from jepa_scale.recipes.vjepa import reinit_like_v1_train
from tests.reference_vjepa import RefEncoder, RefPredictor, np_sincos_2d, np_sincos_3d, randomise


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("name,millions", [("vit_large", 303.9), ("vit_huge", 631.6), ("vit_giant", 1012.2)])
def test_preset_parameter_counts(name, millions):
    with torch.device("meta"):
        m = VisionTransformer(**preset_arch(name))
    assert round(sum(p.numel() for p in m.parameters() if p.requires_grad) / 1e6, 1) == millions


def test_gigantic_has_the_4x_mlp_of_official_weights():
    p = PRESETS["vit_gigantic"]
    assert (p.embed_dim, p.depth, p.num_heads, p.mlp_ratio, p.patch_size) == (1664, 48, 16, 4.0, 14)


def test_token_counts():
    with torch.device("meta"):
        assert VisionTransformer(img_size=224, num_frames=16, embed_dim=48, depth=1, num_heads=2).num_patches == 1568
        assert VisionTransformer(img_size=384, num_frames=16, embed_dim=48, depth=1, num_heads=2).num_patches == 4608


@pytest.mark.parametrize("dim,up", [(1024, True), (1280, True), (384, True), (1024, False), (192, True)])
def test_sincos_3d_matches_reference_formula(dim, up):
    ours = sincos_3d(dim, 14, 8, uniform_power=up)
    ref = torch.from_numpy(np_sincos_3d(dim, 14, 8, up)).float()
    assert torch.equal(ours, ref)


def test_sincos_3d_row_order_is_t_outermost():
    table = sincos_3d(192, 4, 3, uniform_power=True)  # 64 dims per axis
    # rows 0 and 16 differ only in time: the spatial parts (columns 64:) are equal
    assert torch.equal(table[0, 64:], table[16, 64:]) and not torch.equal(table[0, :64], table[16, :64])
    assert torch.equal(table[0, :64], table[1, :64])  # neighbours along w share the time part


def test_sincos_2d_matches_reference_formula():
    assert torch.equal(sincos_2d(384, 14), torch.from_numpy(np_sincos_2d(384, 14)).float())


def test_attention_backends_agree():
    q, k, v = (torch.randn(2, 3, 50, 16) for _ in range(3))
    assert torch.allclose(attention(q, k, v, "sdpa"), attention(q, k, v, "math"), atol=1e-5)
    with pytest.raises(ValueError, match="unknown attention backend"):
        attention(q, k, v, "nope")


def pair(seed=0):
    enc = VisionTransformer(img_size=64, patch_size=16, num_frames=4, tubelet_size=2, embed_dim=48, depth=2,
                            num_heads=2, uniform_power=True)
    pred = Predictor(img_size=64, patch_size=16, num_frames=4, tubelet_size=2, embed_dim=48, predictor_embed_dim=32,
                     depth=1, num_heads=2, uniform_power=True)
    ref_enc, ref_pred = randomise(RefEncoder(), seed), randomise(RefPredictor(), seed + 1)
    enc.load_state_dict(ref_enc.state_dict())
    pred.load_state_dict(ref_pred.state_dict())
    return enc, pred, ref_enc, ref_pred


@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_encoder_and_predictor_match_reference_transcription(backend):
    enc, pred, ref_enc, ref_pred = pair()
    enc.set_attention_backend(backend)
    pred.set_attention_backend(backend)
    x = torch.randn(3, 3, 4, 64, 64)
    g = torch.Generator().manual_seed(0)
    perm = torch.stack([torch.randperm(32, generator=g) for _ in range(3)])
    ctx, tgt = perm[:, :12].sort(1).values, perm[:, 12:].sort(1).values
    with torch.no_grad():
        assert rel_err(enc(x), ref_enc(x)) < 1e-5
        z, z_ref = enc(x, masks=ctx), ref_enc(x, masks=ctx)
        assert z.shape == (3, 12, 48) and rel_err(z, z_ref) < 1e-5
        for i in (0, 1):
            p, p_ref = pred(z, ctx, tgt, mask_index=i), ref_pred(z_ref, ctx, tgt, i)
            assert p.shape == (3, 20, 48) and rel_err(p, p_ref) < 1e-5
        # the two mask tokens really differ in effect
        assert not torch.allclose(pred(z, ctx, tgt, 0), pred(z, ctx, tgt, 1))


def test_multi_mask_forward_embeds_once_and_equals_single_masks():
    enc = pair()[0]
    x = torch.randn(2, 3, 4, 64, 64)
    m1, m2 = torch.tensor([[0, 3, 5], [1, 2, 30]]), torch.tensor([[4, 7, 8, 9, 31], [0, 1, 2, 3, 4]])
    calls = []
    enc.patch_embed.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        outs = enc(x, masks=[m1, m2])
        assert len(calls) == 1
        assert torch.allclose(outs[0], enc(x, masks=m1), atol=1e-6) and torch.allclose(outs[1], enc(x, masks=m2), atol=1e-6)


def test_masked_forward_sees_only_kept_tokens():
    enc = pair()[0]
    x = torch.randn(1, 3, 4, 64, 64)
    keep = torch.tensor([[0, 1, 2, 3]])  # tokens of the top-left 16x64 strip of frames 0-1
    y = x.clone()
    y[:, :, :, 32:] = torch.randn_like(y[:, :, :, 32:])  # change only rows of other tokens
    with torch.no_grad():
        assert torch.equal(enc(x, masks=keep), enc(y, masks=keep))
        assert not torch.equal(enc(x), enc(y))


def test_positions_resize_for_other_inputs():
    enc = pair()[0]
    with torch.no_grad():
        assert enc(torch.randn(1, 3, 8, 96, 96)).shape == (1, 4 * 6 * 6, 48)


def test_image_encoder():
    enc = VisionTransformer(img_size=64, num_frames=1, embed_dim=48, depth=1, num_heads=2)
    with torch.no_grad():
        assert enc(torch.randn(2, 3, 64, 64)).shape == (2, 16, 48)
        assert enc(torch.randn(2, 3, 96, 96)).shape == (2, 36, 48)


def test_init_rescale_and_v1_reinit():
    torch.manual_seed(0)
    enc = VisionTransformer(img_size=64, num_frames=4, embed_dim=256, depth=8, num_heads=4)
    last = enc.blocks[7].attn.proj.weight.std().item()
    assert abs(last - 0.02 / math.sqrt(16)) < 0.001  # model-class init divides block 8 by sqrt(2*8)
    reinit_like_v1_train(enc)
    assert abs(enc.blocks[7].attn.proj.weight.std().item() - 0.02) < 0.002  # the V1 script undoes it
    assert torch.all(enc.blocks[0].attn.qkv.bias == 0) and torch.all(enc.norm.weight == 1)


def test_mask_tokens_zero_initialised_and_not_full_length():
    pred = Predictor(img_size=64, num_frames=4, embed_dim=48, predictor_embed_dim=32, depth=1, num_heads=2)
    assert all(torch.all(t == 0) for t in pred.mask_tokens)
    assert [tuple(t.shape) for t in pred.mask_tokens] == [(1, 1, 32), (1, 1, 32)]


def test_activation_checkpointing_gives_the_same_gradients_and_recomputes(tmp_path):
    from jepa_scale.config import load_config
    from jepa_scale.recipes.objective import jepa_loss, predict, target_features
    from tests.conftest import tiny_raw, vjepa_models

    def grads(checkpointing):
        cfg = load_config(raw=tiny_raw(None, str(tmp_path), model={"use_activation_checkpointing": checkpointing}))
        enc, pred, tgt = vjepa_models(cfg)
        calls = []
        enc.blocks[0].attn.register_forward_pre_hook(lambda *a: calls.append(1))  # recompute stops early: a pre-hook
        x = torch.randn(2, 3, 4, 64, 64, generator=torch.Generator().manual_seed(0))
        ctx, tg = [torch.tensor([[0, 5, 9, 20], [1, 2, 3, 4]])], [torch.tensor([[1, 2, 30], [0, 9, 31]])]
        targets, _ = target_features(tgt, x, tg)
        loss = jepa_loss(predict(enc, pred, x, ctx, tg), targets)
        forward_calls = len(calls)
        loss.backward()
        return loss, [p.grad for p in list(enc.parameters()) + list(pred.parameters()) if p.grad is not None], \
            len(calls) - forward_calls

    loss_a, grads_a, recomputed_a = grads(False)
    loss_b, grads_b, recomputed_b = grads(True)
    assert torch.equal(loss_a, loss_b) and recomputed_a == 0 and recomputed_b == 1
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads_a, grads_b))


def test_attention_kernel_report_names_what_really_ran():
    from jepa_scale.models.attention import attention_kernels

    report = attention_kernels(torch.device("cpu"))
    assert "scaled_dot_product" in report["sdpa"]  # the CPU fused kernel SDPA dispatched to
    assert "bmm" in report["math"] and "scaled_dot_product" not in report["math"]
    try:
        import xformers  # noqa: F401
    except ImportError:
        assert report["xformers"].startswith("unavailable") and "xformers" in report["xformers"]
