import dataclasses
import math

import pytest
import torch

from jepa_scale.config.schema import PretrainConfig
from jepa_scale.models import BACKBONES, VisionTransformer, preset_arch
from jepa_scale.models.rope import RoPEAttention, axis_dim, grid_positions, rope_tables, rotate
from tests import reference_vjepa2 as ref
from tests.reference_vjepa import randomise


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("head_dim,d", [(64, 20), (80, 26), (88, 28), (104, 34), (32, 10)])
def test_dimension_split(head_dim, d):
    assert axis_dim(head_dim) == d == ref.RoPEAttention(head_dim, 1).d_dim


def test_grid_positions_from_flat_indices():
    ids = torch.tensor([[0, 5, 6, 23, 47]])  # grid (T', H', W') = (2, 4, 6): 24 tokens a frame
    assert grid_positions(ids, (2, 4, 6)).tolist() == [[[0, 0, 0], [0, 0, 5], [0, 1, 0], [0, 3, 5], [1, 3, 5]]]


def official_rotation(q, ids, grid, dtype=None):
    """q rotated by the transcription: its own position split and per-axis rotation, all heads."""
    attn = ref.RoPEAttention(q.size(1) * q.size(-1), q.size(1))
    T, H, W = grid
    return attn.rotate_qk(q, q, ids, q.size(2), q.device, T, H, W)[0]


@pytest.mark.parametrize("head_dim", [64, 80, 32, 30])
@pytest.mark.parametrize("masked", [False, True])
def test_rotation_equals_the_transcription(head_dim, masked):
    g = torch.Generator().manual_seed(head_dim)
    grid = (3, 4, 5)
    ids = torch.stack([torch.randperm(60, generator=g)[:17].sort().values for _ in range(2)]) if masked else None
    q = torch.randn(2, 3, 17 if masked else 60, head_dim, generator=g)
    pos = grid_positions(ids if masked else torch.arange(60)[None], grid)
    ours = rotate(q, *rope_tables(pos, head_dim, q.dtype))
    assert torch.equal(ours, official_rotation(q, ids, grid))


def test_rotation_equals_the_transcription_in_bfloat16():
    # the official angles are computed in q's dtype; ours too, so half-precision features stay equal
    q = torch.randn(1, 2, 60, 64).bfloat16()
    ours = rotate(q, *rope_tables(grid_positions(torch.arange(60)[None], (3, 4, 5)), 64, q.dtype))
    assert ours.dtype == torch.bfloat16 and torch.equal(ours, official_rotation(q, None, (3, 4, 5)))


def basis_rotated(j, p=3, variant="official"):
    """Basis vector e_j of a 60-wide head (20 per axis, the time slice first) rotated at time position p."""
    x = torch.zeros(1, 1, 1, 60)
    x[..., j] = 1.0
    return rotate(x, *rope_tables(torch.tensor([[[p, 0, 0]]]), 60, x.dtype, variant))[0, 0, 0]


def test_reference_check_values_of_the_tiled_frequencies():
    e0, e1, e18, e19 = (basis_rotated(j) for j in (0, 1, 18, 19))
    assert torch.allclose(e0[:2], torch.tensor([-0.9900, 0.9300]), atol=1e-4) and e0[2:].abs().max() == 0
    assert torch.allclose(e1[:2], torch.tensor([-0.1411, 0.3676]), atol=1e-4)
    assert torch.allclose(e18[18:20], torch.tensor([1.0000, 0.0008]), atol=1e-4)
    assert torch.allclose(e19[18:20], torch.tensor([-0.0019, 1.0000]), atol=1e-4)
    omega = lambda i: 10000 ** (-i / 10)  # noqa: E731
    assert math.isclose(e0[0].item(), math.cos(3 * omega(0)), abs_tol=1e-6)
    assert math.isclose(e0[1].item(), math.sin(3 * omega(1)), abs_tol=1e-6)  # the pair's partner: another frequency


def test_corrected_variant_rotates_each_pair_by_one_frequency():
    e0 = basis_rotated(0, variant="corrected")
    assert torch.allclose(e0[:2], torch.tensor([math.cos(3.0), math.sin(3.0)]), atol=1e-6)


def rotated_dot(q, k, pi, pj, variant):
    tables = rope_tables(torch.tensor([[pi, pj]]), q.size(-1), q.dtype, variant)
    both = rotate(torch.stack([q, k])[None, None], *tables)[0, 0]
    return (both[0] @ both[1]).item()


def test_corrected_variant_depends_only_on_relative_positions():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(64, dtype=torch.float64, generator=g), torch.randn(64, dtype=torch.float64, generator=g)
    pi, pj = [2, 5, 1], [0, 3, 7]
    base = rotated_dot(q, k, pi, pj, "corrected")
    for shift in ([1, 0, 0], [0, 4, 0], [0, 0, 9], [3, 2, 5]):
        shifted = [a + s for a, s in zip(pi, shift)], [b + s for b, s in zip(pj, shift)]
        assert math.isclose(rotated_dot(q, k, *shifted, "corrected"), base, rel_tol=1e-9, abs_tol=1e-9)
    # the official tiling breaks it (and the norm), which is why the variant exists
    assert abs(rotated_dot(q, k, [3, 7, 1], [1, 5, 7], "official") - rotated_dot(q, k, pi, pj, "official")) > 1e-3
    x = q[None, None, None]
    norm = lambda v: rotate(x, *rope_tables(torch.tensor([[[4, 4, 4]]]), 64, x.dtype, v)).norm().item()  # noqa: E731
    assert math.isclose(norm("corrected"), q.norm().item(), rel_tol=1e-12) and abs(norm("official") - q.norm()) > 1e-3


def pair(dim=64, heads=2, frames=4, img=64, seed=0, backend="sdpa", depth=2):
    official = randomise(ref.VisionTransformer(img_size=img, patch_size=16, num_frames=frames, tubelet_size=2,
                                               embed_dim=dim, depth=depth, num_heads=heads,
                                               use_sdpa=backend == "sdpa"), seed)
    ours = VisionTransformer(img_size=img, patch_size=16, num_frames=frames, tubelet_size=2, embed_dim=dim,
                             depth=depth, num_heads=heads, attention=backend, use_rope=True)
    ours.load_state_dict(official.state_dict(), strict=True)
    return ours, official


@pytest.mark.parametrize("dim,heads", [(64, 2), (128, 2), (96, 3)])  # head dims 32, 64, 32 (tails 2, 4, 2)
@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_rope_encoder_matches_the_transcription(dim, heads, backend):
    ours, official = pair(dim, heads, backend=backend)
    assert list(ours.state_dict()) == list(official.state_dict())
    x = torch.randn(2, 3, 4, 64, 64)
    g = torch.Generator().manual_seed(1)
    keep = torch.stack([torch.randperm(32, generator=g)[:11].sort().values for _ in range(2)])
    with torch.no_grad():
        assert rel_err(ours(x), official(x)) < 1e-5
        assert rel_err(ours(x, masks=keep), official(x, masks=keep)) < 1e-5
        m2 = keep.flip(1)  # unsorted indices keep their own positions (the official batches equal-length masks)
        outs = ours(x, masks=[keep, m2])
        assert rel_err(torch.cat(outs), official(x, masks=[keep, m2])) < 1e-5


def test_masked_tokens_rotate_with_their_grid_positions():
    ours = pair()[0]
    x = torch.randn(1, 3, 4, 64, 64)
    keep = torch.tensor([[3, 12, 29]])
    with torch.no_grad():
        full = ours(x)
        alone = ours(x, masks=keep)
        # the same tokens given positions 0, 1, 2 instead would differ
        tokens = ours.patch_embed(x)[:, [3, 12, 29]]
        renumbered = ours.encode_tokens(tokens, torch.tensor([[0, 1, 2]]), ours.token_grid(x))
    assert full.shape == (1, 32, 64) and alone.shape == (1, 3, 64)
    assert torch.allclose(ours.encode_tokens(tokens, keep, ours.token_grid(x)), alone)
    assert not torch.allclose(renumbered, alone, atol=1e-3)


def test_other_input_sizes_and_images_follow_the_real_grid():
    ours, official = pair()
    with torch.no_grad():
        for shape in ((1, 3, 8, 64, 96), (1, 3, 4, 96, 64), (1, 3, 2, 64, 64)):
            x = torch.randn(*shape)
            assert rel_err(ours(x), official(x)) < 1e-5
    img, img_ref = pair(frames=1)
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        assert img(x).shape == (2, 20, 64) and rel_err(img(x), img_ref(x)) < 1e-5


def test_no_position_table_under_rope():
    ours = pair()[0]
    assert ours.pos_embed is None and not any("pos_embed" in k for k in ours.state_dict())
    v1 = VisionTransformer(img_size=64, num_frames=4, embed_dim=64, depth=1, num_heads=2)
    assert "pos_embed" in v1.state_dict()
    assert not isinstance(v1.blocks[0].attn, RoPEAttention) and isinstance(ours.blocks[0].attn, RoPEAttention)


def test_corrected_variant_builds_with_the_same_keys_and_differs():
    official = pair()[0]
    corrected = VisionTransformer(img_size=64, num_frames=4, embed_dim=64, depth=2, num_heads=2, use_rope=True,
                                  rope_variant="corrected")
    corrected.load_state_dict(official.state_dict(), strict=True)
    x = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        assert rel_err(corrected(x), official(x)) > 1e-3
    with pytest.raises(ValueError, match="unknown RoPE variant"):
        VisionTransformer(img_size=64, num_frames=4, embed_dim=64, depth=1, num_heads=2, use_rope=True,
                          rope_variant="interleaved")


def test_activation_checkpointing_with_rope_gives_the_same_gradients():
    ours = pair()[0]
    x, keep = torch.randn(2, 3, 4, 64, 64), torch.tensor([[0, 5, 9, 20], [1, 2, 3, 31]])

    def grads(every):
        ours.zero_grad()
        ours.set_activation_checkpointing(every)
        ours(x, masks=keep).square().mean().backward()
        return [p.grad.clone() for p in ours.parameters()]

    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads(0), grads(1)))


@pytest.mark.parametrize("name,millions", [("vit_large", 303.9), ("vit_huge", 631.6), ("vit_giant_xformers", 1012.2),
                                           ("vit_gigantic_xformers", 1598.5)])
def test_v2_preset_parameter_counts_with_rope(name, millions):
    with torch.device("meta"):
        m = VisionTransformer(num_frames=16, use_rope=True, **preset_arch(name))
    assert round(sum(p.numel() for p in m.parameters()) / 1e6, 1) == millions
    assert m.attention_head_dim() == {"vit_large": 64, "vit_huge": 80}.get(name, 64)


def rope_config(**model):
    base = PretrainConfig()
    m = dataclasses.replace(base.model, model_name="vit_tiny", depth=2, embed_dim=96, num_heads=3, **model)
    d = dataclasses.replace(base.data, crop_size=64, num_frames=4)
    return dataclasses.replace(base, model=m, data=d)


def test_backbone_registry_builds_rope_encoders_and_the_v1_recipe_refuses_them():
    cfg = rope_config(use_rope=True, rope_variant="corrected")
    enc = BACKBONES.get("vit_tiny")(cfg)
    assert enc.pos_embed is None and enc.blocks[0].attn.variant == "corrected"
    assert BACKBONES.get("vit_giant_xformers") is not None
    problems = dict(cfg.problems())
    assert "is V-JEPA 2's" in problems["model.use_rope"]  # the V1 root refuses it; files with it read as V2
    assert "model.rope_variant" not in problems
    bad = dict(rope_config(rope_variant="interleaved").problems())
    assert "official, corrected" in bad["model.rope_variant"] and "model.use_rope" not in bad
    assert rope_config().problems() == []


def test_v2_eval_config_builds_a_rope_backbone_with_the_official_layout():
    from jepa_scale.evals.spec import encoder_config

    o = type("Overrides", (), dict(embed_dim=64, depth=2, num_heads=2, mlp_ratio=None))()
    cfg = encoder_config("vit_large", o, resolution=64, frames=4, tubelet=2, patch=16, uniform_power=False,
                         use_rope=True, use_sdpa=True)
    enc = BACKBONES.get("vit_large")(cfg)
    official = randomise(ref.VisionTransformer(img_size=64, num_frames=4, embed_dim=64, depth=2, num_heads=2), 3)
    enc.load_state_dict(official.state_dict(), strict=True)
    x = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        assert rel_err(enc(x), official(x)) < 1e-5
