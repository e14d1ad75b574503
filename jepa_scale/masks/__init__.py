from jepa_scale.masks.multiblock2d import MultiBlock2DMasks
from jepa_scale.masks.multiblock3d import MaskGenerator, MultiBlockMasks

__all__ = ["MaskGenerator", "MultiBlock2DMasks", "MultiBlockMasks"]
