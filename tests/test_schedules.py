import math

import pytest
import torch

from jepa_scale.config import load_config
from jepa_scale.optim import Schedules, ema_update
from tests.conftest import ROOT


def vitl16():
    return Schedules.from_config(load_config(ROOT / "configs" / "pretrain" / "vitl16.yaml").optimization)


def test_reference_check_values_at_step_90000():
    s = vitl16()
    assert s.warmup_steps == 12000 and s.total_steps == 112500
    assert s.lr(90000) == pytest.approx(7.5e-5, rel=0.01)
    assert s.wd(90000) == pytest.approx(0.366, abs=0.001)
    assert s.momentum(90000) == pytest.approx(0.9996, abs=1e-6)


def test_warmup_and_peak():
    s = vitl16()
    assert s.lr(0) == 2e-4 and s.lr(6000) == pytest.approx((2e-4 + 6.25e-4) / 2)
    assert s.lr(12000) == 6.25e-4 and s.lr(112500) == pytest.approx(1e-6)
    assert s.wd(0) == pytest.approx(0.04) and s.wd(112500) == pytest.approx(0.4)
    assert s.momentum(0) == 0.998


def official_replay(s: Schedules, n):
    """The official stateful schedulers and momentum generator, stepped n times (as in their loop)."""
    lrs, wds, ms = [], [], []
    gen = (s.ema_start + i * (s.ema_end - s.ema_start) / s.ema_steps for i in range(int(s.ema_steps) + 1))
    for step in range(1, n + 1):
        if step < s.warmup_steps:
            lr = s.start_lr + step / max(1, s.warmup_steps) * (s.ref_lr - s.start_lr)
        else:
            prog = (step - s.warmup_steps) / max(1, s.total_steps - s.warmup_steps)
            lr = max(s.final_lr, s.final_lr + (s.ref_lr - s.final_lr) * 0.5 * (1 + math.cos(math.pi * prog)))
        wd = s.final_wd + (s.ref_wd - s.final_wd) * 0.5 * (1 + math.cos(math.pi * step / s.total_steps))
        wd = min(s.final_wd, wd) if s.final_wd > s.ref_wd else max(s.final_wd, wd)
        lrs.append(lr), wds.append(wd), ms.append(next(gen))
    return lrs, wds, ms


def test_pure_functions_equal_the_stateful_official_replay():
    s = Schedules(2e-4, 1e-3, 1e-6, warmup_steps=10, total_steps=125, ref_wd=0.04, final_wd=0.4, ema_start=0.99,
                  ema_end=1.0, ema_steps=125.0)
    lrs, wds, ms = official_replay(s, 100)
    for it in range(100):
        assert s.at_iteration(it) == (lrs[it], wds[it], ms[it])


def test_v2_schedules():
    base = dict(start_lr=1e-4, ref_lr=5.25e-4, final_lr=1e-6, warmup_steps=100, total_steps=1000, ref_wd=0.04,
                final_wd=0.04, ema_start=0.99925, ema_end=0.99925, ema_steps=1000.0)
    const = Schedules(**base, lr_shape="constant")
    assert const.lr(50) == pytest.approx(3.125e-4) and const.lr(100) == const.lr(999) == 5.25e-4
    assert const.wd(500) == 0.04 and const.momentum(700) == 0.99925
    cool = Schedules(**{**base, "warmup_steps": 0}, lr_shape="linear")
    assert cool.lr(0) == 5.25e-4 and cool.lr(500) == pytest.approx((5.25e-4 + 1e-6) / 2) and cool.lr(1000) == pytest.approx(1e-6)


def test_ema_foreach_equals_the_formula():
    torch.manual_seed(0)
    tgt = [torch.randn(5, 3), torch.randn(7)]
    src = [torch.randn(5, 3), torch.randn(7)]
    expect = [0.99 * t + 0.01 * s for t, s in zip(tgt, src)]
    ema_update(tgt, src, 0.99)
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(tgt, expect))
