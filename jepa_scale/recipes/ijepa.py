"""I-JEPA (facebookresearch/ijepa, family.md 2): an image ViT context encoder and a narrow predictor regress the EMA
target encoder's layer-normed features of a few target blocks from one large context block, with a smooth-L1
loss. Same shape as the V-JEPA recipe: the models (re-initialised after the rescale, as `helper.init_model`),
the four AdamW groups, the warmup-cosine LR, cosine WD and linear EMA of the shared `Schedules` (I-JEPA's
schedulers number their steps as V-JEPA's), no gradient clipping; images and masks from `data.image_batches`.
Official I-JEPA checkpoints (`module.` prefixes, from DDP) load as V-JEPA's do: prefixes are stripped by name."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from jepa_scale.config.ijepa_schema import IJEPAConfig
from jepa_scale.data.image_batches import open_image_streams
from jepa_scale.distributed.model_set import ModelSet
from jepa_scale.masks.multiblock2d import MultiBlock2DMasks
from jepa_scale.models.predictor_ijepa import build_ijepa_models, repeat_interleave_batch
from jepa_scale.models.registry import attention_backend
from jepa_scale.monitor.flops import jepa_step
from jepa_scale.recipes.base import RECIPES
from jepa_scale.recipes.objective import target_features
from jepa_scale.recipes.vjepa import VJEPA, reinit_like_v1_train


def ijepa_loss(preds: torch.Tensor, targets: list[torch.Tensor], num_context: int) -> torch.Tensor:
    """The official loss: smooth-L1 (beta 1, mean over all elements) between the predictions [npred*nenc*B, K, D]
    and the targets gathered per target mask (a list of npred [B, K, D]), concatenated along the batch and
    repeated over the nenc context masks."""
    batch = targets[0].size(0)
    h = repeat_interleave_batch(torch.cat(targets, dim=0), batch, num_context)
    return F.smooth_l1_loss(preds, h)


@RECIPES.register("ijepa")
class IJEPA(VJEPA):
    """V-JEPA's optimizer (four groups), checkpoint handling and token count; I-JEPA's models, masks, data, loss."""
    config_class = IJEPAConfig
    checkpoint_prefix = "module."  # DDP around the bare models (no wrapper), as the official I-JEPA files

    def build_models(self) -> ModelSet:
        torch.manual_seed(self.cfg.meta.seed)
        encoder, predictor = build_ijepa_models(self.cfg, attention_backend(self.cfg))
        reinit_like_v1_train(encoder, predictor)  # helper.init_model: every Linear and LayerNorm again
        target = copy.deepcopy(encoder)
        return ModelSet({"encoder": encoder, "predictor": predictor}, {"target_encoder": target},
                        [("target_encoder", "encoder")])

    def mask_fns(self) -> dict:
        return {"image": MultiBlock2DMasks.from_config(self.cfg.mask, self.cfg.data.crop_size)}

    def open_streams(self, cfg, micro_indices, num_micro, device, skip_report=None, decoder=None) -> list:
        # decoder: a video decoder, which images do not use
        return open_image_streams(cfg, micro_indices, num_micro, device, self.mask_fns(), skip_report)

    def loss(self, models, batch):
        images, masks = batch.inputs["image"], batch.masks["image"]
        targets, target_std = target_features(models["target_encoder"], images, masks.target)
        z = models["encoder"](images, masks=masks.context)
        preds = models["predictor"](z, masks.context, masks.target)
        return ijepa_loss(preds, targets, len(masks.context)), {"target_std": target_std}

    @staticmethod
    def mask_shapes(masks: dict) -> list[tuple[int, int]]:
        """(context tokens, target tokens) of every predictor sequence, one per (target mask, context mask) pair,
        target-major as the official batch order; the first nenc entries are the nenc context masks."""
        m = masks["image"]
        return [(c.shape[1], t.shape[1]) for t in m.target for c in m.context]

    def step_flops(self, modules, batch) -> float:
        masks = batch.masks["image"]
        enc, pred = modules["encoder"], modules["predictor"]
        shapes = self.mask_shapes(batch.masks)
        nenc = len(masks.context)
        # target forward and context encoder (once per context mask) as jepa_step counts them
        base = jepa_step(enc, pred, [(k_ctx, 0) for k_ctx, _ in shapes[:nenc]])
        total = base["target_forward"] + base["context"]
        # the predictor embeds each context once (before the repeat over target masks), then runs every pair
        total += sum(3 * pred.io_flops(k_ctx, 0) for k_ctx, _ in shapes[:nenc])
        for k_ctx, k_tgt in shapes:
            n = k_ctx + k_tgt
            total += 3 * (pred.io_flops(0, k_tgt) + pred.units_flops(n)) + pred.recompute_flops(n)
        return total * batch.size

    def trained_sequences(self, mask_shapes):
        """mask_shapes: as `mask_shapes` gives them (every predictor sequence; the first nenc are the contexts)."""
        nenc = self.cfg.mask.num_enc_masks
        return ([("encoder", k_ctx) for k_ctx, _ in mask_shapes[:nenc]] +
                [("predictor", k_ctx + k_tgt) for k_ctx, k_tgt in mask_shapes])
