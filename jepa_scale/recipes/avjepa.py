"""AV-JEPA: V1's objective over one sequence of video and audio-spectrogram tokens. A joint ViT encodes both
modalities' context, AV-JEPA's predictor predicts both modalities' targets, the EMA target encoder sees the whole
clip and its sound (family.md 4)."""
from __future__ import annotations

import copy

import torch

from jepa_scale.config.avjepa_schema import AVJEPAConfig
from jepa_scale.data.audio_clips import ClipAudio
from jepa_scale.data.sources import open_streams
from jepa_scale.distributed.model_set import ModelSet
from jepa_scale.masks.audiovisual import audiovisual_mask_fns
from jepa_scale.models.audiovisual import build_audiovisual_vit
from jepa_scale.models.predictor_av import build_av_predictor
from jepa_scale.monitor.flops import jepa_step
from jepa_scale.recipes.base import RECIPES
from jepa_scale.recipes.objective import target_features
from jepa_scale.recipes.vjepa import VJEPA, reinit_like_v1_train


def av_loss(preds, targets, video_targets: list[int], loss_cfg) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, video loss, audio loss) over the mask configurations. preds and targets [B, K_v + K_a, D] per
    configuration, its first video_targets[i] tokens video. `loss.weighting: tokens` is upstream's mean over the
    concatenation (each token weighted by its modality's weight); `modality` weighs the two modalities' means.
    The per-modality losses (logged, unweighted) are means over the configurations that predict that modality."""
    w_v, w_a, p = loss_cfg.video_weight, loss_cfg.audio_weight, loss_cfg.loss_exp
    total, per = 0.0, {"video": [], "audio": []}
    for z, h, k in zip(preds, targets, video_targets):
        err = torch.abs(z - h) ** p / p
        parts = [(w, e) for w, e in ((w_v, err[:, :k]), (w_a, err[:, k:])) if e.numel()]
        if loss_cfg.weighting == "tokens":
            total = total + sum(w * e.sum() for w, e in parts) / sum(w * e.numel() for w, e in parts)
        else:
            total = total + sum(w * e.mean() for w, e in parts) / sum(w for w, _ in parts)
        for name, e in (("video", err[:, :k]), ("audio", err[:, k:])):
            if e.numel():
                per[name].append(e.detach().mean())
    means = [torch.stack(v).mean() if v else torch.zeros((), device=preds[0].device) for v in per.values()]
    return total / len(preds), *means


@RECIPES.register("avjepa")
class AVJEPA(VJEPA):
    config_class = AVJEPAConfig
    logged = ("target_std", "loss_video", "loss_audio")

    def __init__(self, cfg: AVJEPAConfig):
        super().__init__(cfg)
        d = cfg.data
        self.video_tokens = (d.crop_size // d.patch_size) ** 2 * (d.num_frames // d.tubelet_size)

    def build_models(self) -> ModelSet:
        torch.manual_seed(self.cfg.meta.seed)
        encoder = build_audiovisual_vit(self.cfg)
        predictor = build_av_predictor(self.cfg, encoder)
        reinit_like_v1_train(encoder, predictor)  # upstream is a V1 fork: its train script re-initialises too
        target = copy.deepcopy(encoder)
        return ModelSet({"encoder": encoder, "predictor": predictor}, {"target_encoder": target},
                        [("target_encoder", "encoder")])

    def mask_fns(self) -> dict:
        return audiovisual_mask_fns(self.cfg)

    def open_streams(self, cfg, micro_indices, num_micro, device, skip_report=None, decoder=None) -> list:
        return open_streams(cfg, micro_indices, num_micro, device, self.mask_fns(), skip_report, decoder,
                            audio=ClipAudio(cfg.audio))

    def _target_ids(self, masks) -> list[torch.Tensor]:
        """Each configuration's targets as indices into the joint [video, audio] sequence."""
        v, a = masks["video"], masks["audio"]
        return [torch.cat([tv, ta + self.video_tokens], dim=1) for tv, ta in zip(v.target, a.target)]

    def loss(self, models, batch):
        inputs = {"video": batch.inputs["video"], "audio": batch.inputs["audio"]}
        v, a = batch.masks["video"], batch.masks["audio"]
        targets, target_std = target_features(models["target_encoder"], inputs, self._target_ids(batch.masks))
        z = models["encoder"](inputs, masks={"video": v.context, "audio": a.context})
        preds = models["predictor"](z, list(zip(v.context, a.context)), list(zip(v.target, a.target)))
        loss, loss_v, loss_a = av_loss(preds, targets, [t.size(1) for t in v.target], self.cfg.loss)
        return loss, {"target_std": target_std, "loss_video": loss_v, "loss_audio": loss_a}

    def mask_shapes(self, masks: dict) -> list[tuple[int, int]]:
        """(context, target) tokens of each configuration, both modalities together (one joint sequence)."""
        v, a = (self.pair_shapes(masks[m]) for m in ("video", "audio"))
        return [(cv + ca, tv + ta) for (cv, tv), (ca, ta) in zip(v, a)]

    def step_flops(self, modules, batch) -> float:
        return jepa_step(modules["encoder"], modules["predictor"], self.mask_shapes(batch.masks))["total"] * batch.size
