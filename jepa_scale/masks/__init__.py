from jepa_scale.masks.multiblock3d import MaskGenerator, MultiBlockMasks

__all__ = ["MaskGenerator", "MultiBlockMasks"]
