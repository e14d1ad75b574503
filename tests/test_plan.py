import subprocess
import sys

import pytest

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
