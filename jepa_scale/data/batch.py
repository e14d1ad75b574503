"""The unit that flows from the data layer to the training loop."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Batch:
    clips: torch.Tensor  # [B, 3, T, H, W] float32, normalised
    labels: torch.Tensor  # [B]
    masks_ctx: list[torch.Tensor]  # one LongTensor [B, K_ctx] per mask config
    masks_tgt: list[torch.Tensor]  # one LongTensor [B, K_tgt] per mask config
    index: int  # global batch counter: the data position (resume restarts after it)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (video source and path, reason)

    def pin_memory(self):
        self.clips = self.clips.pin_memory()
        return self

    def to(self, device, non_blocking: bool = True) -> "Batch":
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return Batch(move(self.clips), move(self.labels), [move(m) for m in self.masks_ctx],
                     [move(m) for m in self.masks_tgt], self.index, self.skipped)
