"""What a probe run reports: one CSV row per epoch under the official file name (`epoch,train_acc,val_acc`, the
header V-JEPA 2 corrected), tensorboard (top-1 per epoch, per-class accuracy, the confusion matrix as an image),
and the final metrics as JSON. Accuracies are from the selected head (the best on validation for a grid)."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import torch


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[C, C] counts: row = true class, column = predicted."""
    flat = labels.long() * num_classes + preds.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def confusion_image(matrix: torch.Tensor, min_size: int = 256) -> torch.Tensor:
    """[3, H, W] float image of the row-normalised matrix: white (0) to dark blue (1), each cell a square."""
    rows = matrix.float() / matrix.sum(1, keepdim=True).clamp(min=1)
    white, blue = torch.tensor([1.0, 1.0, 1.0]), torch.tensor([0.03, 0.19, 0.42])
    img = white[:, None, None] + (blue - white)[:, None, None] * rows[None]
    scale = max(1, -(-min_size // matrix.shape[0]))
    return img.repeat_interleave(scale, 1).repeat_interleave(scale, 2)


def per_class_accuracy(matrix: torch.Tensor) -> list[float | None]:
    """Top-1 per true class (None for a class with no validation sample)."""
    totals = matrix.sum(1)
    return [None if int(t) == 0 else float(matrix[c, c]) / float(t) for c, t in enumerate(totals)]


class EvalLog:
    def __init__(self, folder: Path, csv_name: str, tensorboard: bool, resume_epoch: int | None):
        self.folder = Path(folder)
        self.csv_path = self.folder / csv_name
        new = resume_epoch is None or not self.csv_path.exists()
        if not new:
            _keep_epochs_before(self.csv_path, resume_epoch)
        self._file = open(self.csv_path, "w" if new else "a", newline="")
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(("epoch", "train_acc", "val_acc"))
            self._file.flush()
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(str(self.folder / "tensorboard"), purge_step=resume_epoch)

    def epoch(self, epoch: int, train: dict, val: dict, matrix: torch.Tensor | None):
        """One epoch (1-based, as the official CSV): train/val hold `top1` (%), `top1_per_batch`, `per_head`."""
        self._csv.writerow((epoch, f"{train['top1']:.3f}", f"{val['top1']:.3f}"))
        self._file.flush()
        if self._tb is None:
            return
        for split, m in (("train", train), ("val", val)):
            self._tb.add_scalar(f"{split}/top1", m["top1"], epoch)
            self._tb.add_scalar(f"{split}/top1_per_batch", m["top1_per_batch"], epoch)
            for h, acc in enumerate(m["per_head"]):
                self._tb.add_scalar(f"{split}_heads/top1_head{h}", acc, epoch)
        if matrix is not None:
            self._tb.add_image("val/confusion_matrix", confusion_image(matrix), epoch)
            for c, acc in enumerate(per_class_accuracy(matrix)):
                if acc is not None:
                    self._tb.add_scalar(f"val_per_class/class{c:04d}", 100.0 * acc, epoch)
        self._tb.flush()

    def close(self):
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def write_results(path: Path, results: dict):
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(results, indent=2))
    os.replace(tmp, path)


def _keep_epochs_before(path: Path, epoch: int):
    """A resumed run rewrites the epochs from `epoch` on (rows of 1-based epochs <= epoch are kept)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    kept = rows[:1] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= epoch]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(kept)
    os.replace(tmp, path)
