"""Our probe grid (one module, one optimizer with groups per head) <-> the official probe files (one state dict and
one optimizer state per head: V1 `classifier`, V2 `classifiers`), both ways, so a probe file of either code base
resumes or evaluates in the other."""
from __future__ import annotations

from jepa_scale.checkpoint.probe_layout import probe_checkpoint, probe_states

GRID = "classifiers"  # the grid's module name in the model set (its state keys: classifiers.<head>.<param>)


def split_grid_state(state: dict) -> list[dict]:
    """The grid's state dict -> one state dict per head, in head order."""
    heads: dict[int, dict] = {}
    for key, value in state.items():
        _, head, rest = key.split(".", 2)
        heads.setdefault(int(head), {})[rest] = value
    return [heads[h] for h in sorted(heads)]


def merge_head_states(states: list[dict]) -> dict:
    return {f"{GRID}.{h}.{k}": v for h, s in enumerate(states) for k, v in s.items()}


def split_optimizer_state(state: dict) -> list[dict]:
    """Our optimizer state (param groups tagged with their `head`) -> one optimizer state per head, parameters
    numbered from 0 in each, as a per-head AdamW numbers them."""
    groups: dict[int, list] = {}
    for g in state["param_groups"]:
        groups.setdefault(g["head"], []).append(g)
    out = []
    for h in sorted(groups):
        ids = [i for g in groups[h] for i in g["params"]]
        number = {i: k for k, i in enumerate(ids)}
        out.append({"state": {number[i]: state["state"][i] for i in ids if i in state["state"]},
                    "param_groups": [{**{k: v for k, v in g.items() if k != "head"},
                                      "params": [number[i] for i in g["params"]]} for g in groups[h]]})
    return out


def merge_optimizer_states(states: list[dict]) -> dict:
    """The inverse of split_optimizer_state (each head's groups tagged with the head again)."""
    merged, groups, offset = {}, [], 0
    for h, st in enumerate(states):
        for g in st["param_groups"]:
            groups.append({**g, "head": h, "params": [p + offset for p in g["params"]]})
        merged.update({int(k) + offset: v for k, v in st["state"].items()})
        offset += sum(len(g["params"]) for g in st["param_groups"])
    return {"state": merged, "param_groups": groups}


def pack_probe(layout: str):
    """The checkpointer's `pack` for probes of `layout` (v1: exactly one head)."""
    def pack(states: dict, opt: dict, meta: dict, extra: dict) -> dict:
        return probe_checkpoint(layout, split_grid_state(states[GRID]), split_optimizer_state(opt),
                                epoch=meta["epoch"], batch_size=meta["batch_size"], world_size=meta["world_size"],
                                lr=meta["lr"], extra=extra)
    return pack


def unpack_probe(ckpt: dict, source: str) -> dict:
    """The checkpointer's `unpack`: a probe file of either layout -> {GRID: state, "opt": ...} for the engine."""
    _, states, opts = probe_states(ckpt, source)
    return {GRID: merge_head_states(states), "opt": merge_optimizer_states(opts) if opts and all(opts) else None}
