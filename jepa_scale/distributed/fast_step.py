"""The faster single-process CPU step (`distributed.cpu_fast_step: true`): the same models, masks and losses as the
plain eager step, to float rounding, in less time.

What it changes, and why (each measured alone and together with `bench/step_time.py --vs-eager`, which prints
the ratio to the plain step and the loss differences):
- every unit (transformer block) of every module is torch.compiled with `distributed.compile_backend`, forward
  and backward: inductor fuses the layer norms, GELU, residual adds and the layout copies around attention into a
  few C++ loops. The target encoder's units compile too (its no-grad forward is a graph of its own). Token counts
  change with every mask draw: after the second count dynamo compiles a dynamic-shape graph, so the compile cost
  is paid in the first steps only;
- the patch embedding runs as one GEMM over unfolded patches instead of oneDNN's strided convolution.

Tried and left out (no gain measured on 2 cores): the target forward under inference_mode instead of no_grad;
compiling whole modules or the whole loss instead of units (on the 16x224 model 8 minutes of compile for no gain;
on tiny_cpu.yaml a few percent for 1.5 to 6 minutes); mode max-autotune; the math attention formula, compiled or
not, instead of SDPA's CPU flash kernel. AdamW is already the fused kernel and the EMA foreach in the plain step.

Only for one process on the CPU (the schema refuses another engine, `check_engine` a multi-process launch or a GPU,
where `distributed.compile` is the option). Compilation problems are errors, never a silent eager fallback: the
C++ toolchain inductor needs is checked before any model is touched.
"""
from __future__ import annotations

import logging
import time

import torch

from jepa_scale.distributed.model_set import ModelSet
from jepa_scale.models.vit import PatchInput

log = logging.getLogger(__name__)

KEY = "distributed.cpu_fast_step"


class FastStepError(ValueError):
    """The fast CPU step cannot run here; the message names the key and the way out."""


def check_toolchain(backend: str):
    """Inductor on the CPU writes and builds C++: fail now, naming the key, when it cannot (a missing compiler would
    otherwise surface as a long traceback at the first step)."""
    if backend != "inductor":
        return
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        compiler = get_cpp_compiler()
        t0 = time.perf_counter()
        torch.compile(lambda x: x * 2.0 + 1.0, backend=backend, fullgraph=True)(torch.ones(8))
    except Exception as e:  # noqa: BLE001 - whatever the toolchain raises, the user needs the same advice
        raise FastStepError(
            f"{KEY}: distributed.compile_backend=inductor cannot build C++ kernels here ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200] if str(e) else ''}); install a C++ compiler (g++), or set "
            f"distributed.compile_backend: aot_eager, or {KEY}: false") from e
    log.info("%s: inductor builds with %s (toolchain check %.1f s)", KEY, compiler, time.perf_counter() - t0)


def check_engine(engine):
    """The engine the launcher gave: one process on the CPU (`auto` under torchrun is DDP)."""
    if engine.world_size > 1:
        raise FastStepError(f"{KEY}: for one process only, and this launch started {engine.world_size}; use "
                            f"distributed.compile with ddp, fsdp or deepspeed")
    if engine.device.type != "cpu":
        raise FastStepError(f"{KEY}: for CPU runs, and this one trains on {engine.device}; use distributed.compile "
                            f"on a GPU")


def prepare(model_set: ModelSet, backend: str) -> ModelSet:
    """Compile every module's units in place (parameter names unchanged, so checkpoints are the plain step's) and
    switch patch embeddings to the GEMM form. Before the engine places the modules, as `distributed.compile`."""
    check_toolchain(backend)
    for module in model_set.all().values():
        if isinstance(module, PatchInput):
            module.set_patch_gemm(True)
    model_set.compile_units(backend)
    log.info("%s: units compiled with %s (the first steps compile them: slower)", KEY, backend)
    return model_set
