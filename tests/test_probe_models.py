"""The attentive probes, the multi-view aggregation and the probe checkpoint layouts against the official ones."""
import math

import pytest
import torch

from jepa_scale.checkpoint import CheckpointError, load_strict, read_checkpoint
from jepa_scale.checkpoint.probe_layout import load_probe_checkpoint, probe_checkpoint, probe_states
from jepa_scale.models.attentive_pooler import AttentiveClassifier, ProbeGrid, build_probe
from jepa_scale.models.clip_aggregation import average_probabilities, encode_clips, image_as_video
from jepa_scale.models.vit import VisionTransformer
from tests import reference_probe as ref

D, HEADS, CLASSES = 32, 4, 5
REF = {"v1": ref.V1AttentiveClassifier, "v2": ref.V2AttentiveClassifier}


def _official(layout, depth, seed=0):
    """An official probe with every parameter perturbed (zero biases and unit norms would hide a misplaced key)."""
    torch.manual_seed(seed)
    m = REF[layout](embed_dim=D, num_heads=HEADS, depth=depth, num_classes=CLASSES)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m.eval()


def _rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def _save_load(obj, tmp_path):
    path = tmp_path / "probe.pth.tar"
    torch.save(obj, path)
    return read_checkpoint(path)  # torch.load(weights_only=True)


def _official_file(layout, models, tmp_path):
    """The dict the official evals write (DDP `module.` keys), written and read back as a file."""
    states = [{"module." + k: v for k, v in m.state_dict().items()} for m in models]
    if layout == "v1":
        ckpt = {"classifier": states[0], "opt": None, "scaler": None, "epoch": 20, "batch_size": 4,
                "world_size": 64, "lr": 1e-3}
    else:
        ckpt = {"classifiers": states, "opt": None, "scaler": None, "epoch": 20, "batch_size": 4, "world_size": 64}
    return _save_load(ckpt, tmp_path)


@pytest.mark.parametrize("layout,depth,heads", [("v1", 1, 1), ("v1", 2, 1), ("v2", 4, 2)])
def test_official_probe_file_loads_strictly_and_gives_the_same_logits(layout, depth, heads, tmp_path):
    official = [_official(layout, depth, seed=i) for i in range(heads)]
    ckpt = _official_file(layout, official, tmp_path)
    ours = [build_probe(layout, D, HEADS, depth, CLASSES).eval() for _ in range(heads)]
    assert set(ours[0].state_dict()) == set(official[0].state_dict())
    assert load_probe_checkpoint(ours, ckpt, "probe.pth.tar") == (layout, None)
    x = 0.05 * torch.randn(3, 24, D)  # small tokens: a wrong LayerNorm eps shows
    with torch.no_grad():
        for o, m in zip(official, ours):
            assert _rel_err(m(x), o(x)) < 1e-5
        grid = ProbeGrid(ours)(x)
    assert len(grid) == heads and all(torch.equal(g, m(x)) for g, m in zip(grid, ours))


def test_parameter_names_are_the_official_ones():
    v1 = set(build_probe("v1", D, HEADS, 2, CLASSES).state_dict())
    v2 = set(build_probe("v2", D, HEADS, 2, CLASSES).state_dict())
    assert {"pooler.query_tokens", "pooler.cross_attention_block.norm1.weight",
            "pooler.cross_attention_block.xattn.q.weight", "pooler.cross_attention_block.xattn.kv.bias",
            "pooler.cross_attention_block.xattn.proj.weight", "pooler.cross_attention_block.mlp.fc2.weight",
            "pooler.blocks.0.attn.qkv.weight", "pooler.blocks.0.norm2.bias", "linear.weight", "linear.bias"} <= v1
    assert v1 - v2 == {"pooler.cross_attention_block.xattn.proj.weight", "pooler.cross_attention_block.xattn.proj.bias"}
    assert not v2 - v1
    assert not any(k.startswith("pooler.blocks") for k in build_probe("v1", D, HEADS, 1, CLASSES).state_dict())
    norms = [m for m in build_probe("v2", D, HEADS, 2, CLASSES).modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 4 and all(n.eps == 1e-5 for n in norms)


def test_v1_proj_is_in_the_state_dict_but_never_applied():
    m = build_probe("v1", D, HEADS, 2, CLASSES).eval()
    x = torch.randn(2, 10, D)
    before = m(x)
    with torch.no_grad():
        m.pooler.cross_attention_block.xattn.proj.weight.normal_()
        m.pooler.cross_attention_block.xattn.proj.bias.normal_()
    assert torch.equal(m(x), before)


def test_math_backend_matches_the_official_explicit_attention():
    official = _official("v2", 3)
    for mod in official.modules():
        if hasattr(mod, "use_sdpa"):
            mod.use_sdpa = False
    ours = build_probe("v2", D, HEADS, 3, CLASSES, backend="math").eval()
    load_strict(ours, official.state_dict(), "classifier", "test")
    x = torch.randn(2, 16, D)
    with torch.no_grad():
        assert _rel_err(ours(x), official(x)) < 1e-5


@pytest.mark.parametrize("layout,depth", [("v1", 1), ("v1", 3), ("v2", 1), ("v2", 4)])
def test_one_seed_gives_the_official_init(layout, depth, monkeypatch):
    # recent torch draws trunc_normal_ by rejection, the official by inverse CDF: same law, other numbers
    monkeypatch.setattr(torch.nn.init, "trunc_normal_", ref.trunc_normal_)
    torch.manual_seed(7)
    official = REF[layout](embed_dim=D, num_heads=HEADS, depth=depth, num_classes=CLASSES)
    torch.manual_seed(7)
    ours = build_probe(layout, D, HEADS, depth, CLASSES)
    theirs = official.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in ours.state_dict().items())


def test_init_statistics():
    dim, depth = 512, 4
    torch.manual_seed(0)
    v1 = build_probe("v1", dim, 8, depth, 10).pooler
    v2 = build_probe("v2", dim, 8, depth, 10).pooler

    def std_ratio(w, divisor):
        return w.std().item() * divisor / 0.02

    for p in (v1, v2):
        assert abs(std_ratio(p.query_tokens, 1) - 1) < 0.2
        assert abs(std_ratio(p.cross_attention_block.xattn.q.weight, 1) - 1) < 0.02
        for name, t in p.named_parameters():
            if name.endswith("bias"):
                assert torch.all(t == 0), name
            elif "norm" in name:
                assert torch.all(t == 1), name
    cross1, cross2 = v1.cross_attention_block, v2.cross_attention_block
    assert abs(std_ratio(cross1.xattn.proj.weight, math.sqrt(2)) - 1) < 0.02
    assert abs(std_ratio(cross1.mlp.fc2.weight, math.sqrt(2)) - 1) < 0.02
    assert abs(std_ratio(cross2.mlp.fc2.weight, math.sqrt(2 * (depth - 1))) - 1) < 0.02
    for k in range(depth - 1):  # v1 counts its query blocks after the cross block, v2 its token blocks from 1
        for w1, w2 in ((v1.blocks[k].attn.proj.weight, v2.blocks[k].attn.proj.weight),
                       (v1.blocks[k].mlp.fc2.weight, v2.blocks[k].mlp.fc2.weight)):
            assert abs(std_ratio(w1, math.sqrt(2 * (k + 2))) - 1) < 0.02
            assert abs(std_ratio(w2, math.sqrt(2 * (k + 1))) - 1) < 0.02
        assert abs(std_ratio(v2.blocks[k].attn.qkv.weight, 1) - 1) < 0.02


def test_v2_activation_checkpointing_changes_nothing_numerically():
    torch.manual_seed(0)
    plain = build_probe("v2", D, HEADS, 3, CLASSES)
    ckpt = build_probe("v2", D, HEADS, 3, CLASSES, activation_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 12, D)
    for m in (plain, ckpt):
        m(x).square().sum().backward()
    assert all(b.checkpoint for b in ckpt.pooler.blocks)
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-7), name


def test_depth_and_layout_are_checked():
    with pytest.raises(ValueError, match="layout"):
        build_probe("v3", D, HEADS, 1, CLASSES)
    with pytest.raises(ValueError, match="depth"):
        AttentiveClassifier(D, HEADS, depth=0)


class _CountingEncoder(torch.nn.Module):
    def __init__(self, vit):
        super().__init__()
        self.vit, self.embed_dim, self.num_heads, self.batches = vit, vit.embed_dim, vit.num_heads, []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return self.vit(x)


@pytest.mark.parametrize("across", [True, False])
def test_encode_clips_matches_the_official_clip_aggregation(across):
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=32, patch_size=16, num_frames=4, tubelet_size=2, embed_dim=32, depth=1,
                            num_heads=2).eval()
    S, V, B = 2, 3, 2
    clips = [[torch.randn(B, 3, 4, 32, 32) for _ in range(V)] for _ in range(S)]
    enc = _CountingEncoder(vit)
    with torch.no_grad():
        ours = encode_clips(enc, clips, across, tubelet_size=2)
        theirs = ref.V1ClipAggregation(vit, tubelet_size=2, attend_across_segments=across)(clips)
        theirs_v2 = ref.V2ClipAggregation(vit, tubelet_size=2)(clips)
    assert enc.batches == [S * V * B]  # one encoder call for the whole sample
    if across:
        assert len(ours) == V and all(o.shape == (B, S * 8, 32) for o in ours)
        assert all(torch.equal(o, t) for o, t in zip(ours, theirs))
        assert all(torch.equal(o, t) for o, t in zip(ours, theirs_v2))
    else:
        flat = [o for view in theirs for o in view]
        assert len(ours) == V * S and all(o.shape == (B, 8, 32) for o in ours)
        assert all(torch.equal(o, t) for o, t in zip(ours, flat))
        # item v*S + s is view v of segment s, as encoding that clip alone gives
        with torch.no_grad():
            assert torch.allclose(ours[1 * S + 1], vit(clips[1][1]), atol=1e-5)


def test_encode_clips_rejects_ragged_views():
    with pytest.raises(ValueError, match="views"):
        encode_clips(lambda x: x, [[torch.zeros(1, 3, 2, 16, 16)], []], True, 2)


def test_image_as_video_repeats_the_image_in_time():
    x = torch.randn(2, 3, 8, 8)
    v = image_as_video(x, 16)
    assert v.shape == (2, 3, 16, 8, 8) and all(torch.equal(v[:, :, t], x) for t in range(16))
    v[:, :, 0] += 1  # a copy: writing one frame leaves the others and the image alone
    assert torch.equal(v[:, :, 1], x)


def test_average_probabilities_is_the_mean_of_softmaxes():
    a = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])  # softmax: [1/4, 3/4], [1/2, 1/2]
    b = torch.tensor([[math.log(3.0), 0.0], [math.log(4.0), 0.0]])  # [3/4, 1/4], [4/5, 1/5]
    expected = torch.tensor([[0.5, 0.5], [0.65, 0.35]])
    assert torch.allclose(average_probabilities([a, b]), expected, atol=1e-6)
    assert torch.allclose(average_probabilities([a]), torch.tensor([[0.25, 0.75], [0.5, 0.5]]), atol=1e-6)


def _trained(model):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 6, D)).sum().backward()
    opt.step()
    return opt.state_dict()


def test_probe_checkpoint_round_trips_in_the_v1_layout(tmp_path):
    m = build_probe("v1", D, HEADS, 1, CLASSES)
    opt = _trained(m)
    ckpt = probe_checkpoint("v1", [m.state_dict()], [opt], epoch=3, batch_size=4, world_size=2, lr=1e-3,
                            extra={"step": 7})
    assert set(ckpt) == {"classifier", "opt", "scaler", "epoch", "batch_size", "world_size", "lr", "jepa_scale"}
    assert all(k.startswith("module.") for k in ckpt["classifier"]) and ckpt["scaler"] is None
    back = _save_load(ckpt, tmp_path)
    layout, states, opts = probe_states(back, "v1.pth.tar")
    assert layout == "v1" and len(states) == 1 and set(states[0]) == set(m.state_dict())
    assert all(torch.equal(states[0][k], v) for k, v in m.state_dict().items())
    assert opts[0]["param_groups"] == opt["param_groups"] and back["jepa_scale"] == {"step": 7}
    fresh = build_probe("v1", D, HEADS, 1, CLASSES)
    load_probe_checkpoint([fresh], back, "v1.pth.tar")
    assert torch.equal(fresh.linear.weight, m.linear.weight)
    with pytest.raises(ValueError, match="exactly one"):
        probe_checkpoint("v1", [m.state_dict()] * 2, None, epoch=0, batch_size=1, world_size=1, lr=0.0)


def test_probe_checkpoint_round_trips_in_the_v2_layout(tmp_path):
    heads = [build_probe("v2", D, HEADS, 2, CLASSES) for _ in range(3)]
    opts = [_trained(h) for h in heads]
    ckpt = probe_checkpoint("v2", [h.state_dict() for h in heads], opts, epoch=1, batch_size=4, world_size=8,
                            lr=None)
    assert set(ckpt) == {"classifiers", "opt", "scaler", "epoch", "batch_size", "world_size"}
    back = _save_load(ckpt, tmp_path)
    layout, states, opts_back = probe_states(back, "latest.pt")
    assert layout == "v2" and len(states) == 3 and len(opts_back) == 3
    for h, s in zip(heads, states):
        assert all(torch.equal(s[k], v) for k, v in h.state_dict().items())
    with pytest.raises(CheckpointError, match="2 in the model"):
        load_probe_checkpoint(heads[:2], back, "latest.pt")
    with pytest.raises(ValueError, match="opts"):
        probe_checkpoint("v2", [h.state_dict() for h in heads], opts[:1], epoch=0, batch_size=1, world_size=1,
                         lr=None)


def test_a_file_that_is_not_a_probe_checkpoint_is_named_with_its_keys(tmp_path):
    pretrain = _save_load({"encoder": {}, "target_encoder": {}, "epoch": 1}, tmp_path)
    with pytest.raises(CheckpointError, match=r"vitl16\.pth\.tar.*'encoder', 'epoch', 'target_encoder'"):
        probe_states(pretrain, "vitl16.pth.tar")
    wrong = build_probe("v1", D, HEADS, 1, CLASSES + 1)
    ckpt = probe_checkpoint("v1", [wrong.state_dict()], None, epoch=0, batch_size=1, world_size=1, lr=0.0)
    with pytest.raises(CheckpointError, match="linear.weight"):
        load_probe_checkpoint([build_probe("v1", D, HEADS, 1, CLASSES)], ckpt, "k400-probe.pth.tar")
