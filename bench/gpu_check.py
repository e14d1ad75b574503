"""One GPU check (H100/H200 class, one device, under 8 minutes), four parts, each configuration in its own subprocess
(argument lists, with a timeout) so that an OOM or a crash is that row's error and the rest go on:

  train    V-JEPA training steps of ViT-L/16 (configs/pretrain/vitl16.yaml) and ViT-H/16-384 (vith16_384.yaml) in
           bf16 on synthetic inputs (`example_batch`: random clips, the recipe's own masks; no data), through the
           Trainer and its engine: single, FSDP2 and ZeRO-3 on one rank (a process group of one), activation
           checkpointing none/full, sdpa attention (and xformers where installed). Per row: median step time,
           TFLOP/s of the recipe's analytic `step_flops` (as the training log computes it), MFU against the
           device's peak (jepa_scale/monitor/device_peak.py), peak memory (`torch.cuda.max_memory_allocated`) beside
           the planner's row for the engine and checkpointing used. The config's batch, lowered where the planner
           predicts more than 90% of the device's memory; the batch used is printed;
  kernels  the attention kernels one attention forward dispatches (torch.profiler), per model and backend, and the
           backend they mean (flash / efficient / cudnn / math);
  probe    the probe's feature extraction: frozen encoder forward clips/s in bf16 (configs/evals/*_k400_16x8x3.yaml);
  dali     DALI NVDEC decoding of H.264 shards (synthetic videos, shards as make_shards writes them) with 1, 2 and
           4 pipelines, clips/s per GPU, against PyAV on one CPU core on the same shards (skipped without DALI).

--timeout-s is the budget of the whole; each part gets a share of what is left, each row a timeout within it, and a
row that no longer fits is listed as not run. Without CUDA it says so and ends with {"gpu": false, "reason": ...}
(exit 0). Ends with one JSON line (ratios in keys ending `_ratio`).

    python bench/gpu_check.py [--only train,kernels,probe,dali] [--quick] [--full-matrix] [--timeout-s 450]
"""
import argparse
import importlib.util
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
GIB = 2 ** 30
PARTS = ("kernels", "train", "probe", "dali")
SHARES = {"kernels": 0.06, "train": 0.62, "probe": 0.12, "dali": 0.20}  # of the budget left when a part starts
MEM_FRACTION = 0.9  # of the device's memory the planner's prediction may take before the batch is lowered
ROW_TIMEOUT_S = 150  # one training row at most
MIN_ROW_S = 25  # a row is not started with less time than this left
TRAIN_CONFIGS = {"vitl16": "vitl16.yaml", "vith16_384": "vith16_384.yaml"}
PROBE_CONFIGS = {"vitl16": "vitl16_k400_16x8x3.yaml", "vith16_384": "vith16_384_k400_16x8x3.yaml"}
# --cpu (a development check of this script's machinery, not a measurement): the tiny CPU configs
CPU_TRAIN_CONFIGS = {"tiny_cpu": "tiny_cpu.yaml"}
CPU_PROBE_CONFIGS = {"tiny_cpu": "tiny_cpu_probe.yaml"}


# ---------------------------------------------------------------- pure pieces (tests/test_gpu_check.py)

def no_gpu_reason() -> str | None:
    """Why this machine cannot run the check, or None when it can."""
    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        return f"no GPU: torch {torch.__version__} is built without CUDA"
    return f"no GPU: torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device"


def part_allowance(remaining_s: float, part: str, parts_left: list[str], shares: dict = SHARES) -> float:
    """Seconds `part` may take: its share of what is left among the parts still to run (an early part's unused
    time goes to the later ones)."""
    total = sum(shares[p] for p in parts_left)
    return max(0.0, remaining_s) * shares[part] / total if total else 0.0


def train_rows(models: list[str], xformers: bool, full_matrix: bool = False) -> list[dict]:
    """The training rows, most telling first (a short budget cuts the tail): per model single none/full, then
    FSDP2 and ZeRO-3 with full checkpointing (with --full-matrix also without), then xformers on single."""
    def row(model, engine, ckpt, attention="sdpa"):
        return {"config": model, "engine": engine, "ckpt": ckpt, "attention": attention}

    rows = [row(m, "single", c) for c in ("none", "full") for m in models]
    rows += [row(m, e, "full") for e in ("fsdp", "zero3") for m in models]
    if full_matrix:
        rows += [row(m, e, "none") for e in ("fsdp", "zero3") for m in models]
    if xformers:
        rows += [row(m, "single", c, "xformers") for c in (("none", "full") if full_matrix else ("none",))
                 for m in models]
    return rows


def row_key(row: dict) -> str:
    return f"{row['config']}_{row['engine']}_ckpt_{row['ckpt']}_{row['attention']}"


def train_overrides(row: dict, folder: str, batch: int | None = None) -> list[str]:
    """The --set overrides of a training row: its engine (zero3 = DeepSpeed stage 3), checkpointing, attention; the
    run folder; no memory check (the row measures, and its error says when it did not fit)."""
    engine = (["distributed.engine=deepspeed", "distributed.zero_stage=3"] if row["engine"] == "zero3"
              else [f"distributed.engine={row['engine']}"])
    sets = [*engine, f"distributed.activation_checkpointing={row['ckpt']}", "model.use_activation_checkpointing=false",
            f"model.attention={row['attention']}", f"logging.folder={folder}", "logging.tensorboard=false",
            "distributed.check_memory=false", "data.num_workers=0"]
    return sets + ([f"data.batch_size={batch}"] if batch else [])


def fitting_batch(planned_total: float, planned_activations: float, batch: int, budget_bytes: float) -> int:
    """The largest batch (at most `batch`) whose predicted bytes fit `budget_bytes`: the model states stay, the
    activations scale with the batch."""
    if planned_total <= budget_bytes:
        return batch
    states, per_sample = planned_total - planned_activations, planned_activations / batch
    return max(1, min(batch, int((budget_bytes - states) // per_sample)))


def step_figures(times_s: list[float], flops: list[float], batch: int, peak_tflops: float | None) -> dict:
    """Median step time, samples/s, and TFLOP/s as the training log computes it (the steps' analytic FLOPs over
    their time); MFU (a ratio) where the device's peak is known."""
    step = statistics.median(times_s)
    tflops = sum(flops) / sum(times_s) / 1e12
    out = {"step_s": step, "samples_per_s": batch / step, "tflops_per_s": tflops}
    if peak_tflops:
        out["mfu_ratio"] = tflops / peak_tflops
    return out


def memory_figures(peak_bytes: float | None, planned_bytes: float) -> dict:
    """Measured peak beside the planner's prediction for the same engine and checkpointing (GiB, and their
    ratio: above 1 the planner under-predicts)."""
    out = {"planner_gib": planned_bytes / GIB}
    if peak_bytes is not None:
        out["peak_mem_gib"] = peak_bytes / GIB
        out["mem_vs_planner_ratio"] = peak_bytes / planned_bytes
    return out


# what the kernel (or operator) names of one attention call say about the backend; the first rule that matches wins:
# cuDNN's fused SDPA kernels also have "flash" in their names, and flash and memory-efficient attention call no
# softmax kernel of their own
_BACKEND_RULES = (("cudnn", ("cudnn",)), ("flash", ("flash",)),
                  ("efficient", ("efficient", "cutlassf", "cutlassb", "fmha", "attentionkernel")),
                  ("math", ("softmax", "_scaled_dot_product_attention_math")))


def backend_label(names: list[str]) -> str:
    """flash / efficient / cudnn / math from kernel or operator names; 'unknown' when none says."""
    low = [n.lower() for n in names]
    for label, words in _BACKEND_RULES:
        if any(w in n for n in low for w in words):
            return label
    return "unknown"


def derived_ratios(results: dict) -> dict:
    """Same-run ratios of per-sample step time between rows of one model (rows by row_key, each with step_s and
    batch): checkpointing full vs none, FSDP2 and ZeRO-3 vs single (full checkpointing), xformers vs sdpa."""
    def per_sample(key):
        r = results.get(key) or {}
        return r["step_s"] / r["batch"] if "step_s" in r else None

    out = {}
    for model in sorted({r["config"] for r in results.values() if "config" in r}):
        k = lambda engine, ckpt, att="sdpa": row_key(  # noqa: E731
            {"config": model, "engine": engine, "ckpt": ckpt, "attention": att})
        pairs = {"ckpt_full_vs_none_step_ratio": (k("single", "full"), k("single", "none")),
                 "fsdp_vs_single_step_ratio": (k("fsdp", "full"), k("single", "full")),
                 "zero3_vs_single_step_ratio": (k("zero3", "full"), k("single", "full")),
                 "xformers_vs_sdpa_step_ratio": (k("single", "none", "xformers"), k("single", "none"))}
        for name, (a, b) in pairs.items():
            ta, tb = per_sample(a), per_sample(b)
            if ta and tb:
                out[f"{model}_{name}"] = ta / tb
    return out


def worker_result(stdout: str, stderr: str, returncode: int | None, timeout_s: float | None = None) -> dict:
    """A worker's answer: its last JSON line on stdout; where it has none, an `error` from how it ended (the
    timeout, or the last line of its stderr, e.g. 'torch.OutOfMemoryError: CUDA out of memory...')."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            out = json.loads(line)
        except ValueError:
            continue
        if isinstance(out, dict):
            return out
    if returncode is None:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    return {"error": f"exit code {returncode}: " + (lines[-1][:300] if lines else "no output")}


def short_error(e: BaseException) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first[:300]}"


def rounded(figures: dict, digits: int = 4) -> dict:
    return {k: (round(v, digits) if isinstance(v, float) else v) for k, v in figures.items()}


# ---------------------------------------------------------------- running the workers

def one_rank_env(threads: int | None = None) -> dict:
    """The environment of a world-size-1 process group (what torchrun would export), for FSDP2 and DeepSpeed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1",
               LOCAL_RANK="0", LOCAL_WORLD_SIZE="1")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_worker(args: list[str], timeout_s: float) -> dict:
    """This script as a worker (`--worker ...`) in a new session, killed with its children after `timeout_s`."""
    p = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=one_rank_env(), cwd=ROOT, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # the worker's own process group (it may have started helpers)
        out, err = p.communicate()
        return worker_result(out, err, None, timeout_s)
    return worker_result(out, err, p.returncode)


# ---------------------------------------------------------------- worker: training rows

def synthetic_trainer(cfg):
    """The Trainer, with one endless stream of `example_batch`es (made once, on the device) per micro-batch."""
    import dataclasses

    from jepa_scale.distributed.build import micro_batches
    from jepa_scale.recipes.example_batch import example_batch
    from jepa_scale.trainer import Trainer

    class SyntheticStream:
        def __init__(self, micro_cfg, recipe, device, n=2):
            size = micro_cfg.data.batch_size
            self.batches = [example_batch(micro_cfg, recipe, size, device, counter=j) for j in range(n)]
            self.i, self.skipped = 0, {}

        def __iter__(self):
            return self

        def __next__(self):
            self.i += 1
            return self.batches[(self.i - 1) % len(self.batches)]

        def close(self):
            self.batches = []

    class SyntheticTrainer(Trainer):
        def open_streams(self, decoder=None):
            micro, accum = micro_batches(self.cfg)
            micro_cfg = dataclasses.replace(self.cfg, data=dataclasses.replace(self.cfg.data, batch_size=micro))
            return [SyntheticStream(micro_cfg, self.recipe, self.engine.device) for _ in range(accum)]

    return SyntheticTrainer(cfg)


def timed_steps(trainer, warmup: int, steps: int) -> tuple[list[float], list[float], float]:
    """(seconds, analytic FLOPs) of each timed `task.train_step` (device synchronised), and the last loss."""
    cuda = trainer.engine.device.type == "cuda"
    times, flops, scalars = [], [], {}
    for step in range(warmup + steps):
        t = time.perf_counter()
        scalars, host = trainer.task.train_step(step, trainer.next_batches())
        if cuda:
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - t)
            flops.append(host["flops"])
    return times, flops, float(scalars["loss"])


def planned_row(cfg, dtype_bytes: int):
    """The planner's row (jepa_scale.plan) for the config's engine and checkpointing, on one GPU."""
    from jepa_scale.plan import plan, plan_row

    return next(p for p in plan(cfg, 1, dtype_bytes, "cuda")
                if p.engine == plan_row(cfg.distributed) and p.checkpointing == cfg.distributed.activation_checkpointing)


def train_row(row: dict, folder: str, steps: int, warmup: int, batch: int | None = None,
              configs: dict = TRAIN_CONFIGS) -> dict:
    """One training row, measured in this process (the parent runs each in a worker)."""
    from jepa_scale.config import load_config
    from jepa_scale.monitor.device_peak import device_peak_tflops

    path = ROOT / "configs/pretrain" / configs[row["config"]]
    cfg = load_config(path, train_overrides(row, folder, batch))
    cuda = torch.cuda.is_available()
    dtype_bytes = 2 if cuda and cfg.meta.dtype != "float32" else 4  # the CPU trains in float32
    planned = planned_row(cfg, dtype_bytes)
    if cuda and batch is None:
        budget = MEM_FRACTION * torch.cuda.get_device_properties(0).total_memory
        fit = fitting_batch(planned.total, planned.activations, cfg.data.batch_size, budget)
        if fit != cfg.data.batch_size:
            cfg = load_config(path, train_overrides(row, folder, fit))
            planned = planned_row(cfg, dtype_bytes)
    out = {**row, "batch": cfg.data.batch_size, "steps": steps}
    t = time.perf_counter()
    try:
        trainer = synthetic_trainer(cfg)
        out["setup_s"] = time.perf_counter() - t
        times, flops, out["loss"] = timed_steps(trainer, warmup, steps)
        peak = device_peak_tflops(trainer.engine.device)
        trainer.finish(out["loss"])
        out.update(step_figures(times, flops, cfg.data.batch_size, peak))
    except Exception as e:  # an OOM or a crash is this row's answer, with the planner's figure beside it
        out["error"] = short_error(e)
    out.update(memory_figures(torch.cuda.max_memory_allocated() if cuda else None, planned.total))
    return out


# ---------------------------------------------------------------- worker: attention kernels

def attention_shape(config_path: Path) -> tuple[int, int, int]:
    """(heads, tokens, head dim) of the config's encoder (built on the meta device)."""
    from jepa_scale.config import load_config
    from jepa_scale.models import build_backbone

    with torch.device("meta"):
        enc = build_backbone(load_config(config_path))
    hd = enc.attention_head_dim()
    return enc.embed_dim // hd, enc.num_patches, hd


def profiled_names(fn, cuda: bool) -> tuple[list[str], list[str]]:
    """(device kernel names by time, attention operator names) of fn() under torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        fn()
        if cuda:
            torch.cuda.synchronize()
    kernels, ops = {}, set()
    for e in prof.events():
        if str(getattr(e, "device_type", "")).endswith("CUDA"):
            kernels[e.name] = kernels.get(e.name, 0.0) + float(getattr(e, "device_time", 0.0) or 0.0)
        elif any(w in e.name.lower() for w in ("attention", "softmax", "flash", "efficient", "cudnn", "xformers")):
            ops.add(e.name)
    return sorted(kernels, key=kernels.get, reverse=True), sorted(ops)


def kernel_rows(models: dict, batch: int = 2) -> dict:
    """Per model and backend (sdpa, xformers where installed): one attention forward's kernels and their label,
    with the dispatcher's view (jepa_scale.models.attention.attention_kernels) beside it."""
    from jepa_scale.models.attention import attention, attention_kernels

    cuda = torch.cuda.is_available()
    device, dtype = (torch.device("cuda"), torch.bfloat16) if cuda else (torch.device("cpu"), torch.float32)
    backends = ["sdpa"] + (["xformers"] if cuda and importlib.util.find_spec("xformers") else [])
    out = {}
    for name, file in models.items():
        heads, tokens, hd = attention_shape(ROOT / "configs/pretrain" / file)
        q, k, v = (torch.randn(batch, heads, tokens, hd, device=device, dtype=dtype) for _ in range(3))
        dispatch = attention_kernels(device, dtype, hd)
        for backend in backends:
            key = f"{name}_{backend}"
            try:
                attention(q, k, v, backend)  # warm-up: the first call may pick or load kernels
                kernels, ops = profiled_names(lambda: attention(q, k, v, backend), cuda)
            except Exception as e:
                out[f"{key}_attention_error"] = short_error(e)
                continue
            out[f"{key}_attention_backend"] = backend_label(kernels) if kernels else backend_label(ops)
            out[f"{key}_attention_kernels"] = [n[:120] for n in kernels[:4]]
            out[f"{key}_attention_ops"] = ops
            out[f"{key}_attention_dispatch"] = dispatch[backend]
        out[f"{name}_attention_shape"] = f"{batch}x{heads}x{tokens}x{hd}"
    return out


# ---------------------------------------------------------------- worker: probe feature extraction

def probe_rate(config_path: Path, batch: int, steps: int, warmup: int, peak_tflops: float | None) -> dict:
    """Clips/s of the probe's frozen-encoder forward (`encode`, bf16 autocast on CUDA) on random clips."""
    from jepa_scale.config import load_config
    from jepa_scale.evals.backbone import build_encoder
    from jepa_scale.evals.inputs import encode
    from jepa_scale.evals.spec import eval_spec

    spec = eval_spec(load_config(config_path))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    encoder = build_encoder(spec).to(device).eval().requires_grad_(False)
    x = torch.randn(batch, 3, spec.frames_per_clip, spec.resolution, spec.resolution, device=device)
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            encode(encoder, spec, [[x]])
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    rate = batch * steps / sum(times)
    tflops = rate * (encoder.embed_flops() + encoder.units_flops(encoder.num_patches)) / 1e12
    out = {"clips_per_s": rate, "batch": batch, "tflops_per_s": tflops,
           "clip": f"{spec.frames_per_clip}x{spec.resolution}"}
    if peak_tflops:
        out["mfu_ratio"] = tflops / peak_tflops
    return out


def probe_rows(models: dict, batch: int, steps: int, warmup: int) -> dict:
    from jepa_scale.monitor.device_peak import device_peak_tflops

    peak = device_peak_tflops(torch.device("cuda")) if torch.cuda.is_available() else None
    out = {}
    for name, file in models.items():
        try:
            r = probe_rate(ROOT / "configs/evals" / file, batch, steps, warmup, peak)
        except Exception as e:
            r = {"error": short_error(e)}
        out.update({f"probe_{name}_{k}": v for k, v in r.items()})
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return out


# ---------------------------------------------------------------- worker: DALI vs PyAV

def make_test_shards(folder: Path, videos: int = 16) -> Path:
    """Synthetic videos (moving shapes, 256x320, 96 frames) sharded as make_shards does (H.264, short side 256,
    GOP 16, x264 fastdecode)."""
    from jepa_scale.data.shards.make import make_shards
    from jepa_scale.data.shards.transcode import TranscodeOptions
    from jepa_scale.data.synthetic import make_moving_shapes

    csv = make_moving_shapes(folder / "videos", num_videos=videos, num_frames=96, height=256, width=320, fps=30)
    make_shards([str(csv)], str(folder / "shards"), TranscodeOptions(short_side=256, gop=16),
                workers=min(8, os.cpu_count() or 1), progress=False)
    return folder / "shards"


def pyav_rate(records, cfg, clips: int) -> float:
    """Clips/s of the PyAV path (ClipLoader: shard bytes, decode, uint8 crop/resize, normalise) on one core."""
    import numpy as np

    from jepa_scale.data.video_batches import ClipLoader

    torch.set_num_threads(1)
    loader, rng = ClipLoader(cfg.data, cfg.data_aug), np.random.default_rng(0)
    loader(records[0], rng)  # warm-up
    t = time.perf_counter()
    for i in range(clips):
        loader(records[i % len(records)], rng)
    rate = clips / (time.perf_counter() - t)
    torch.set_num_threads(os.cpu_count() or 1)
    return rate


def dali_rate(tars: list[str], cfg, pipelines: int, batch: int, batches: int, warmup: int = 2) -> float:
    """Clips/s of DaliClips (NVDEC decode, GPU crop/flip/normalise) with `pipelines` pipeline pairs on GPU 0."""
    from jepa_scale.data.dali_pipeline import DaliClips

    clips = DaliClips(tars, batch, cfg.data, cfg.data_aug, seed=0, device_id=0, pipelines=pipelines)
    for _ in range(warmup):
        next(clips)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(batches):
        next(clips)
    torch.cuda.synchronize()
    return batch * batches / (time.perf_counter() - t)


def dali_rows(tmp: Path, pipelines: list[int], clips: int) -> dict:
    from jepa_scale.config import load_config
    from jepa_scale.data.shards.source import read_shard_datasets

    shards = make_test_shards(tmp)
    (records,), _ = read_shard_datasets([shards])
    cfg = load_config(raw={"data": {"shards": [str(shards)], "num_frames": 16, "sampling_rate": 4,
                                    "crop_size": 224}})
    base = pyav_rate(records, cfg, clips)
    out = {"dali_videos": len(records), "dali_clip": "16x224 (frame step 4)", "pyav_1core_clips_per_s": base}
    if not torch.cuda.is_available():
        return {**out, "dali_skipped": "no GPU (NVDEC decodes on CUDA devices)"}
    if importlib.util.find_spec("nvidia") is None or importlib.util.find_spec("nvidia.dali") is None:
        return {**out, "dali_skipped": "NVIDIA DALI is not installed (pip install 'jepa_scale[dali]')"}
    tars = sorted({r.path for r in records})
    for n in pipelines:
        try:
            rate = dali_rate(tars, cfg, n, batch=8, batches=max(2, clips // 8))
        except Exception as e:
            out[f"dali_{n}pipe_error"] = short_error(e)
            continue
        out[f"dali_{n}pipe_clips_per_s"] = rate
        out[f"dali_{n}pipe_vs_pyav_1core_ratio"] = rate / base
    return out


def worker_main(args) -> int:
    """`--worker NAME`: one part (or one training row) in this process; prints one JSON line."""
    train_cfgs, probe_cfgs = (CPU_TRAIN_CONFIGS, CPU_PROBE_CONFIGS) if args.cpu else (TRAIN_CONFIGS, PROBE_CONFIGS)
    try:
        if args.worker == "train":
            out = train_row(json.loads(args.row), args.tmp, args.steps, args.warmup, args.batch, train_cfgs)
        elif args.worker == "kernels":
            out = kernel_rows(train_cfgs)
        elif args.worker == "probe":
            out = probe_rows(probe_cfgs, args.batch or (4 if args.cpu else 16), args.steps, args.warmup)
        else:
            out = dali_rows(Path(args.tmp), [int(n) for n in args.pipelines.split(",")], args.clips)
    except Exception as e:
        out = {"error": short_error(e)}
    print(json.dumps(rounded(out)), flush=True)
    return 0


# ---------------------------------------------------------------- the parent

def run_train(args, tmp: Path, seconds: float) -> dict:
    """Every training row in its own worker, each within what is left of `seconds`."""
    models = list(CPU_TRAIN_CONFIGS if args.cpu else TRAIN_CONFIGS)
    if args.quick:
        models = models[:1]
    xformers = torch.cuda.is_available() and importlib.util.find_spec("xformers") is not None
    deadline, results = time.monotonic() + seconds, {}
    print(f"{'row':<40}{'batch':>6}{'step s':>9}{'TFLOP/s':>9}{'MFU':>7}{'peak GiB':>10}{'planner':>9}  error")
    for row in train_rows(models, xformers, args.full_matrix):
        key, left = row_key(row), deadline - time.monotonic()
        if left < MIN_ROW_S:
            results[key] = {**row, "error": "not run: out of the time budget"}
        else:
            a = ["--worker", "train", "--row", json.dumps(row), "--tmp", str(tmp / key), "--steps", str(args.steps),
                 "--warmup", str(args.warmup)] + (["--batch", str(args.batch)] if args.batch else [])
            results[key] = {**row, **run_worker(a + (["--cpu"] if args.cpu else []), min(ROW_TIMEOUT_S, left))}
        r = results[key]
        print(f"{key:<40}{r.get('batch', '-'):>6}{r.get('step_s', float('nan')):9.3f}"
              f"{r.get('tflops_per_s', float('nan')):9.1f}{100 * r.get('mfu_ratio', float('nan')):6.1f}%"
              f"{r.get('peak_mem_gib', float('nan')):10.1f}{r.get('planner_gib', float('nan')):9.1f}  "
              f"{r.get('error', '')}", flush=True)
    figures = {f"{key}_{k}": v for key, r in results.items() for k, v in r.items() if k not in row}
    return {**figures, **derived_ratios(results)}


def run_part(part: str, args, tmp: Path, seconds: float) -> dict:
    if part == "train":
        return run_train(args, tmp, seconds)
    a = ["--worker", part, "--tmp", str(tmp / part), "--steps", str(args.steps), "--warmup", str(args.warmup),
         "--pipelines", "1" if args.quick else "1,2,4", "--clips", str(args.clips)]
    out = run_worker(a + (["--cpu"] if args.cpu else []), seconds)
    if "error" in out:
        out = {f"{part}_error": out.pop("error"), **out}
    for k, v in out.items():
        print(f"  {k}: {v}")
    return out


def device_figures() -> dict:
    from jepa_scale.monitor.device_peak import peak_tflops

    if not torch.cuda.is_available():
        return {"gpu": False, "device": "cpu (--cpu: a check of this script, not a measurement)"}
    p = torch.cuda.get_device_properties(0)
    return {"gpu": True, "device": p.name, "device_mem_gib": round(p.total_memory / GIB, 1),
            "peak_bf16_tflops": peak_tflops(p.name), "torch": torch.__version__, "cuda": torch.version.cuda,
            "xformers": importlib.util.find_spec("xformers") is not None,
            "deepspeed": importlib.util.find_spec("deepspeed") is not None}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts to run (of {', '.join(PARTS)})")
    p.add_argument("--quick", action="store_true", help="ViT-L only, fewer steps, one DALI pipeline count")
    p.add_argument("--full-matrix", action="store_true", help="also FSDP2/ZeRO-3 without checkpointing")
    p.add_argument("--timeout-s", type=float, default=450, help="budget of the whole check (default 450)")
    p.add_argument("--steps", type=int, help="timed steps per row (default 5, --quick 3)")
    p.add_argument("--warmup", type=int, help="warm-up steps per row (default 3, --quick 2)")
    p.add_argument("--batch", type=int, help="batch of every row (default: the config's, or what fits)")
    p.add_argument("--clips", type=int, default=48, help="clips decoded per DALI/PyAV measurement")
    p.add_argument("--cpu", action="store_true", help=argparse.SUPPRESS)  # the machinery on the tiny CPU configs
    for name in ("--worker", "--row", "--tmp", "--pipelines"):
        p.add_argument(name, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.steps = args.steps or (3 if args.quick else 5)
    args.warmup = args.warmup if args.warmup is not None else (2 if args.quick else 3)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)
    start, reason = time.monotonic(), no_gpu_reason()
    if reason and not args.cpu:
        print(f"{reason}: nothing to measure")
        print(json.dumps({"gpu": False, "reason": reason}))
        return 0
    parts = [p for p in PARTS if p in args.only.split(",")]
    figures = device_figures()
    print(", ".join(f"{k} {v}" for k, v in figures.items()))
    with tempfile.TemporaryDirectory() as tmp:
        for i, part in enumerate(parts):
            seconds = part_allowance(args.timeout_s - (time.monotonic() - start), part, parts[i:])
            print(f"== {part} (at most {seconds:.0f} s)", flush=True)
            figures.update(run_part(part, args, Path(tmp), seconds))
    figures["wall_s"] = time.monotonic() - start
    print(json.dumps(rounded(figures)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
