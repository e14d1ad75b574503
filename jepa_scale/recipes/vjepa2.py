"""V-JEPA 2: V1's objective with 3-D RoPE encoder and predictor, the V2 predictor (tokens sorted by position, a
mask token per frames-per-clip group), no re-initialisation after the per-block rescale, no regulariser, and
several frames-per-clip groups in one batch, each masked and predicted on its own."""
from __future__ import annotations

import copy
import logging

import torch

from jepa_scale.config.vjepa2_schema import VJEPA2Config
from jepa_scale.data.batch import video_key
from jepa_scale.distributed.model_set import ModelSet
from jepa_scale.masks import MultiBlockMasks
from jepa_scale.models import build_backbone
from jepa_scale.models.predictor_v2 import build_predictor_v2
from jepa_scale.monitor.flops import jepa_step
from jepa_scale.optim.adamw import make_adamw
from jepa_scale.recipes.base import RECIPES
from jepa_scale.recipes.objective import jepa_loss, predict, target_features
from jepa_scale.recipes.vjepa import VJEPA, param_groups

log = logging.getLogger(__name__)


def drop_stale_pos_embed(ckpt: dict, source: str, names=("encoder", "target_encoder")) -> dict:
    """The one documented difference between released V2 files and a RoPE encoder: a `pos_embed` entry the model
    does not have (the official hub loader swallows it with strict=False). Removed by name; anything else that
    differs still fails the strict load."""
    out = dict(ckpt)
    for name in names:
        state = ckpt.get(name)
        if isinstance(state, dict):
            stale = [k for k in state if k.split(".")[-1] == "pos_embed"]
            if stale:
                log.info("%s: '%s' has %s, which a RoPE encoder has no use for: not loaded", source, name,
                         ", ".join(stale))
                out[name] = {k: v for k, v in state.items() if k not in stale}
    return out


@RECIPES.register("vjepa2")
class VJEPA2(VJEPA):
    config_class = VJEPA2Config

    def __init__(self, cfg: VJEPA2Config):
        super().__init__(cfg)
        d = cfg.data
        self.groups = d.fpc_groups()
        self.keys = [video_key(f, self.groups) for f in self.groups]  # group i predicts with mask token i

    def build_models(self) -> ModelSet:
        torch.manual_seed(self.cfg.meta.seed)
        encoder = build_backbone(self.cfg)  # built for max(dataset_fpcs) frames
        predictor = build_predictor_v2(self.cfg, encoder, self.cfg.model.num_mask_tokens)
        # the official trainer lets DDP search for the unused tokens every step (find_unused_parameters)
        predictor.freeze_mask_tokens_from(len(self.groups))
        target = copy.deepcopy(encoder)  # V2 keeps the model classes' init (V1 re-initialised here)
        return ModelSet({"encoder": encoder, "predictor": predictor}, {"target_encoder": target},
                        [("target_encoder", "encoder")])

    def optimizer(self, modules: dict) -> torch.optim.Optimizer:
        o = self.cfg.optimization
        return make_adamw(param_groups(modules["encoder"], modules["predictor"]), tuple(o.betas), o.eps)

    def mask_fns(self) -> dict:
        d = self.cfg.data
        return {key: MultiBlockMasks(self.cfg.mask, d.crop_size, fpc, d.patch_size, d.tubelet_size)
                for key, fpc in zip(self.keys, self.groups)}

    def official_state(self, ckpt: dict, source: str) -> dict:
        return drop_stale_pos_embed(ckpt, source)

    def _groups_in(self, batch):
        """(mask-token index, key) of each frames-per-clip group present in the batch."""
        return [(i, k) for i, k in enumerate(self.keys) if k in batch.inputs]

    def loss(self, models, batch):
        preds, targets, stds = [], [], []
        for index, key in self._groups_in(batch):
            clips, masks = batch.inputs[key], batch.masks[key]
            h, std = target_features(models["target_encoder"], clips, masks.target)
            z = predict(models["encoder"], models["predictor"], clips, masks.context, masks.target, mask_index=index)
            preds += z
            targets += h
            stds.append(std)
        # every (group, mask config) pair weighs the same, as the official mean over the pairs
        return jepa_loss(preds, targets, self.cfg.loss.loss_exp), {"target_std": torch.stack(stds).mean()}

    def step_flops(self, modules, batch) -> float:
        enc, total = modules["encoder"], 0.0
        for _, key in self._groups_in(batch):
            clips, masks = batch.inputs[key], batch.masks[key]
            shapes = self.pair_shapes(masks)
            tokens = enc.num_patches * clips.shape[2] // enc.num_frames
            total += jepa_step(enc, modules["predictor"], shapes, tokens=tokens)["total"] * clips.shape[0]
        return total
