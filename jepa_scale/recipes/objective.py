"""The V-JEPA objective: predict layer-normed target-encoder features of masked tokens from the context."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from jepa_scale.models.tokens import gather_tokens


@torch.no_grad()
def target_features(target_encoder, clips, masks_tgt: list[torch.Tensor]):
    """-> ([B, K_tgt_i, D] per mask config, raw-feature std as a collapse signal)."""
    h = target_encoder(clips)  # [B, N, D], ends in the encoder's final norm
    feature_std = h.float().std(dim=(0, 1)).mean()
    h = F.layer_norm(h, (h.size(-1),))
    return [gather_tokens(h, m) for m in masks_tgt], feature_std


def predict(encoder, predictor, clips, masks_ctx: list[torch.Tensor], masks_tgt: list[torch.Tensor], **kw):
    """One prediction [B, K_tgt_i, D] per mask config; the clip is patch-embedded once for all configs. `kw` goes
    to the predictor (V2: the frames-per-clip group's mask_index)."""
    return predictor(encoder(clips, masks=masks_ctx), masks_ctx, masks_tgt, **kw)


def jepa_loss(preds, targets, loss_exp: float = 1.0) -> torch.Tensor:
    """mean over configs of mean(|z - h|^p) / p."""
    loss = sum(torch.mean(torch.abs(z - h) ** loss_exp) / loss_exp for z, h in zip(preds, targets))
    return loss / len(preds)


def std_regulariser(preds) -> torch.Tensor:
    """The official `reg_coeff` term: mean(relu(1 - std over tokens)), averaged over configs."""
    pstd = sum(torch.sqrt(z.var(dim=1) + 1e-4) for z in preds) / len(preds)
    return torch.mean(F.relu(1.0 - pstd))
