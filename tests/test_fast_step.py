"""The fast CPU step (`distributed.cpu_fast_step`) trains like the plain eager step: same losses and parameters to
float rounding, for V-JEPA, V-JEPA 2 and I-JEPA; the combinations it does not support are config errors naming
the key. The fast tests compile with aot_eager (it traces forward and backward as inductor does, without a C++
build); the inductor ones are slow (a cold compile takes a minute on 2 cores)."""
import types

import pytest
import torch

from jepa_scale.config import load_config
from jepa_scale.config.loader import ConfigError
from jepa_scale.distributed import fast_step
from jepa_scale.models.vit import PatchEmbed
from jepa_scale.trainer import Trainer
from tests.conftest import tiny_ijepa_raw, tiny_raw, tiny_v2_raw


def twins(make_raw, tmp_path, backend: str):
    """(eager, fast) trainers of the same config (same seed: same initial weights)."""
    eager = Trainer(load_config(raw=make_raw(str(tmp_path / "eager"))))
    fast_raw = make_raw(str(tmp_path / "fast"))
    fast_raw["distributed"] = {"cpu_fast_step": True, "compile_backend": backend}
    return eager, Trainer(load_config(raw=fast_raw))


def train_alike(eager, fast, steps: int = 3):
    """Both train on the same batches (drawn once); losses and then every parameter must agree."""
    batches = [next(eager.streams[0]) for _ in range(steps)]
    try:
        for i, batch in enumerate(batches):
            a, _ = eager.task.train_step(i, [batch])
            b, _ = fast.task.train_step(i, [batch])
            assert float(b["loss"]) == pytest.approx(float(a["loss"]), rel=1e-5, abs=0), i
            assert float(b["target_std"]) == pytest.approx(float(a["target_std"]), rel=1e-5, abs=0), i
        for name, module in eager.engine.modules.items():
            other = fast.engine.modules[name].state_dict()
            assert list(other) == list(module.state_dict()), name  # compiled in place: the checkpoint's keys
            for k, v in module.state_dict().items():
                torch.testing.assert_close(other[k], v, rtol=1e-4, atol=1e-6, msg=f"{name}.{k}")
    finally:
        for t in (eager, fast):
            t.streams[0].close()


def test_vjepa_fast_step_trains_like_the_eager_one(tmp_path, video_csv):
    eager, fast = twins(lambda folder: tiny_raw(str(video_csv), folder), tmp_path, "aot_eager")
    unit = fast.engine.modules["encoder"].shard_units()[0]
    assert unit._compiled_call_impl is not None and eager.engine.modules["encoder"].shard_units()[0]._compiled_call_impl is None
    train_alike(eager, fast)


def test_vjepa2_fast_step_trains_like_the_eager_one(tmp_path, video_csv):
    train_alike(*twins(lambda folder: tiny_v2_raw(str(video_csv), folder), tmp_path, "aot_eager"))


def test_ijepa_fast_step_trains_like_the_eager_one(tmp_path, ijepa_images):
    train_alike(*twins(lambda folder: tiny_ijepa_raw(str(ijepa_images), folder), tmp_path, "aot_eager"))


@pytest.mark.slow
def test_vjepa_fast_step_with_inductor_trains_like_the_eager_one(tmp_path, video_csv):
    train_alike(*twins(lambda folder: tiny_raw(str(video_csv), folder), tmp_path, "inductor"), steps=4)


@pytest.mark.slow
def test_vjepa2_fast_step_with_inductor_trains_like_the_eager_one(tmp_path, video_csv):
    train_alike(*twins(lambda folder: tiny_v2_raw(str(video_csv), folder), tmp_path, "inductor"))


@pytest.mark.parametrize("video, shape", [(True, (2, 3, 4, 64, 64)), (True, (2, 3, 5, 70, 67)), (False, (2, 3, 64, 72))])
def test_patch_embedding_as_a_gemm_equals_the_convolution(video, shape):
    torch.manual_seed(0)
    embed = PatchEmbed(16, 2, 48, video)
    x = torch.randn(shape)
    conv = embed(x)
    embed.as_gemm = True
    torch.testing.assert_close(embed(x), conv, rtol=1e-5, atol=1e-5)  # a remainder is dropped alike


@pytest.mark.parametrize("sections, key", [
    ({"distributed": {"cpu_fast_step": True, "engine": "ddp"}}, "distributed.cpu_fast_step"),
    ({"distributed": {"cpu_fast_step": True, "engine": "fsdp"}}, "distributed.cpu_fast_step"),
    ({"distributed": {"cpu_fast_step": True, "compile": True}}, "distributed.compile"),
    ({"distributed": {"cpu_fast_step": True}, "model": {"model_name": "videomamba_tiny"}}, "distributed.cpu_fast_step"),
    ({"distributed": {"cpu_fast_step": True}, "model": {"pred_type": "mamba"}}, "distributed.cpu_fast_step"),
])
def test_unsupported_combinations_are_config_errors_naming_the_key(tmp_path, sections, key):
    raw = tiny_raw(None, str(tmp_path))
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values}
    with pytest.raises(ConfigError, match=rf"{key}: .*(single-process|compiles the blocks|VideoMamba)"):
        load_config(raw=raw)


def test_a_multi_process_or_gpu_engine_is_refused_naming_the_key():
    for engine in (types.SimpleNamespace(world_size=2, device=torch.device("cpu")),
                   types.SimpleNamespace(world_size=1, device=torch.device("cuda", 0))):
        with pytest.raises(fast_step.FastStepError, match="distributed.cpu_fast_step: for "):
            fast_step.check_engine(engine)


def test_a_missing_cpp_compiler_is_a_clear_error(monkeypatch):
    import torch._inductor.cpp_builder as builder

    def no_compiler():
        raise RuntimeError("Unsupported compiler")

    monkeypatch.setattr(builder, "get_cpp_compiler", no_compiler)
    with pytest.raises(fast_step.FastStepError, match=r"distributed.cpu_fast_step: .*install a C\+\+ compiler"):
        fast_step.check_toolchain("inductor")
    fast_step.check_toolchain("aot_eager")  # no C++ needed
