"""The engine a config asks for, on the processes the launcher started."""
from __future__ import annotations


from jepa_scale.distributed.engine import Engine, SingleEngine
from jepa_scale.distributed.env import detect, init_process_group


def micro_batches(cfg) -> tuple[int, int]:
    """(micro-batch size, micro-batches accumulated per step on each device)."""
    micro = cfg.distributed.micro_batch_size or cfg.data.batch_size
    return micro, cfg.data.batch_size // micro


def build_engine(cfg, local_rank: int | None = None) -> Engine:
    """The engine a pretraining config asks for (see make_engine)."""
    return make_engine(cfg.distributed, cfg.meta.dtype, micro_batches(cfg), local_rank)


def make_engine(dc, dtype: str, micro: tuple[int, int] = (1, 1), local_rank: int | None = None,
                replicated_only: bool = False) -> Engine:
    """The engine `dc` (a distributed: section) names; `auto` follows the launcher: one process -> single, the
    deepspeed launcher -> deepspeed, several processes otherwise (torchrun, srun) -> ddp. micro: (micro-batch size,
    accumulation steps); local_rank: deepspeed's `--local_rank`; replicated_only: `auto` picks ddp under the
    deepspeed launcher too (a probe's small heads gain nothing from sharding)."""
    env = detect(local_rank_arg=local_rank)
    kind = dc.engine
    if kind == "auto":
        sharded = env.launcher == "deepspeed" and not replicated_only
        kind = "single" if env.world_size == 1 else "deepspeed" if sharded else "ddp"
    if kind == "single" and env.world_size > 1:
        raise ValueError(f"distributed.engine=single but the launcher started {env.world_size} processes")
    # a sharded engine runs on one process too (ZeRO-Offload on one GPU): in a group of one
    device = init_process_group(env, group_of_one=kind != "single", timeout_s=dc.collective_timeout_s,
                                deepspeed=kind == "deepspeed")
    if kind == "single":
        return SingleEngine(device, dtype)
    if kind == "fsdp":
        from jepa_scale.distributed.fsdp import FSDPEngine

        return FSDPEngine(device, dtype, dc.reshard_after_forward, dc.hsdp_replicas)
    if kind == "deepspeed":
        size, accum = micro
        if accum != 1:
            raise ValueError("distributed.engine=deepspeed does not take distributed.micro_batch_size yet")
        from jepa_scale.distributed.deepspeed import DeepSpeedEngine

        return DeepSpeedEngine(device, dtype, dc.zero_stage, size, dc.offload_optimizer)
    from jepa_scale.distributed.ddp import DDPEngine

    return DDPEngine(device, dtype)
