from jepa_scale.models.attention import BACKENDS, attention
from jepa_scale.models.factory import build_encoder, build_predictor
from jepa_scale.models.predictor import Predictor
from jepa_scale.models.vit import PRESETS, VisionTransformer, preset_arch

__all__ = ["BACKENDS", "attention", "build_encoder", "build_predictor", "Predictor", "PRESETS", "VisionTransformer",
           "preset_arch"]
