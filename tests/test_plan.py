import subprocess
import sys

import pytest
import torch

from jepa_scale.config import load_config
from jepa_scale.plan import main, model_sizes, plan
from jepa_scale.recipes import RECIPES
from tests.conftest import ROOT


def states(p):
    return p.params + p.grads + p.optimizer


def test_states_follow_the_zero_accounting_and_the_reference_numbers():
    cfg = load_config(ROOT / "configs/pretrain/vith16_384.yaml")
    _, sizes = model_sizes(RECIPES.get(cfg.recipe)(cfg))
    P, largest = sizes.trainable, sizes.largest_unit
    plans = {(p.engine, p.checkpointing): p for p in plan(cfg, gpus=8)}
    ddp, z1 = plans[("ddp", "none")], plans[("zero1", "none")]
    z2, z3 = plans[("zero2 / fsdp no-reshard", "none")], plans[("zero3 / fsdp full", "none")]
    assert states(ddp) == 16 * P and states(z1) == pytest.approx(4 * P + 12 * P / 8)
    assert states(z2) == pytest.approx(2 * P + 14 * P / 8)
    assert states(z3) == pytest.approx(16 * P / 8 + 6 * largest)
    # the reference figures: ViT-H + predictor ~10.5 GB of states unsharded, ~1.3 GB per GPU under ZeRO-3 over 8
    assert states(ddp) / 1e9 == pytest.approx(10.5, rel=0.02)
    assert states(z3) / 1e9 == pytest.approx(1.3, rel=0.1)
    assert z3.ema == pytest.approx(ddp.ema / 8)  # the target is sharded like the encoder


def test_checkpointing_cuts_activations_and_they_scale_with_the_batch():
    cfg = load_config(ROOT / "configs/pretrain/vitl16.yaml")
    double = load_config(ROOT / "configs/pretrain/vitl16.yaml", ["data.batch_size=48"])
    none, full = [p.activations for p in plan(cfg, 8) if p.engine == "ddp"]
    assert full < 0.2 * none
    assert [p.activations for p in plan(double, 8) if p.engine == "ddp"][0] == pytest.approx(2 * none, rel=0.1)


def test_cli_prints_a_table_with_fit_verdicts():
    r = subprocess.run([sys.executable, "-m", "jepa_scale.plan", "--config", "configs/pretrain/vith16_384.yaml",
                        "--gpus", "8", "--gpu-mem-gb", "16"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith(("ddp", "zero"))]
    assert len(rows) == 8 and rows[0].endswith("no") and rows[-1].endswith("yes")
    assert main(["--config", "configs/pretrain/vith16_384.yaml", "--set", "model.dpeth=3"]) == 2


@pytest.mark.parametrize("name,frames,crop", [("vitg16_256_v2", 16, 256), ("vitg16_384_64f_cooldown", 64, 384)])
def test_the_planner_covers_v2_vit_giant(name, frames, crop):
    from jepa_scale.plan import plan

    cfg = load_config(ROOT / "configs/pretrain" / f"{name}.yaml")
    assert (cfg.data.num_frames, cfg.data.crop_size) == (frames, crop)
    rows = {(p.engine, p.checkpointing): p for p in plan(cfg, 128)}
    none, full = rows[("zero3 / fsdp full", "none")], rows[("zero3 / fsdp full", "full")]
    assert full.activations < none.activations / 5  # what the configs' use_activation_checkpointing buys
    # ViT-g's 1.03B trained parameters: 16 bytes each unsharded (bf16 params and grads, fp32 Adam and master)
    assert rows[("ddp", "none")].params + rows[("ddp", "none")].grads + rows[("ddp", "none")].optimizer == \
        pytest.approx(16 * 1034.6e6, rel=1e-3)


# --- the units' activation models against what autograd saves (CPU, float32: the torch scan) ---

def _mamba_inputs(B, L, D):
    torch.manual_seed(0)
    return torch.randn(B, L, D, requires_grad=True), torch.randn(B, L, D, requires_grad=True)


@pytest.mark.parametrize("D,L", [(64, 200), (48, 197), (96, 64)])  # 197: a padded last chunk
def test_the_mamba_block_model_matches_its_saved_tensors_with_the_torch_scan(D, L):
    from jepa_scale.models.videomamba import MambaBlock
    from jepa_scale.monitor.saved import measured_bytes_per_token

    blk = MambaBlock(D)
    measured = measured_bytes_per_token(blk, _mamba_inputs(2, L, D), tokens=2 * L)
    # within 1%: what the model leaves out is the per-unit A tensors and the chunk carries' (nc - 1) / nc
    assert blk.saved_bytes_per_token(L, dtype_bytes=4, scan="torch") == pytest.approx(measured, rel=0.01)


def test_the_vit_block_rule_is_34_bytes_per_channel_and_bounds_its_saved_tensors():
    from jepa_scale.models.vit import Block
    from jepa_scale.monitor.saved import measured_bytes_per_token

    D, L = 64, 200
    blk = Block(D, num_heads=4)
    assert blk.saved_bytes_per_token(L) == 34 * D and blk.saved_bytes_per_token(L, dtype_bytes=4) == 68 * D
    measured = measured_bytes_per_token(blk, (torch.randn(2, L, D, requires_grad=True),), tokens=2 * L)
    # the rule counts two dropout masks and a copy of the attention output that our blocks do not keep: ~5% over
    assert 0.9 < measured / blk.saved_bytes_per_token(L, dtype_bytes=4) <= 1.0


class _KernelStandIn(torch.autograd.Function):
    """mamba_ssm's SelectiveScanFn as far as memory goes: its forward's contiguous copies and save_for_backward
    (u, delta, A, B, C, D, z, delta_bias, the float32 states at 2048-token chunk edges, the pre-gate output), the
    output from our scan. Never differentiated here."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias):
        from jepa_scale.models.selective_scan import _scan_torch

        u, delta, B, C, z = (t if t.stride(-1) == 1 else t.contiguous() for t in (u, delta, B, C, z))
        with torch.no_grad():
            pre_gate = _scan_torch(u, delta, A, B, C, D, None, delta_bias, True)
        states = u.new_zeros(u.shape[0], u.shape[1], -(-u.shape[2] // 2048), 2 * A.shape[1], dtype=torch.float32)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states, pre_gate)
        return pre_gate * torch.nn.functional.silu(z)


def test_the_mamba_block_model_with_the_cuda_kernel_matches_a_stand_in_for_its_saves(monkeypatch):
    import jepa_scale.models.videomamba as vm
    from jepa_scale.monitor.saved import measured_bytes_per_token

    def kernel(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
        return _KernelStandIn.apply(u, delta, A, B, C, D, z, delta_bias)

    monkeypatch.setattr(vm, "selective_scan", kernel)
    D, L = 64, 200
    blk = vm.MambaBlock(D)
    measured = measured_bytes_per_token(blk, _mamba_inputs(2, L, D), tokens=2 * L)
    # the model has CUDA's fused RMSNorm, which keeps no normalised copy; the CPU's composite one does (4 D bytes)
    assert blk.saved_bytes_per_token(L, dtype_bytes=4, scan="cuda") + 4 * D == pytest.approx(measured, rel=0.01)


# --- the planner with them ---

def test_vit_plans_keep_the_34_byte_rule():
    from jepa_scale.plan import activation_bytes, mean_tokens

    cfg = load_config(ROOT / "configs/pretrain/vitl16.yaml")
    recipe = RECIPES.get(cfg.recipe)(cfg)
    modules, _ = model_sizes(recipe)
    sequences = recipe.trained_sequences(mean_tokens(cfg, recipe))
    rule = sum(n * modules[m].width * 34 * len(modules[m].shard_units()) for m, n in sequences)
    assert activation_bytes(modules, sequences, 24, False) == pytest.approx(24 * rule, rel=1e-9)
    fp32 = activation_bytes(modules, sequences, 24, True, dtype_bytes=4)
    assert fp32 == pytest.approx(2 * activation_bytes(modules, sequences, 24, True), rel=1e-9)


def test_videomamba_plans_follow_the_scan_backend_and_the_clip_length():
    act = {(frames, scan): next(p.activations for p in plan(cfg, 8, scan=scan) if p.engine == "ddp")
           for frames in (16, 64) for scan in ("cuda", "torch")
           for cfg in [load_config(ROOT / "configs/pretrain/videomamba_m16.yaml", [f"data.num_frames={frames}"])]}
    assert act[(16, "torch")] > 10 * act[(16, "cuda")]  # our scan keeps float32 states, the kernel recomputes them
    assert act[(64, "cuda")] == pytest.approx(4 * act[(16, "cuda")], rel=0.05)  # linear in the tokens


def test_check_fits_plans_the_cpu_in_float32_with_our_scan(monkeypatch):
    import jepa_scale.plan as planner

    cfg = load_config(ROOT / "configs/pretrain/videomamba_m16.yaml")
    monkeypatch.setattr(planner, "available_bytes", lambda device, n: 1.0)
    with pytest.raises(planner.DoesNotFit, match=r"predicts ([\d.]+) GiB") as e:
        planner.check_fits(cfg, torch.device("cpu"), 1)
    row = next(p for p in plan(cfg, 1, dtype_bytes=4, scan="torch") if (p.engine, p.checkpointing) == ("ddp", "none"))
    assert float(e.value.args[0].split("predicts ")[1].split(" GiB")[0]) == pytest.approx(row.total / planner.GIB,
                                                                                          abs=0.06)
