"""Memory planner: predicted per-GPU bytes of a JEPA run for each engine/stage and checkpointing choice.

    python -m jepa_scale.plan --config configs/pretrain/vith16_384.yaml --gpus 8 --gpu-mem-gb 80

Model states follow the ZeRO accounting for mixed-precision Adam (16 bytes/param: bf16 params and grads, fp32
master, m, v): DDP 16P; ZeRO-1 4P + 12P/N; ZeRO-2 and FSDP2 without resharding 2P + 14P/N; ZeRO-3 and FSDP2
full sharding 16P/N plus the largest unit gathered. Frozen modules (the EMA target) add fp32 params, sharded
like the rest. Activations: each unit's own model of what it saves per token (`saved_bytes_per_token`), for
every forward that backpropagates (the recipe says which, for the mean token counts of the config's masks), in
bf16 (float32 where the run trains in float32): a transformer block ~34 bytes per channel with flash/efficient
attention (no N^2 workspace); a Mamba block ~71 per channel with mamba_ssm's CUDA scan (`--scan cuda`, the
default: it recomputes the states in backward), ~14x more with our PyTorch scan (`--scan torch`: the
CPU, and GPUs without mamba_ssm), which keeps float32 states. Full checkpointing keeps each unit's inputs
(`input_bytes_per_token`) plus one unit's activations while it is recomputed. The model set is built on the meta
device through the config's recipe.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import torch

from jepa_scale.config import ConfigError, load_config
from jepa_scale.models.selective_scan import scan_backend
from jepa_scale.recipes import RECIPES

GIB = 2 ** 30


@dataclass(frozen=True)
class Plan:
    engine: str
    checkpointing: str
    params: float
    grads: float
    optimizer: float
    ema: float
    activations: float

    @property
    def total(self) -> float:
        return self.params + self.grads + self.optimizer + self.ema + self.activations


@dataclass(frozen=True)
class Sizes:
    trainable: int  # parameters the optimizer updates
    frozen: int  # parameters of frozen modules (the EMA target)
    largest_unit: int  # parameters of the largest shard unit (what ZeRO-3 / FSDP gathers at once)


def model_sizes(recipe) -> tuple[dict, Sizes]:
    """The recipe's modules on the meta device (shapes only) and their parameter counts."""
    with torch.device("meta"):
        model_set = recipe.build_models()
    def count(modules, only_trained=False):
        return sum(p.numel() for m in modules for p in m.parameters() if p.requires_grad or not only_trained)

    units = [u for m in model_set.all().values() for u in m.shard_units()]
    sizes = Sizes(trainable=count(model_set.trainable.values(), only_trained=True),
                  frozen=count(model_set.frozen.values()), largest_unit=max(count([u]) for u in units))
    return model_set.all(), sizes


def mean_tokens(cfg, recipe, batches: int = 20) -> list[tuple[float, float]]:
    """Mean (context, target) token counts of each predicted sequence, as the recipe's `mask_shapes` lists them
    (V-JEPA: one per mask configuration; I-JEPA: every target x context pair; AV-JEPA: both modalities')."""
    sums = None
    for j in range(batches):
        shapes = recipe.mask_shapes({k: fn(cfg.data.batch_size, j, j) for k, fn in recipe.mask_fns().items()})
        sums = sums or [[0.0, 0.0] for _ in shapes]
        for i, (c, t) in enumerate(shapes):
            sums[i][0] += c / batches
            sums[i][1] += t / batches
    return [tuple(s) for s in sums]


def activation_bytes(modules: dict, sequences: list[tuple[str, float]], batch: int, checkpointing: bool,
                     dtype_bytes: int = 2, scan: str = "cuda") -> float:
    """Bytes saved for backward: every unit of every trained sequence (module name, tokens per sample) by its own
    model; with checkpointing, every unit's inputs plus the largest unit's activations (the one being recomputed)."""
    runs = [(n, unit) for name, n in sequences for unit in modules[name].shard_units()]
    saved = [n * unit.saved_bytes_per_token(n, dtype_bytes, scan) for n, unit in runs]
    if not checkpointing:
        return batch * sum(saved)
    return batch * (sum(n * unit.input_bytes_per_token(dtype_bytes) for n, unit in runs) + max(saved))


def plan(cfg, gpus: int, dtype_bytes: int = 2, scan: str = "cuda") -> list[Plan]:
    """Every engine row, without and with full checkpointing; activations in `dtype_bytes`, Mamba units with the
    `scan` backend's saved tensors ("cuda": mamba_ssm's kernel, "torch": ours)."""
    recipe = RECIPES.get(cfg.recipe)(cfg)
    modules, s = model_sizes(recipe)
    P, N, largest = s.trainable, gpus, s.largest_unit
    sequences = recipe.trained_sequences(mean_tokens(cfg, recipe))
    # (name, params, grads, optimizer, frozen modules in fp32)
    states = [
        ("ddp", 2 * P, 2 * P, 12 * P, 4 * s.frozen),
        ("zero1", 2 * P, 2 * P, 12 * P / N, 4 * s.frozen),
        ("zero2 / fsdp no-reshard", 2 * P, 2 * P / N, 12 * P / N, 4 * s.frozen),
        ("zero3 / fsdp full", 2 * P / N + 2 * 2 * largest, 2 * P / N + 2 * largest, 12 * P / N, 4 * s.frozen / N),
    ]
    out = []
    for name, params, grads, opt, ema in states:
        for ckpt in (False, True):
            act = activation_bytes(modules, sequences, cfg.data.batch_size, ckpt, dtype_bytes, scan)
            out.append(Plan(name, "full" if ckpt else "none", params, grads, opt, ema, act))
    return out


class DoesNotFit(RuntimeError):
    """The planner predicts more memory per process than the device has (said before the model is built)."""


def plan_row(dc) -> str:
    """The planner row of the configured engine (distributed section of a config)."""
    if dc.engine == "fsdp":
        return "zero3 / fsdp full" if dc.reshard_after_forward else "zero2 / fsdp no-reshard"
    if dc.engine == "deepspeed":
        return {0: "ddp", 1: "zero1", 2: "zero2 / fsdp no-reshard", 3: "zero3 / fsdp full"}[dc.zero_stage]
    return "ddp"  # single, ddp, auto on one process


def available_bytes(device, local_processes: int) -> float:
    """What one process may use: the GPU's memory, or this machine's available memory shared by its processes."""
    import torch

    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[1]
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) * 1024 / local_processes


def check_fits(cfg, device, world_size: int, local_processes: int = 1):
    """Raise DoesNotFit when the planner's estimate for this engine exceeds the memory there is, with this
    device's activation dtype (float32 on the CPU) and selective-scan backend."""
    ckpt = "none" if cfg.distributed.activation_checkpointing == "none" and not cfg.model.use_activation_checkpointing \
        else "full"
    fp32 = device.type != "cuda" or cfg.meta.dtype == "float32"
    # the backend a Mamba model's scan takes here (on CUDA, asking imports mamba_ssm where it is installed)
    scan = scan_backend(torch.empty(0, device=device)) if device.type == "cuda" else "torch"
    rows = plan(cfg, world_size, 4 if fp32 else 2, scan)
    row = next(p for p in rows if p.engine == plan_row(cfg.distributed) and p.checkpointing == ckpt)
    need = row.total
    have = available_bytes(device, local_processes)
    if need > have:
        raise DoesNotFit(
            f"{cfg.model.model_name} at {cfg.data.num_frames}x{cfg.data.crop_size}px, {cfg.data.batch_size} clips per "
            f"process on {device.type}: the planner predicts {need / GIB:.1f} GiB per process ({row.engine}, "
            f"checkpointing {ckpt}) and {have / GIB:.1f} GiB are available. Lower data.batch_size, turn on "
            f"distributed.activation_checkpointing, shard with distributed.engine=fsdp or deepspeed, or set "
            f"distributed.check_memory=false to try anyway (python -m jepa_scale.plan shows the options)")


def format_table(plans: list[Plan], gpu_mem_gb: float) -> str:
    head = f"{'engine':<24}{'ckpt':<6}{'params':>8}{'grads':>8}{'optim':>8}{'EMA':>8}{'activ':>9}{'total':>9}  fits"
    rows = [head, "-" * len(head)]
    for p in plans:
        fits = "yes" if p.total / GIB <= gpu_mem_gb else "no"
        rows.append(f"{p.engine:<24}{p.checkpointing:<6}" + "".join(
            f"{v / GIB:8.1f}" for v in (p.params, p.grads, p.optimizer, p.ema)) +
            f"{p.activations / GIB:9.1f}{p.total / GIB:9.1f}  {fits}")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jepa_scale.plan", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--gpus", type=int, default=8, help="data-parallel ranks the states are sharded over")
    ap.add_argument("--gpu-mem-gb", type=float, default=80.0)
    ap.add_argument("--scan", choices=("cuda", "torch"), default="cuda",
                    help="Mamba models' selective scan: mamba_ssm's CUDA kernel, or ours (without mamba_ssm)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args(argv)
    try:
        cfg = load_config(a.config, a.overrides)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    _, sizes = model_sizes(RECIPES.get(cfg.recipe)(cfg))
    d = cfg.data
    shape, unit = (f"{d.num_frames}x{d.crop_size}px", "clips") if d.num_frames > 1 else (f"{d.crop_size}px", "images")
    print(f"{a.config}: {cfg.recipe} {cfg.model.model_name}, {sizes.trainable / 1e6:.1f}M trained + "
          f"{sizes.frozen / 1e6:.1f}M frozen parameters, {shape}, {d.batch_size} {unit} per GPU, "
          f"{a.gpus} GPUs of {a.gpu_mem_gb:g} GB; GiB per GPU:")
    print(format_table(plan(cfg, a.gpus, scan=a.scan), a.gpu_mem_gb))
    return 0


if __name__ == "__main__":
    sys.exit(main())
