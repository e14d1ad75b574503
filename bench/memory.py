"""Memory of V-JEPA training on CPU, with the planner's prediction beside each measurement. Ends with one JSON line.

(a) activations: bytes saved for backward per sample by the context encoder + predictor, activation checkpointing
    none vs full, counted with torch.autograd.graph.saved_tensors_hooks on the meta device (parameters excluded,
    plus the block inputs that checkpointing keeps instead);
(b) model states: per-rank bytes of parameters, gradients and optimizer state after one step at world size 2 (gloo,
    started here with torchrun) for DDP vs FSDP2 (full sharding) vs DeepSpeed ZeRO-3, ViT-L + predictor on a tiny
    clip (the states do not depend on the clip size). In float32 training (what the CPU runs) ZeRO-3 keeps an fp32
    master copy beside its fp32 parameter partitions; `deepspeed-zero3-bf16` measures DeepSpeed's bf16 mode (bf16
    partitions and gradients, fp32 master and moments), the mixed precision the planner assumes.

    python bench/memory.py [--config configs/pretrain/vitl16.yaml] [--no-engines]
"""
import argparse
import json
import tempfile
from pathlib import Path

import torch

from jepa_scale.config import load_config
from jepa_scale.launch.local import run_local
from jepa_scale.recipes import RECIPES
from jepa_scale.recipes.example_batch import example_batch
from jepa_scale.recipes.objective import jepa_loss, predict, target_features
from jepa_scale.recipes.vjepa import VJEPA

ROOT = Path(__file__).resolve().parents[1]


def saved_bytes_per_sample(config: Path, checkpointing: bool, batch: int = 1) -> int:
    """Bytes the recipe's training loss saves for backward per sample (meta device: shapes only)."""
    ijepa = load_config(config).recipe == "ijepa"  # no V2 key there: our distributed switch
    cfg = load_config(config, [f"distributed.activation_checkpointing={'full' if checkpointing else 'none'}"] if ijepa
                      else [f"model.use_activation_checkpointing={str(checkpointing).lower()}"])
    recipe = RECIPES.get(cfg.recipe)(cfg)
    with torch.device("meta"):
        model_set = recipe.build_models()
    models = model_set.all()
    b = example_batch(cfg, recipe, batch, "meta")
    params = {id(p) for m in models.values() for p in m.parameters()}
    seen, total = set(), [0]

    def pack(t):
        if id(t) not in params and id(t) not in seen:
            seen.add(id(t))
            total[0] += t.numel() * t.element_size()
        return t

    def keep_input(unit, args):  # what a checkpointed unit holds on to: its input
        if torch.is_grad_enabled():  # the target encoder runs without grad: it keeps nothing
            total[0] += args[0].numel() * args[0].element_size()

    checkpointed = [u for m in model_set.trainable.values() for u in m.shard_units()] if checkpointing else []
    hooks = [u.register_forward_pre_hook(keep_input) for u in checkpointed]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        recipe.loss(models, b)
    for h in hooks:
        h.remove()
    return total[0] // batch


# part (a) also for the JEPA family's large configs (their model states, 1B+ parameters on 2 CPU ranks, do not fit
# this machine's memory: part (b) runs on --config only)
FAMILY = ("vitg16_256_v2.yaml", "vitg16_384_64f_cooldown.yaml", "ijepa_vith14_224.yaml")


def activation_figures(config: Path) -> dict:
    name = config.stem
    none, full = saved_bytes_per_sample(config, False), saved_bytes_per_sample(config, True)
    mib = lambda b: b / 2 ** 20  # noqa: E731
    print(f"(a) {name}: bytes saved for backward per sample (float32, math attention), trained modules")
    print(f"  checkpointing none: {mib(none):12.1f} MiB")
    print(f"  checkpointing full: {mib(full):12.1f} MiB  ({100 * full / none:.1f}% of none; goal <= 20%)")
    return {f"{name}_saved_mib_none": round(mib(none), 2), f"{name}_saved_mib_full": round(mib(full), 2),
            f"{name}_checkpoint_full_vs_none_ratio": round(full / none, 4)}


def local_bytes(tensors) -> int:
    total = 0
    for t in tensors:
        if t is not None and torch.is_tensor(t):
            t = t.to_local() if hasattr(t, "to_local") else t
            total += t.numel() * t.element_size()
    return total


def engine_worker(config: str, engine: str, out: str):
    """Runs under torchrun: one step, then this rank's state bytes (rank 0 writes them)."""
    import torch.distributed as dist

    from jepa_scale.distributed.build import build_engine

    engine, bf16 = engine.removesuffix("-bf16"), engine.endswith("-bf16")
    kind, _, stage = engine.partition("-zero")
    sets = ["data.crop_size=64", "data.num_frames=4", f"distributed.engine={kind}", "meta.dtype=float32"]
    cfg = load_config(config, sets + ([f"distributed.zero_stage={stage}"] if stage else []))
    e, recipe = build_engine(cfg), VJEPA(cfg)
    if bf16:  # DeepSpeed's bf16 mode (bf16 parameter partitions, fp32 master), which CPU training does not use
        e.amp_dtype = torch.bfloat16
    e.setup(recipe.build_models(), recipe.optimizer)
    d, m = cfg.data, e.models
    ctx, tgt = recipe.mask_fns()["video"](2, 0, 0)
    x = torch.randn(2, 3, d.num_frames, d.crop_size, d.crop_size, dtype=torch.bfloat16 if bf16 else torch.float32)
    targets, _ = target_features(m["target_encoder"], x, tgt)
    loss = jepa_loss(predict(m["encoder"], m["predictor"], x, ctx, tgt), targets)
    e.backward(loss)
    target = e.modules["target_encoder"]
    if kind == "deepspeed":
        state = zero3_state_bytes(e, loss, target)
    else:
        params = [p for mod in e.model_set.trainable.values() for p in mod.parameters() if p.requires_grad]
        grads = local_bytes(p.grad for p in params)
        e.step(None, loss.detach())
        state = {"params": local_bytes(params), "grads": grads,
                 "optimizer": local_bytes(v for st in e.optimizer.state.values() for v in st.values() if v.dim() > 0),
                 "ema": local_bytes(target.parameters())}
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps(state))
    dist.destroy_process_group()


def zero3_state_bytes(e, loss, target) -> dict:
    """ZeRO-3 keeps parameters, gradients and the fp32 master copy in flat partitions of its own."""
    z = e.optimizer
    grads = getattr(z, "grad_partitions_flat_buffer", None)
    grads = local_bytes([grads] if grads is not None else
                        z._DeepSpeedZeroOptimizer_Stage3__param_id_to_grad_partition.values())
    e.step(None, loss.detach())
    moments = [v for st in e._base.state.values() for v in st.values() if v.dim() > 0]
    return {"params": local_bytes(z.fp16_partitioned_groups_flat), "grads": grads,
            "optimizer": local_bytes(moments) + local_bytes(z.fp32_partitioned_groups_flat),
            "ema": local_bytes(p.ds_tensor for p in target.parameters())}


def measure_engines(config: str) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in ("ddp", "fsdp", "deepspeed-zero3", "deepspeed-zero3-bf16"):
            f = Path(tmp) / f"{engine}.json"
            r = run_local([__file__, "--worker", engine, "--config", config, "--out", str(f)], 2, threads=1)
            if r.returncode:
                raise RuntimeError(f"{engine} worker failed:\n{r.stderr[-3000:]}")
            out[engine] = json.loads(f.read_text())
    return out


def planner_states(config: str) -> dict:
    """The planner's model-state bytes per rank at 2 GPUs (its mixed-precision split: 16 bytes/param in all)."""
    from jepa_scale.plan import plan

    cfg = load_config(config)
    rows = {p.engine: p for p in plan(cfg, gpus=2) if p.checkpointing == "none"}
    z3 = rows["zero3 / fsdp full"]
    return {"ddp": rows["ddp"], "fsdp": z3, "deepspeed-zero3": z3, "deepspeed-zero3-bf16": z3}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs/pretrain/vitl16.yaml"))
    p.add_argument("--no-engines", action="store_true", help="skip part (b) (it starts 2-process runs)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return engine_worker(args.config, args.worker, args.out)
    figures = {}
    for config in [Path(args.config)] + [ROOT / "configs/pretrain" / f for f in FAMILY]:
        figures.update(activation_figures(config))
    name, mib = Path(args.config).stem, (lambda b: b / 2 ** 20)
    if not args.no_engines:
        measured, predicted = measure_engines(args.config), planner_states(args.config)
        print(f"(b) {name} model states per rank at world size 2 (MiB; measured | planner)")
        for engine, m in measured.items():
            states = m["params"] + m["grads"] + m["optimizer"]
            pl = predicted[engine]
            print(f"  {engine:<5} params {mib(m['params']):8.0f}  grads {mib(m['grads']):8.0f}  optimizer "
                  f"{mib(m['optimizer']):8.0f}  = {mib(states):8.0f} | planner "
                  f"{mib(pl.params + pl.grads + pl.optimizer):8.0f};  EMA target {mib(m['ema']):6.0f} | "
                  f"{mib(pl.ema):6.0f}")
            key = engine.replace("-", "_")
            figures[f"{key}_states_mib"] = round(mib(states), 1)
            figures[f"{key}_planner_states_mib"] = round(mib(pl.params + pl.grads + pl.optimizer), 1)
        total = lambda m: sum(m[k] for k in ("params", "grads", "optimizer"))  # noqa: E731
        for engine in ("fsdp", "deepspeed-zero3", "deepspeed-zero3-bf16"):
            ratio = total(measured[engine]) / total(measured["ddp"])
            print(f"  {engine} / DDP: {100 * ratio:.1f}% (goal <= 55%)")
            figures[f"{engine.replace('-', '_')}_vs_ddp_states_ratio"] = round(ratio, 4)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
