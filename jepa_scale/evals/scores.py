"""Top-1 of every probe head, two ways: per sample (each sample counted once) and as the official code reports it
(the mean over iterations of each iteration's batch top-1, averaged over ranks), and the head a grid reports: the
best per-sample validation top-1 (selected on the validation set, as the official eval's `max` over heads is)."""
from __future__ import annotations

import torch

from jepa_scale.monitor.eval_log import confusion_matrix, per_class_accuracy

SELECTION = "the head with the best per-sample validation top-1 (selected on the validation set, as the official max)"


class EpochScores:
    """Running training scores of one epoch on one rank, on the device (read once, at the end of the epoch)."""

    def __init__(self, heads: int, device):
        z = torch.zeros(heads, dtype=torch.float64, device=device)
        self.correct, self.batch_top1 = z.clone(), z.clone()
        self.samples = torch.zeros((), dtype=torch.float64, device=device)
        self.batches = torch.zeros((), dtype=torch.float64, device=device)
        self.loss = torch.zeros((), dtype=torch.float64, device=device)

    def add_train(self, correct: torch.Tensor, n: int, loss: torch.Tensor):
        self.correct += correct
        self.batch_top1 += 100.0 * correct / n
        self.samples += n
        self.batches += 1
        self.loss += loss.double()

    def state_dict(self) -> dict:
        return {k: getattr(self, k).tolist() for k in ("correct", "batch_top1", "samples", "batches", "loss")}

    @classmethod
    def restore(cls, state: dict | None, heads: int, device) -> "EpochScores":
        out = cls(heads, device)
        for k, v in (state or {}).items():
            setattr(out, k, torch.tensor(v, dtype=torch.float64, device=device))
        return out

    def train_summary(self, engine) -> dict:
        w = engine.world_size
        correct, batch_top1 = (engine.all_reduce_mean(t) * w for t in (self.correct, self.batch_top1))
        samples, batches, loss = (engine.all_reduce_mean(t) * w for t in (self.samples, self.batches, self.loss))
        per_head = (100.0 * correct / samples.clamp(min=1)).tolist()
        head = max(range(len(per_head)), key=per_head.__getitem__)
        return {"top1": per_head[head], "top1_per_batch": float(batch_top1[head] / batches.clamp(min=1)),
                "per_head": per_head, "head": head, "loss": float(loss / batches.clamp(min=1))}


def selected(gathered: list, num_classes: int) -> tuple[dict, torch.Tensor]:
    """Validation scores from every rank's (preds [H, n], labels [n], batch sizes), and the selected head's
    confusion matrix."""
    preds = torch.cat([g[0] for g in gathered], 1)
    labels = torch.cat([g[1] for g in gathered])
    hits = (preds == labels).double()  # [H, N]
    per_head = (100.0 * hits.mean(1)).tolist() if labels.numel() else [0.0] * preds.shape[0]
    head = max(range(len(per_head)), key=per_head.__getitem__)
    batch_top1, start = [], 0
    for _, _, sizes in gathered:
        for n in sizes:
            batch_top1.append(100.0 * float(hits[head, start:start + n].mean()))
            start += n
    matrix = confusion_matrix(preds[head], labels, num_classes)
    return ({"top1": per_head[head], "top1_per_batch": sum(batch_top1) / max(1, len(batch_top1)),
             "per_head": per_head, "head": head, "selection": SELECTION if len(per_head) > 1 else "one head",
             "num_samples": int(labels.numel()), "per_class": per_class_accuracy(matrix)}, matrix)
