import contextlib
import os
import socket
from pathlib import Path

import pytest
import torch

from jepa_scale.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"  # exists in this workplace and CI, not on users' machines

torch.set_num_threads(min(2, os.cpu_count() or 1))


@contextlib.contextmanager
def one_rank_group():
    """A real process group of one rank (gloo), so the sharded engines run in this process."""
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def log_rows(folder: Path) -> list[dict]:
    """The rows of a run's rank-0 CSV log so far ([] before it exists)."""
    import csv

    path = Path(folder) / "jepa_r0.csv"
    if not path.is_file():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def vjepa_models(cfg):
    """(encoder, predictor, target encoder) as the V-JEPA recipe builds them."""
    from jepa_scale.recipes.vjepa import VJEPA

    models = VJEPA(cfg).build_models()
    return models.trainable["encoder"], models.trainable["predictor"], models.frozen["target_encoder"]


def tiny_raw(csv: str | None, folder: str, **sections) -> dict:
    """A very small pretraining config (4x4 patches, 4 frames) as a raw dict; sections override keys."""
    raw = {
        "data": {"datasets": [csv] if csv else [], "batch_size": 4, "num_frames": 4, "tubelet_size": 2,
                 "sampling_rate": 2, "crop_size": 64, "patch_size": 16, "num_workers": 0},
        "logging": {"folder": folder, "write_tag": "jepa", "log_freq": 2, "tensorboard": True},
        "mask": [{"num_blocks": 8, "spatial_scale": [0.15, 0.15]}, {"num_blocks": 2, "spatial_scale": [0.7, 0.7]}],
        "meta": {"seed": 7, "dtype": "float32"},
        "model": {"model_name": "vit_tiny", "embed_dim": 48, "depth": 2, "num_heads": 2, "pred_depth": 1,
                  "pred_embed_dim": 32},
        "optimization": {"ipe": 4, "epochs": 3, "warmup": 1, "start_lr": 2e-4, "lr": 1e-3, "final_lr": 1e-6,
                         "ema": [0.99, 1.0]},
    }
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values} if isinstance(values, dict) else values
    return raw


def tiny_v2_raw(csv: str | None, folder: str, **sections) -> dict:
    """tiny_raw as a V-JEPA 2 config: RoPE, the V2 predictor (4 heads), frames by fps (the synthetic videos have 8
    fps: fps 4 takes every second frame), warmup-constant LR, no clipping."""
    raw = tiny_raw(csv, folder, model={"use_rope": True, "pred_num_heads": 2},
                   optimization={"final_lr": 1e-3, "final_weight_decay": 0.04, "ema": [0.99, 0.99]})
    raw["data"] = {k: v for k, v in raw["data"].items() if k not in ("num_frames", "sampling_rate")}
    raw["data"].update(dataset_fpcs=[4], fps=4)
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values} if isinstance(values, dict) else values
    return raw


@pytest.fixture
def tiny_cfg(tmp_path, video_csv):
    def make(**sections):
        return load_config(raw=tiny_raw(str(video_csv), str(tmp_path / "run"), **sections))
    return make


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory):
    """16 small synthetic mp4 videos (24 frames, 72x88) and their CSV."""
    from jepa_scale.data.synthetic import make_moving_shapes

    d = tmp_path_factory.mktemp("videos")
    make_moving_shapes(d, num_videos=16, num_frames=24, height=72, width=88, seed=1)
    return d


@pytest.fixture(scope="session")
def video_csv(video_dir):
    return video_dir / "videos.csv"


@pytest.fixture(scope="session")
def av_video_csv(tmp_path_factory):
    """16 small synthetic mp4 videos with sound (a tone whose pitch encodes the class) and their CSV."""
    from jepa_scale.data.synthetic import make_moving_shapes

    return make_moving_shapes(tmp_path_factory.mktemp("av_videos"), num_videos=16, num_frames=24, height=72,
                              width=88, seed=1, audio=True)


def tiny_av_raw(csv: str | None, folder: str, **sections) -> dict:
    """tiny_raw as an AV-JEPA config: a 32-mel x 48-column spectrogram of each clip's 1 s window (2 x 3 audio
    tokens), V1's two mask configurations with one-token-high audio blocks, and one that hides the sound."""
    raw = tiny_raw(csv, folder)
    raw["app"] = "avjepa"
    raw["audio"] = {"sample_rate": 8000, "n_mels": 32, "num_frames": 48, "n_fft": 256, "hop_length": 64}
    raw["mask"] = [{**m, "audio_num_blocks": 1, "audio_block_size": [1, 2]} for m in raw["mask"]] + [{"hide": "audio"}]
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values} if isinstance(values, dict) else values
    return raw


def tiny_ijepa_raw(image_root: str, folder: str, **sections) -> dict:
    """A very small I-JEPA config (every official key; 96 px, patch 8, a 2-block ViT) as a raw dict over an
    ImageFolder tree whose `train/` split is in `image_root`; sections override keys."""
    raw = {
        "data": {"batch_size": 8, "color_jitter_strength": 0.0, "crop_scale": [0.3, 1.0], "crop_size": 96,
                 "image_folder": "", "num_workers": 0, "pin_mem": False, "root_path": image_root,
                 "use_color_distortion": False, "use_gaussian_blur": False, "use_horizontal_flip": False},
        "logging": {"folder": folder, "write_tag": "jepa", "log_freq": 2, "tensorboard": True},
        "mask": {"allow_overlap": False, "aspect_ratio": [0.75, 1.5], "enc_mask_scale": [0.85, 1.0], "min_keep": 10,
                 "num_enc_masks": 1, "num_pred_masks": 4, "patch_size": 8, "pred_mask_scale": [0.15, 0.2]},
        "meta": {"copy_data": False, "load_checkpoint": False, "model_name": "vit_tiny", "embed_dim": 48, "depth": 2,
                 "num_heads": 2, "pred_depth": 1, "pred_emb_dim": 32, "read_checkpoint": None,
                 "use_bfloat16": False, "seed": 7},
        "optimization": {"ema": [0.996, 1.0], "epochs": 4, "final_lr": 1.0e-6, "final_weight_decay": 0.4,
                         "ipe_scale": 1.0, "lr": 1.0e-3, "start_lr": 2.0e-4, "warmup": 1, "weight_decay": 0.04},
    }
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values} if isinstance(values, dict) else values
    return raw


@pytest.fixture(scope="session")
def ijepa_images(tmp_path_factory):
    """A synthetic ImageFolder tree (data_tools/make_synthetic_images.py): `<root>/train/`, 12 classes x 4 PNGs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_synthetic_images",
                                                  ROOT / "data_tools" / "make_synthetic_images.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    root = tmp_path_factory.mktemp("images")
    tool.write_shape_images(root, per_class=4, height=80, width=104, seed=3)
    return root

