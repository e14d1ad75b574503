"""VideoMamba as a V-JEPA backbone: the bimamba-v2 mixer against a transcription of the official inner function
over the literal scan, bidirectional equivariance, sizes, init order, masked forward order, and a tiny run."""
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from jepa_scale.config import ConfigError, load_config
from jepa_scale.models import BACKBONES
from jepa_scale.models.videomamba import BiMambaMixer, MambaBlock, VideoMamba
from jepa_scale.monitor.flops import counted_flops
from reference_selective_scan import selective_scan_ref

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "pretrain" / "tiny_cpu_videomamba.yaml"


def official_v2_mixer(m: BiMambaMixer, hidden):
    """bimamba v2's fast path, transcribed: mamba_inner_fn_no_out_proj on xz and on xz flipped (the `_b`
    parameters), out_proj of their sum (no halving), with the literal selective_scan_ref."""
    L = hidden.shape[1]
    xz = (hidden @ m.in_proj.weight.t()).transpose(1, 2)

    def inner(xz, conv_w, conv_b, x_proj_w, dt_w, A, D, dt_bias):
        x, z = xz.chunk(2, dim=1)
        x = F.silu(F.conv1d(x, conv_w, conv_b, padding=conv_w.shape[-1] - 1, groups=x.shape[1])[..., :L])
        x_dbl = F.linear(x.transpose(1, 2).reshape(-1, x.shape[1]), x_proj_w)  # (b l) d
        delta = dt_w @ x_dbl[:, :m.dt_rank].t()
        delta = delta.reshape(dt_w.shape[0], -1, L).transpose(0, 1)
        B = x_dbl[:, m.dt_rank:m.dt_rank + m.d_state].reshape(-1, L, m.d_state).transpose(1, 2)
        C = x_dbl[:, -m.d_state:].reshape(-1, L, m.d_state).transpose(1, 2)
        return selective_scan_ref(x, delta, A, B, C, D.float(), z=z, delta_bias=dt_bias.float(), delta_softplus=True)

    out = inner(xz, m.conv1d.weight, m.conv1d.bias, m.x_proj.weight, m.dt_proj.weight, -torch.exp(m.A_log.float()),
                m.D, m.dt_proj.bias)
    out_b = inner(xz.flip(-1), m.conv1d_b.weight, m.conv1d_b.bias, m.x_proj_b.weight, m.dt_proj_b.weight,
                  -torch.exp(m.A_b_log.float()), m.D_b, m.dt_proj_b.bias)
    return F.linear((out + out_b.flip(-1)).transpose(1, 2), m.out_proj.weight)


def randomised_mixer(dim=48, seed=0, **kw):
    torch.manual_seed(seed)
    m = BiMambaMixer(dim, **kw)
    with torch.no_grad():  # away from the init's symmetries (equal A, D = 1) so that a wrong pairing shows
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m


@pytest.mark.parametrize("L", [1, 7, 70])
def test_mixer_equals_the_official_v2_transcription(L):
    m = randomised_mixer()
    x = torch.randn(2, L, 48)
    ref = official_v2_mixer(m, x)
    assert torch.allclose(m(x), ref, rtol=1e-5, atol=1e-5)


def test_reversing_the_input_of_a_mixer_with_swapped_directions_reverses_its_output():
    m, swapped = randomised_mixer(seed=1), randomised_mixer(seed=2)
    sd = m.state_dict()
    pairs = [("conv1d.weight", "conv1d_b.weight"), ("conv1d.bias", "conv1d_b.bias"), ("x_proj.weight", "x_proj_b.weight"),
             ("dt_proj.weight", "dt_proj_b.weight"), ("dt_proj.bias", "dt_proj_b.bias"), ("A_log", "A_b_log"),
             ("D", "D_b")]
    swap = dict(pairs) | {b: a for a, b in pairs}

    def partner(name):
        return swap.get(name, name)

    swapped.load_state_dict({partner(k): v for k, v in sd.items()})
    x = torch.randn(2, 33, 48)
    assert torch.allclose(swapped(x.flip(1)), m(x).flip(1), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(m(x.flip(1)), m(x).flip(1), atol=1e-3)  # the two directions do differ


def test_divide_out_halves_the_directions_sum():
    m, half = randomised_mixer(seed=3), randomised_mixer(seed=3, divide_out=True)
    x = torch.randn(1, 9, 48)
    # out_proj is linear without bias: halving its input halves its output
    assert torch.allclose(half(x), m(x) / 2, atol=1e-6)


@pytest.mark.parametrize("name,per_layer", [("videomamba_tiny", 282048), ("videomamba_small", 1043328),
                                            ("videomamba_middle", 2283840)])
def test_per_layer_parameters_are_the_reference_table(name, per_layer):
    cfg = load_config(TINY, [f"model.model_name={name}", "model.depth=null"])
    with torch.device("meta"):
        enc = BACKBONES.get(name)(cfg)
    assert sum(p.numel() for p in enc.blocks[0].parameters()) == per_layer  # 0.282M / 1.043M / 2.284M
    assert round(per_layer * len(enc.blocks) / 1e6, 1) in (6.8, 25.0, 73.1)


def test_init_follows_videomambas_order_and_the_mamba_option_restores_dt():
    enc = VideoMamba(img_size=32, num_frames=4, embed_dim=64, depth=4)
    mix = enc.blocks[2].mixer
    assert torch.count_nonzero(mix.dt_proj.bias) == 0 and torch.count_nonzero(mix.dt_proj_b.bias) == 0
    assert mix.dt_proj.weight.std().item() == pytest.approx(0.02, rel=0.3)  # the Linear init overwrote dt too
    assert torch.equal(mix.A_log[5], torch.arange(1, 17).float().log()) and torch.equal(mix.D, torch.ones(128))
    bound = 1 / math.sqrt(mix.d_inner) / math.sqrt(4)  # kaiming_uniform(a=sqrt 5) divided by sqrt(depth)
    w = mix.out_proj.weight.abs().max().item()
    assert 0.9 * bound < w <= bound
    mamba = VideoMamba(img_size=32, num_frames=4, embed_dim=64, depth=4, dt_init="mamba").blocks[2].mixer
    dt = F.softplus(mamba.dt_proj.bias)
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001 and dt.std() > 0
    assert mamba.dt_proj.weight.abs().max() <= mamba.dt_rank ** -0.5
    assert torch.equal(mamba.A_log, mix.A_log) and torch.equal(mamba.D_b, torch.ones(128))


def small_encoder(**kw):
    torch.manual_seed(0)
    return VideoMamba(img_size=32, patch_size=16, num_frames=4, embed_dim=32, depth=2, **kw).eval()


def test_masked_tokens_scan_in_position_order_and_come_back_in_the_asked_order():
    enc, x = small_encoder(), torch.randn(2, 3, 4, 32, 32)
    assert enc.num_patches == 8 and enc(x).shape == (2, 8, 32)
    ids = torch.tensor([[1, 4, 6], [0, 2, 7]])
    shuffled = ids[:, [2, 0, 1]]
    out, out_shuffled = enc(x, ids), enc(x, shuffled)
    assert torch.allclose(out[:, [2, 0, 1]], out_shuffled, atol=1e-6)
    # the kept tokens alone, in order, with their own positions: the compacted sequence the scan sees
    tokens = torch.gather(enc.embed(x), 1, ids.unsqueeze(-1).expand(-1, -1, 32))
    assert torch.allclose(out, enc.encode_tokens(tokens), atol=1e-6)
    assert torch.allclose(enc(x, torch.arange(8).expand(2, 8)), enc(x), atol=1e-6)


def test_activation_checkpointing_gives_the_same_gradients():
    x = torch.randn(2, 3, 4, 32, 32)
    grads = []
    for every in (0, 1):
        enc = small_encoder().train()
        enc.set_activation_checkpointing(every)
        enc(x).square().mean().backward()
        grads.append([p.grad.clone() for p in enc.parameters() if p.requires_grad])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))
    assert enc.recompute_fraction() == 1.0 and enc.attention_backend() is None


def test_block_flops_equal_the_counter_with_the_scan_by_its_rule_forward_and_backward():
    blk = MambaBlock(48)
    x = torch.randn(1, 50, 48, requires_grad=True)
    with torch.no_grad():
        assert counted_flops(lambda: blk(x)) == blk.flops(50)
    assert counted_flops(lambda: blk(x)[0].sum().backward()) == 3 * blk.flops(50)
    # what the plain counter gets wrong: the depthwise conv's backward `groups` times too high
    plain = FlopCounterMode(display=False)
    with plain:
        blk(x)[0].sum().backward()
    assert plain.get_total_flops() > 3 * blk.flops(50)


def test_config_keys_for_videomamba_are_checked_by_name():
    from jepa_scale.config import ConfigError

    cfg = load_config(TINY, ["model.mamba_dt_init=mamba", "model.drop_path=0.1"])
    assert cfg.model.mamba_dt_init == "mamba"
    with pytest.raises(ConfigError, match="model.drop_path: applies to VideoMamba backbones only"):
        load_config(ROOT / "configs" / "pretrain" / "tiny_cpu.yaml", ["model.drop_path=0.1"])
    with pytest.raises(ConfigError, match="model.mamba_dt_init: must be videomamba or mamba"):
        load_config(TINY, ["model.mamba_dt_init=s4"])
    with pytest.raises(ConfigError, match="model.use_rope"):
        load_config(TINY, ["model.use_rope=true"])
    m16 = load_config(ROOT / "configs" / "pretrain" / "videomamba_m16.yaml")
    assert (m16.model.model_name, m16.model.pred_embed_dim, m16.optimization.lr) == ("videomamba_middle", 144, 1.875e-5)


PROBE = ROOT / "configs" / "evals" / "tiny_cpu_probe_videomamba.yaml"


def test_the_eval_builds_the_runs_mamba_options():
    """A run trained with mamba_divide_out computes another function with the same weights: the eval must build
    it so (a strict load cannot tell). mamba_dt_init sets the random-init baseline's dt bias."""
    from jepa_scale.evals.backbone import build_encoder
    from jepa_scale.evals.spec import eval_spec

    plain = build_encoder(eval_spec(load_config(PROBE)))
    halved = build_encoder(eval_spec(load_config(PROBE, ["pretrain.mamba_divide_out=true"])))
    assert all(b.mixer.divide_out for b in halved.blocks) and not any(b.mixer.divide_out for b in plain.blocks)
    mamba_dt = build_encoder(eval_spec(load_config(PROBE, ["pretrain.mamba_dt_init=mamba"])))
    bias = lambda enc: enc.blocks[0].mixer.dt_proj.bias  # noqa: E731
    assert torch.count_nonzero(bias(plain)) == 0 and torch.count_nonzero(bias(mamba_dt)) == bias(mamba_dt).numel()


@pytest.mark.parametrize("more, key", [
    (["pretrain.mamba_dt_init=zero"], "pretrain.mamba_dt_init"),
    (["pretrain.model_name=vit_tiny", "pretrain.mamba_divide_out=true"], "pretrain.mamba_divide_out"),
])
def test_eval_mamba_options_are_checked_by_key(more, key):
    with pytest.raises(ConfigError, match=rf": {key}: "):
        load_config(PROBE, more)


def test_an_eval_of_a_run_with_another_forward_is_refused(tmp_path):
    """The run folder's config.yaml says how it was trained: a mamba_divide_out the eval does not build is an
    error naming the key, before any model is built."""
    from jepa_scale.checkpoint import CheckpointError
    from jepa_scale.evals.backbone import check_run_options
    from jepa_scale.evals.spec import eval_spec

    (tmp_path / "config.yaml").write_text("model:\n  model_name: videomamba_tiny\n  mamba_divide_out: true\n")
    source = str(tmp_path / "videomamba-jepa-latest.pth.tar")
    with pytest.raises(CheckpointError, match=r"mamba_divide_out=True.*set pretrain.mamba_divide_out: True"):
        check_run_options(eval_spec(load_config(PROBE)), source)
    check_run_options(eval_spec(load_config(PROBE, ["pretrain.mamba_divide_out=true"])), source)
