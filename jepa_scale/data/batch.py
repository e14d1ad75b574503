"""The unit that flows from the data layer to a task."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch


class Masks(NamedTuple):
    """Token indices of one modality: one LongTensor [B, K] per mask configuration."""
    context: list[torch.Tensor]
    target: list[torch.Tensor]


@dataclass
class Batch:
    inputs: dict[str, torch.Tensor]  # modality -> tensor, e.g. {"video": [B, 3, T, H, W] float32, normalised}
    labels: torch.Tensor  # [B]
    index: int  # global batch counter: the data position (resume restarts after it)
    masks: dict[str, Masks] = field(default_factory=dict)  # modality -> masks; empty for a probe batch
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (video source and path, reason)

    @property
    def size(self) -> int:
        return self.labels.shape[0]

    def pin_memory(self):
        self.inputs = {k: v.pin_memory() for k, v in self.inputs.items()}
        return self

    def to(self, device, non_blocking: bool = True) -> "Batch":
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        masks = {k: Masks([move(m) for m in v.context], [move(m) for m in v.target]) for k, v in self.masks.items()}
        return Batch({k: move(v) for k, v in self.inputs.items()}, move(self.labels), self.index, masks, self.skipped)


def video_key(fpc: int, groups: list[int]) -> str:
    """The input (and mask) key of the clips with `fpc` frames: "video" when the config has one frames-per-clip
    group (V1, and every released V2 config), else "video@{fpc}" (V2 `dataset_fpcs` with different values: each
    group is collated and masked separately)."""
    return "video" if len(groups) == 1 else f"video@{fpc}"
