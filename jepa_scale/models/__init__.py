from jepa_scale.models.attention import BACKENDS, attention
from jepa_scale.models.predictor import Predictor, build_predictor
from jepa_scale.models.protocols import Backbone, Stack
from jepa_scale.models.registry import BACKBONES, build_backbone
from jepa_scale.models.vit import PRESETS, VisionTransformer, preset_arch
from jepa_scale.models import videomamba  # noqa: F401,E402  (registers the VideoMamba backbones)

__all__ = ["BACKENDS", "attention", "Backbone", "Stack", "BACKBONES", "build_backbone", "build_predictor",
           "Predictor", "PRESETS", "VisionTransformer", "preset_arch"]
