"""Write a synthetic ImageFolder tree for the tiny I-JEPA config: `<out>/train/<class>/<n>.png`, one still frame
of the synthetic moving-shape videos per image (a shape on a textured background; 12 classes = shape x direction,
the direction invisible in a still). `configs/pretrain/tiny_cpu_ijepa.yaml` reads `demo_out/images/train/`."""
import argparse
from pathlib import Path

import numpy as np

from jepa_scale.data.synthetic import NUM_CLASSES, moving_shape_frames


def write_shape_images(out: str | Path, per_class: int = 16, height: int = 112, width: int = 128, seed: int = 0,
                       split: str = "train") -> Path:
    """`per_class` PNGs in each of the NUM_CLASSES class folders of `<out>/<split>/`; returns that split folder."""
    from PIL import Image

    root = Path(out) / split
    rng = np.random.default_rng(seed)
    for label in range(NUM_CLASSES):
        folder = root / f"class_{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            frame = moving_shape_frames(label, 2, height, width, rng)[int(rng.integers(2))]
            Image.fromarray(frame).save(folder / f"{n:04d}.png")
    return root


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="demo_out/images")
    p.add_argument("--per-class", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    root = write_shape_images(a.out, a.per_class, seed=a.seed)
    print(f"wrote {a.per_class * NUM_CLASSES} images in {NUM_CLASSES} class folders under {root}")


if __name__ == "__main__":
    main()
