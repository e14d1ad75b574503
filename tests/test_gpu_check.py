"""bench/gpu_check.py: its pure pieces (budget shares, the row matrix, the batch that fits, the figures, the kernel
labels, a worker's answer), the clean no-GPU exit, and its machinery end to end on the tiny CPU configs."""
import importlib.util
import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT

SCRIPT = ROOT / "bench/gpu_check.py"
spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gc)


def test_an_early_parts_unused_time_goes_to_the_later_ones():
    shares = {"a": 0.25, "b": 0.75}
    assert gc.part_allowance(100, "a", ["a", "b"], shares) == 25
    assert gc.part_allowance(90, "b", ["b"], shares) == 90  # a took 10 s of its 25: b gets all that is left
    assert gc.part_allowance(-5, "b", ["b"], shares) == 0


def test_the_row_matrix_puts_the_most_telling_rows_first():
    rows = [gc.row_key(r) for r in gc.train_rows(["L", "H"], xformers=False)]
    assert rows == ["L_single_ckpt_none_sdpa", "H_single_ckpt_none_sdpa", "L_single_ckpt_full_sdpa",
                    "H_single_ckpt_full_sdpa", "L_fsdp_ckpt_full_sdpa", "H_fsdp_ckpt_full_sdpa",
                    "L_zero3_ckpt_full_sdpa", "H_zero3_ckpt_full_sdpa"]
    full = [gc.row_key(r) for r in gc.train_rows(["L"], xformers=True, full_matrix=True)]
    assert {"L_fsdp_ckpt_none_sdpa", "L_zero3_ckpt_none_sdpa", "L_single_ckpt_none_xformers",
            "L_single_ckpt_full_xformers"} <= set(full) and len(full) == len(set(full)) == 8


def test_row_overrides_select_the_engine_and_checkpointing():
    sets = gc.train_overrides({"engine": "zero3", "ckpt": "full", "attention": "sdpa"}, "/tmp/x", batch=3)
    assert "distributed.engine=deepspeed" in sets and "distributed.zero_stage=3" in sets
    assert "distributed.activation_checkpointing=full" in sets and sets[-1] == "data.batch_size=3"
    from jepa_scale.config import load_config

    cfg = load_config(ROOT / "configs/pretrain/vitl16.yaml",
                      gc.train_overrides({"engine": "fsdp", "ckpt": "none", "attention": "sdpa"}, "/tmp/x"))
    assert cfg.distributed.engine == "fsdp" and cfg.distributed.activation_checkpointing == "none"


def test_the_batch_is_lowered_only_as_far_as_the_activations_need():
    # 10 GB of states + 4 GB of activations per sample at batch 8 = 42 GB
    assert gc.fitting_batch(42e9, 32e9, 8, 50e9) == 8
    assert gc.fitting_batch(42e9, 32e9, 8, 30e9) == 5  # (30 - 10) / 4
    assert gc.fitting_batch(42e9, 32e9, 8, 5e9) == 1  # never below one sample


def test_step_and_memory_figures():
    f = gc.step_figures([1.0, 3.0, 2.0], [2e12, 2e12, 2e12], batch=4, peak_tflops=10.0)
    assert f["step_s"] == 2.0 and f["samples_per_s"] == 2.0 and f["tflops_per_s"] == 1.0 and f["mfu_ratio"] == 0.1
    assert "mfu_ratio" not in gc.step_figures([1.0], [1e12], 1, None)
    m = gc.memory_figures(3 * gc.GIB, 2 * gc.GIB)
    assert m == {"planner_gib": 2.0, "peak_mem_gib": 3.0, "mem_vs_planner_ratio": 1.5}
    assert gc.memory_figures(None, gc.GIB) == {"planner_gib": 1.0}


@pytest.mark.parametrize("names,label", [
    (["cudnn_generated_fort_native_sdpa_sm90_flash_fprop"], "cudnn"),
    (["void pytorch_flash::flash_fwd_kernel<...>"], "flash"),
    (["fmha_cutlassF_bf16_aligned_64x64_rf_sm80"], "efficient"),
    (["ampere_bf16_s16816gemm", "void softmax_warp_forward<...>"], "math"),
    (["aten::_scaled_dot_product_flash_attention_for_cpu"], "flash"),
    (["elementwise_kernel"], "unknown"),
])
def test_kernel_names_say_the_backend(names, label):
    assert gc.backend_label(names) == label


def test_a_workers_answer_or_how_it_ended():
    assert gc.worker_result('log line\n{"step_s": 1.5}\n', "", 0) == {"step_s": 1.5}
    assert gc.worker_result("", "", None, 30) == {"error": "timed out after 30 s"}
    oom = gc.worker_result("", "Traceback...\ntorch.OutOfMemoryError: CUDA out of memory.\n", 1)
    assert oom["error"].startswith("exit code 1: torch.OutOfMemoryError")


def test_derived_ratios_compare_per_sample_step_times():
    def r(engine, ckpt, step_s, batch):
        row = {"config": "L", "engine": engine, "ckpt": ckpt, "attention": "sdpa"}
        return gc.row_key(row), {**row, "step_s": step_s, "batch": batch}

    results = dict([r("single", "none", 1.0, 4), r("single", "full", 1.0, 2), r("fsdp", "full", 0.6, 1)])
    out = gc.derived_ratios(results)
    assert out["L_ckpt_full_vs_none_step_ratio"] == 2.0 and out["L_fsdp_vs_single_step_ratio"] == pytest.approx(1.2)
    assert "L_zero3_vs_single_step_ratio" not in out  # no such row measured


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the check would run for minutes")
def test_without_a_gpu_it_says_so_and_exits_cleanly():
    p = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["gpu"] is False and out["reason"].startswith("no GPU")


@pytest.mark.slow
def test_the_machinery_runs_end_to_end_on_the_tiny_cpu_configs():
    """--cpu: each part in its worker on the tiny configs (a check of the script, not a measurement)."""
    p = subprocess.run([sys.executable, str(SCRIPT), "--cpu", "--quick", "--only", "kernels,train,probe",
                        "--timeout-s", "240"], capture_output=True, text=True, timeout=400, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["tiny_cpu_sdpa_attention_backend"] in ("flash", "math")
    for engine in ("single", "fsdp", "zero3"):
        key = f"tiny_cpu_{engine}_ckpt_full_sdpa"
        assert f"{key}_error" not in out, out.get(f"{key}_error")
        assert out[f"{key}_step_s"] > 0 and out[f"{key}_planner_gib"] > 0
    # one engine, the same weights and synthetic batches: the same loss
    assert out["tiny_cpu_fsdp_ckpt_full_sdpa_loss"] == pytest.approx(out["tiny_cpu_single_ckpt_full_sdpa_loss"],
                                                                     rel=1e-4)
    assert out["probe_tiny_cpu_clips_per_s"] > 0 and out["wall_s"] < 400
