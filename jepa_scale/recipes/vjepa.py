"""V-JEPA (V1): a ViT context encoder and a narrow predictor regress the EMA target encoder's layer-normed features
of masked tubelets from the visible ones."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from jepa_scale.checkpoint.official import PREFIX
from jepa_scale.config.schema import PretrainConfig
from jepa_scale.data.batch import Masks
from jepa_scale.data.sources import open_streams
from jepa_scale.distributed.model_set import ModelSet
from jepa_scale.masks import MultiBlockMasks
from jepa_scale.models import build_backbone, build_predictor
from jepa_scale.models.videomamba import MambaStack
from jepa_scale.models.vit import init_vit_weights
from jepa_scale.monitor.flops import jepa_step
from jepa_scale.optim import make_adamw
from jepa_scale.recipes.base import RECIPES
from jepa_scale.recipes.objective import jepa_loss, predict, std_regulariser, target_features


def reinit_like_v1_train(*modules: nn.Module, std: float = 0.02):
    """V1's train script re-initialises every Linear (trunc-normal, std 0.02) and LayerNorm of its ViTs after
    building the models, undoing the per-block rescale (convolutions and mask tokens keep their model-class init).
    Mamba models (the VideoMamba encoder, the Mamba predictor) keep their own init, whose order is part of their
    design (the fork re-initialises only its ViT predictor)."""
    for module in modules:
        if not isinstance(module, MambaStack):
            init_vit_weights(module, std, convs=False)


def _decays(name: str, p: torch.Tensor) -> bool:
    # the official rule: biases and 1-D params are not decayed (mask tokens are [1, 1, Dp], so they are)
    return "bias" not in name and p.ndim != 1


def param_groups(encoder: nn.Module, predictor: nn.Module) -> list[dict]:
    """The official group order (encoder decay, predictor decay, encoder no-decay, predictor no-decay), so optimizer
    state dicts line up with official checkpoints. Frozen parameters stay listed, as there; AdamW skips them."""
    def pick(model, decay):
        return [p for n, p in model.named_parameters() if _decays(n, p) == decay]

    return [
        {"params": pick(encoder, True)},
        {"params": pick(predictor, True)},
        {"params": pick(encoder, False), "WD_exclude": True, "weight_decay": 0.0},
        {"params": pick(predictor, False), "WD_exclude": True, "weight_decay": 0.0},
    ]


@RECIPES.register("vjepa")
class VJEPA:
    config_class = PretrainConfig
    logged = ("target_std",)  # raw target-feature std: a collapse signal

    def __init__(self, cfg: PretrainConfig):
        self.cfg = cfg

    def build_models(self) -> ModelSet:
        torch.manual_seed(self.cfg.meta.seed)
        encoder = build_backbone(self.cfg)
        predictor = build_predictor(self.cfg, encoder)
        reinit_like_v1_train(encoder, predictor)
        target = copy.deepcopy(encoder)
        return ModelSet({"encoder": encoder, "predictor": predictor}, {"target_encoder": target},
                        [("target_encoder", "encoder")])

    def optimizer(self, modules: dict) -> torch.optim.Optimizer:
        return make_adamw(param_groups(modules["encoder"], modules["predictor"]))

    def mask_fns(self) -> dict:
        return {"video": MultiBlockMasks.for_video(self.cfg)}

    def open_streams(self, cfg, micro_indices, num_micro, device, skip_report=None, decoder=None) -> list:
        return open_streams(cfg, micro_indices, num_micro, device, self.mask_fns(), skip_report, decoder)

    def loss(self, models, batch):
        clips, masks = batch.inputs["video"], batch.masks["video"]
        targets, target_std = target_features(models["target_encoder"], clips, masks.target)
        preds = predict(models["encoder"], models["predictor"], clips, masks.context, masks.target)
        loss = jepa_loss(preds, targets, self.cfg.loss.loss_exp)
        if self.cfg.loss.reg_coeff:
            loss = loss + self.cfg.loss.reg_coeff * std_regulariser(preds)
        return loss, {"target_std": target_std}

    checkpoint_prefix = PREFIX  # of the files' state-dict keys: DDP around the official MultiMaskWrapper

    def official_state(self, ckpt: dict, source: str) -> dict:
        """An official-layout checkpoint dict as our modules take it (V1's files load as they are)."""
        return ckpt

    @staticmethod
    def pair_shapes(masks: Masks) -> list[tuple[int, int]]:
        """(context, target) tokens of each mask configuration: context i is predicted at target i."""
        return [(c.shape[1], t.shape[1]) for c, t in zip(masks.context, masks.target)]

    def mask_shapes(self, masks: dict) -> list[tuple[int, int]]:
        """Of the first masked input (V-JEPA 2: its first frames-per-clip group)."""
        return self.pair_shapes(next(iter(masks.values())))

    def step_flops(self, modules, batch) -> float:
        shapes = self.mask_shapes(batch.masks)
        return jepa_step(modules["encoder"], modules["predictor"], shapes)["total"] * batch.size

    def tokens_per_sample(self, modules) -> int:
        return modules["encoder"].num_patches

    def trained_sequences(self, mask_shapes):
        return ([("encoder", k_ctx) for k_ctx, _ in mask_shapes] +
                [("predictor", k_ctx + k_tgt) for k_ctx, k_tgt in mask_shapes])
