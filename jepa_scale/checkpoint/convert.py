"""Move between our engines and the official code: export a run (sharded or not) to the official single-file layout,
and import an official-layout file as the checkpoint a run resumes from."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch
import yaml

from jepa_scale.checkpoint.official import CheckpointError, atomic_save, official_checkpoint, read_checkpoint
from jepa_scale.checkpoint.manifest import problems
from jepa_scale.checkpoint.store import OFFICIAL_FILE, CheckpointStore, Stored, read_extra

RUN_KEYS = ("opt", "epoch")  # besides the modules, which the run's recipe names


def _write_tag(run_dir: Path) -> str:
    cfg = run_dir / "config.yaml"
    return yaml.safe_load(cfg.read_text())["logging"]["write_tag"] if cfg.is_file() else "jepa"


def _official_optimizer(optim: dict) -> dict:
    """A name-keyed optimizer state dict (torch.distributed.checkpoint) -> torch's id-keyed layout, ids in the order
    of the parameter groups (the order the official checkpoints use)."""
    ids, groups = {}, []
    for g in optim["param_groups"]:
        for name in g["params"]:
            ids.setdefault(name, len(ids))
        groups.append({**g, "params": [ids[n] for n in g["params"]]})
    return {"state": {ids[n]: st for n, st in optim["state"].items()}, "param_groups": groups}


def _export_deepspeed(root: Path, tag: str, out) -> Path:
    """DeepSpeed ZeRO partitions -> official layout, with DeepSpeed's own consolidation (zero_to_fp32). ZeRO keeps the
    optimizer state in flat partitions, so the export carries no `opt` (an import then starts fresh moments)."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    full = get_fp32_state_dict_from_zero_checkpoint(str(root), tag=tag)
    states = torch.load(sorted((root / tag).glob("*mp_rank_00_model_states.pt"))[0], map_location="cpu",
                        weights_only=True)
    # ZeRO-1/2 keep frozen parameters (the EMA target) whole in the module state, not in the partitions
    for name, value in (states.get("module") or {}).items():
        full.setdefault(name, value.float())
    modules = {}  # the container's parameter names are "<module>.<name in the module>"
    for name, value in full.items():
        module, _, key = name.partition(".")
        modules.setdefault(module, {})[key] = value
    atomic_save(_with_run_state(modules, {}, states["jepa_scale"]), out)
    return Path(out)


def _with_run_state(modules: dict, opt: dict, extra: dict) -> dict:
    return official_checkpoint(modules, opt, epoch=extra["epoch"], loss=extra["loss"], batch_size=extra["batch_size"],
                               world_size=extra["world_size"], lr=extra["lr"],
                               extra={k: extra[k] for k in ("step", "data", "version")})


def newest_intact(root: Path) -> Stored | None:
    """The run's newest checkpoint whose files all verify (or one from before manifests)."""
    store = CheckpointStore(root)
    for stored in store.complete():
        if not problems(stored.path, stored.manifest, sorted(stored.manifest["files"])):
            return stored
    return store.legacy()


def _format(stored: Stored) -> str:
    if stored.manifest:
        return stored.manifest["format"]
    return "deepspeed" if list(stored.path.glob("*model_states.pt")) else "dcp"  # from before manifests


def export_run(run_dir: str | Path, out: str | Path) -> Path:
    """The run's newest checkpoint as one official-layout file (strictly loadable by the official code's layout)."""
    run_dir = Path(run_dir)
    stored = newest_intact(run_dir / "checkpoints")
    fmt = _format(stored) if stored else None
    if stored is None or fmt == "official":
        src = stored.path / OFFICIAL_FILE if stored else run_dir / f"{_write_tag(run_dir)}-latest.pth.tar"
        read_checkpoint(src)  # fails with the file's name if it is missing or unreadable
        shutil.copyfile(src, out)
        return Path(out)
    if fmt == "deepspeed":
        return _export_deepspeed(stored.path.parent, stored.path.name, out)
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    with tempfile.TemporaryDirectory() as tmp:
        flat = Path(tmp) / "full.pt"
        dcp_to_torch_save(str(stored.path), str(flat))
        state = torch.load(flat, map_location="cpu", weights_only=True)
    extra = read_extra(stored.path)
    atomic_save(_with_run_state(state["model"], _official_optimizer(state["optim"]), extra), out)
    return Path(out)


def import_checkpoint(src: str | Path, run_dir: str | Path) -> Path:
    """Make an official-layout file the checkpoint `run_dir` resumes from (meta.load_checkpoint: true)."""
    run_dir = Path(run_dir)
    if CheckpointStore(run_dir / "checkpoints").any():
        raise CheckpointError(f"{run_dir} already has checkpoints, which a resume would prefer: import into a new "
                              f"folder")
    ckpt = read_checkpoint(src)
    missing = [k for k in RUN_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{src}: not a pretraining checkpoint (no {', '.join(missing)})")
    run_dir.mkdir(parents=True, exist_ok=True)
    dst = run_dir / f"{_write_tag(run_dir)}-latest.pth.tar"
    atomic_save(ckpt, dst)
    return dst
