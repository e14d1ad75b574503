"""Labelled images for the frozen image evaluation: torchvision ImageFolder layouts, or image shards.

`scan_image_folder` follows torchvision's ImageFolder, so labels match a probe trained with it: the classes are
the sorted names of the root's subfolders, label = position in that list, and each class holds the files with an
image extension (case-insensitive) found anywhere below its folder, in sorted walk order. Images are decoded with
PIL to RGB. A sample that fails to decode is replaced and reported like a video in LabelledClips.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from jepa_scale.data.csv_source import DataError
from jepa_scale.data.labelled_clips import MAX_CONSECUTIVE_FAILURES, ReplacingDataset, Transform, checked_views

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class ImageError(Exception):
    """This image cannot be decoded; `reason` says why (the message also names the file)."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name, self.reason = name, reason


@dataclass(frozen=True)
class ImageRecord:
    path: str  # the image file, or the shard holding it
    label: int
    source: str = ""  # the file, or "shard.tar:key", for messages about this image
    offset: int = -1  # inside a shard: where the image's bytes start (-1: `path` is the image itself)
    size: int = 0

    def read_bytes(self) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            return f.read(self.size)


def scan_image_folder(root: str | Path) -> tuple[list[tuple[str, int]], list[str]]:
    """([(path, label)], classes) of an ImageFolder split (e.g. `imagenet/train`), as torchvision builds them."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not classes:
        raise DataError(f"{root}: no class folders (an image folder holds one subfolder of images per class)")
    records, empty = [], []
    for label, name in enumerate(classes):
        found = [(os.path.join(folder, f), label)
                 for folder, _, files in sorted(os.walk(root / name, followlinks=True))
                 for f in sorted(files) if f.lower().endswith(IMG_EXTENSIONS)]
        if not found:
            empty.append(name)
        records += found
    if empty:
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise DataError(f"{root}: no images ({', '.join(IMG_EXTENSIONS)}) in the class folder(s) {shown}")
    return records, classes


def decode_image(src, name: str | None = None) -> torch.Tensor:
    """uint8 [H, W, 3] RGB from a file path, encoded bytes, or an ImageRecord. Raises ImageError naming the file
    (`name`, else the path or record source)."""
    from PIL import Image

    if isinstance(src, ImageRecord):
        name = name or src.source or src.path
        try:
            src = src.read_bytes() if src.offset >= 0 else src.path
        except OSError as e:
            raise ImageError(name, f"unreadable shard ({e})") from None
    if isinstance(src, (bytes, bytearray, memoryview)):
        name, src = name or "<image bytes>", io.BytesIO(src)
    else:
        name = name or str(src)
        if not os.path.exists(src):
            raise ImageError(name, "missing file")
    try:
        with Image.open(src) as img:
            rgb = np.array(img.convert("RGB"))  # a copy: writable, and the file is closed after
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(name, f"not a readable image ({type(e).__name__}: {e})") from None
    return torch.from_numpy(rgb)


def image_records(path: str | Path) -> tuple[list[ImageRecord], list[str]]:
    """(records, classes) of an image shard folder (it has a manifest.json) or of an ImageFolder split."""
    from jepa_scale.data.shards.images import read_image_shards
    from jepa_scale.data.shards.make import MANIFEST

    if (Path(path) / MANIFEST).is_file():
        return read_image_shards(path)
    records, classes = scan_image_folder(path)
    return [ImageRecord(p, label, p) for p, label in records], classes


class LabelledImages(ReplacingDataset):
    """Images -> `(views, label, i, replaced)` with views = [transform(image uint8 [H, W, 3], rng)]: one segment of
    `[3, H, W]` views (the model side repeats an image along time). Records: (path, label) pairs or ImageRecords."""

    what = "images"
    errors = (ImageError,)

    def __init__(self, records: list, transform: Transform, seed: int,
                 max_consecutive_failures: int = MAX_CONSECUTIVE_FAILURES):
        records = [r if isinstance(r, ImageRecord) else ImageRecord(str(r[0]), int(r[1]), str(r[0])) for r in records]
        super().__init__(records, seed, max_consecutive_failures)
        self.transform = transform

    def _load(self, rec: ImageRecord, rng: np.random.Generator) -> list[list[torch.Tensor]]:
        return [checked_views(self.transform(decode_image(rec), rng), rec.source)]
