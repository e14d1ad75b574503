"""The frozen evals' multi-segment x multi-view protocol, as pure functions around any video encoder.

A sample is S temporal segments x V spatial views of one video. All S x V clips go through the encoder in ONE
call (segment-major, then view, along the batch), the tokens are regrouped per view, and either every
(view, segment) is probed on its own or, with attend_across_segments (every official config), each view's segments
are joined along time so one probe call sees the whole video. The prediction is the mean of the softmaxes.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Encoder = Callable[[torch.Tensor], torch.Tensor]  # [B, 3, T, H, W] -> [B, N, D]


def encode_clips(encoder: Encoder, clips: Sequence[Sequence[torch.Tensor]], attend_across_segments: bool,
                 tubelet_size: int) -> list[torch.Tensor]:
    """Tokens of every clip of a batch, grouped for the probe.

    clips: `clips[segment][view]` is [B, 3, T, H, W] (what the eval loader's default collate yields); every clip
    has the same shape. The encoder maps [S*V*B, 3, T, H, W] to [S*V*B, N, D] with tokens in (t, h, w) order.

    Returns, with attend_across_segments, one [B, S*N, D] per view (list[V]): per view the segments' tokens are
    viewed as [B, T/tubelet, N/(T/tubelet), D] and concatenated along time, segment 0 first. Without, one
    [B, N, D] per (view, segment) (list[V*S]), view-major: item v*S + s is view v of segment s.
    """
    S, V = len(clips), len(clips[0])
    if S == 0 or V == 0 or any(len(seg) != V for seg in clips):
        raise ValueError(f"clips must be S >= 1 segments of the same V >= 1 views; got views per segment "
                         f"{[len(seg) for seg in clips]}")
    B, T = clips[0][0].shape[0], clips[0][0].shape[2]
    out = encoder(torch.cat([view for seg in clips for view in seg], dim=0))
    per_clip = out.split(B)  # item s*V + v
    by_view = [[per_clip[s * V + v] for s in range(S)] for v in range(V)]
    if not attend_across_segments:
        return [o for view in by_view for o in view]
    t, D = T // tubelet_size, out.shape[-1]
    return [torch.cat([o.reshape(B, t, -1, D) for o in view], dim=1).flatten(1, 2) for view in by_view]


def image_as_video(x: torch.Tensor, frames: int) -> torch.Tensor:
    """[B, 3, H, W] -> [B, 3, frames, H, W], the image repeated along time.

    The official image evals repeat to the pretraining clip length (`pretrain.frames_per_clip`, 16; V-JEPA 2:
    `img_as_video_nframes`), not to the tubelet size, so the encoder's temporal position grid is the pretrained
    one. A copy, not an expanded view, so later in-place transforms stay legal."""
    if x.dim() != 4:
        raise ValueError(f"expected an image batch [B, C, H, W], got shape {tuple(x.shape)}")
    return x.unsqueeze(2).repeat(1, 1, frames, 1, 1)


def average_probabilities(logits_list: Sequence[torch.Tensor]) -> torch.Tensor:
    """The eval prediction: softmax of each [B, C] logits, arithmetic mean over them -> [B, C] (float32).

    Probabilities, not logits, are averaged, over views and (when not attending across segments) segments."""
    if len(logits_list) == 0:
        raise ValueError("average_probabilities needs at least one logits tensor")
    return sum(F.softmax(o.float(), dim=1) for o in logits_list) / len(logits_list)
