"""RandAugment and AutoAugment on uint8 clips [T, H, W, 3] (an image is T=1), in torch, without PIL.

The frozen video eval draws one op list per clip and applies each op with one magnitude to every frame; the image
eval runs the ImageNet AutoAugment policy on one image. Every op reproduces the PIL operation the reference
pipelines call (ImageOps / ImageEnhance / Image.transform), pixel for pixel where PIL's arithmetic allows it:
lookup tables for the point ops, PIL's grey conversion and truncating blend for the enhance ops, and PIL's own
affine sampler (pixel-centre convention, hard out-of-frame fill, the a=-1 cubic it uses for transforms) for the
geometric ops. Data-dependent ops (AutoContrast, Equalize, Contrast) read each frame's own statistics, as the
reference does by running PIL on each frame. All randomness comes from the numpy Generator given to __call__.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch

LEVEL_MAX = 10.0  # magnitudes are on a 0..10 scale
GRAY_FILL = (128, 128, 128)  # the fill of geometric ops when the caller passes no image mean (the video eval)
INTERPOLATIONS = ("bilinear", "bicubic")


# -- point ops: one 256-entry lookup table, or one per (frame, channel)

def _apply_lut(frames: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """lut [256] for every pixel, or [T, 3, 256] for each frame and channel; uint8 in, uint8 out."""
    lut = lut.clamp(0, 255).to(torch.uint8)
    if lut.dim() == 1:
        return lut[frames.long()]
    return lut.reshape(-1)[frames.long() + _plane_offsets(frames)]


def _plane_offsets(frames: torch.Tensor) -> torch.Tensor:
    """256 * (frame * 3 + channel), broadcastable to [T, H, W, 3]: indexes a flat [T * 3 * 256] table."""
    T = frames.shape[0]
    return (torch.arange(T).view(T, 1, 1, 1) * 3 + torch.arange(3)) * 256


def _histograms(frames: torch.Tensor) -> torch.Tensor:
    """[T, 3, 256] pixel counts of each frame's channels."""
    T = frames.shape[0]
    flat = (frames.long() + _plane_offsets(frames)).reshape(-1)
    return torch.bincount(flat, minlength=T * 3 * 256).view(T, 3, 256)


_LEVELS = torch.arange(256)


def invert(frames: torch.Tensor) -> torch.Tensor:
    return _apply_lut(frames, 255 - _LEVELS)


def solarize(frames: torch.Tensor, threshold: int) -> torch.Tensor:
    """Values >= threshold are inverted (threshold 256: no change)."""
    return _apply_lut(frames, torch.where(_LEVELS < threshold, _LEVELS, 255 - _LEVELS))


def solarize_add(frames: torch.Tensor, add: int, threshold: int = 128) -> torch.Tensor:
    """Values below threshold are raised by `add`, saturating at 255."""
    return _apply_lut(frames, torch.where(_LEVELS < threshold, _LEVELS + add, _LEVELS))


def posterize(frames: torch.Tensor, bits: int) -> torch.Tensor:
    """Keep the `bits` most significant bits (8 or more: no change, 0: black)."""
    if bits >= 8:
        return frames
    return _apply_lut(frames, _LEVELS & ~(2 ** (8 - bits) - 1))


def auto_contrast(frames: torch.Tensor) -> torch.Tensor:
    """Stretch each frame's channel from [min, max] to [0, 255]; a flat channel is left alone. The table is
    computed in float64 and truncated, the arithmetic PIL's autocontrast uses (so hi may map to 254)."""
    flat = frames.reshape(frames.shape[0], -1, 3)
    lo, hi = flat.amin(1).double(), flat.amax(1).double()  # [T, 3]
    stretch = hi > lo
    scale = 255.0 / torch.where(stretch, hi - lo, 1.0)
    table = torch.trunc(_LEVELS.double() * scale[..., None] - (lo * scale)[..., None])
    return _apply_lut(frames, torch.where(stretch[..., None], table, _LEVELS.double()).long())


def equalize(frames: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation per frame and channel with PIL's integer steps: step = (pixels not in the last
    occupied bin) // 255, level i -> (step // 2 + pixels below i) // step; identity when step is 0."""
    hist = _histograms(frames)
    last = torch.where(hist > 0, torch.arange(256), -1).amax(-1, keepdim=True)  # highest occupied level
    step = (hist.sum(-1, keepdim=True) - hist.gather(-1, last)) // 255
    below = hist.cumsum(-1) - hist
    table = (step // 2 + below) // step.clamp(min=1)
    return _apply_lut(frames, torch.where(step > 0, table, _LEVELS))


# -- enhance ops: a blend between the frame and a degenerate version of it

def _gray(frames: torch.Tensor) -> torch.Tensor:
    """[T, H, W] int64: PIL's RGB -> L conversion (ITU-R 601 weights in 16-bit fixed point, rounded)."""
    x = frames.long()
    return (x[..., 0] * 19595 + x[..., 1] * 38470 + x[..., 2] * 7471 + 0x8000) >> 16


def _blend(degenerate: torch.Tensor, frames: torch.Tensor, factor: float) -> torch.Tensor:
    """degenerate + factor * (frames - degenerate) in float32, clipped and truncated like PIL's Image.blend."""
    base = degenerate.float()
    out = base + np.float32(factor) * (frames.float() - base)
    return out.clamp_(0, 255).to(torch.uint8)  # the cast truncates


def color(frames: torch.Tensor, factor: float) -> torch.Tensor:
    """Saturation: 0 is the grey image, 1 the original."""
    return _blend(_gray(frames)[..., None].expand(frames.shape), frames, factor)


def contrast(frames: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with each frame's mean grey level (rounded to an integer, as PIL does)."""
    mean = _gray(frames).double().mean(dim=(1, 2))
    return _blend(torch.floor(mean + 0.5).view(-1, 1, 1, 1).expand(frames.shape), frames, factor)


def brightness(frames: torch.Tensor, factor: float) -> torch.Tensor:
    return _blend(torch.zeros_like(frames), frames, factor)


def sharpness(frames: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with PIL's SMOOTH filter (3x3 kernel 1 1 1 / 1 5 1 / 1 1 1 over 13, rounded); the one-pixel border
    of the smoothed image is the original, as PIL's 3x3 filter leaves it."""
    x = frames.float()
    acc = 4.0 * x[:, 1:-1, 1:-1]  # centre weight 5 = the 3x3 box sum (which includes it once) plus 4
    for dy in range(3):
        for dx in range(3):
            acc = acc + x[:, dy:dy + x.shape[1] - 2, dx:dx + x.shape[2] - 2]
    smooth = frames.clone()
    smooth[:, 1:-1, 1:-1] = torch.floor(acc / 13.0 + 0.5).clamp_(0, 255).to(torch.uint8)
    return _blend(smooth, frames, factor)


# -- geometric ops: PIL's affine transform

def _taps(frac: torch.Tensor, interpolation: str):
    """(tap offsets from floor, weights) of the 1-D kernel at fractional positions `frac`. PIL's transform
    samples with a cubic of a = -1 (sharper than the a = -0.5 of its resize), hence not torch's grid_sample."""
    if interpolation == "bilinear":
        return (0, 1), (1.0 - frac, frac)
    a = -1.0

    def cubic(d):
        d = d.abs()
        near = ((a + 2) * d - (a + 3)) * d * d + 1
        far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
        return torch.where(d <= 1, near, far)

    return (-1, 0, 1, 2), (cubic(frac + 1), cubic(frac), cubic(1 - frac), cubic(2 - frac))


def affine(frames: torch.Tensor, matrix, fill=GRAY_FILL, interpolation: str = "bicubic") -> torch.Tensor:
    """Output pixel centre (x + .5, y + .5) samples the input at (a x + b y + c, d x + e y + f), in the pixel-edge
    coordinates of PIL's Image.transform(AFFINE); a sample outside [0, W) x [0, H) takes `fill`, inside it
    the kernel reads edge-clamped neighbours. Every frame gets the same warp."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation {interpolation!r}: expected one of {INTERPOLATIONS}")
    T, H, W, C = frames.shape
    a, b, c, d, e, f = matrix
    ys = torch.arange(H, dtype=torch.float64).view(H, 1) + 0.5
    xs = torch.arange(W, dtype=torch.float64).view(1, W) + 0.5
    sx, sy = (a * xs + b * ys + c).reshape(-1), (d * xs + e * ys + f).reshape(-1)
    inside = (sx >= 0) & (sx < W) & (sy >= 0) & (sy < H)
    x0, y0 = torch.floor(sx - 0.5), torch.floor(sy - 0.5)
    offsets, wx = _taps(sx - 0.5 - x0, interpolation)
    _, wy = _taps(sy - 0.5 - y0, interpolation)
    # pixels as rows of T * C values: each tap gathers whole rows, the same warp serving every frame
    src = frames.permute(1, 2, 0, 3).reshape(H * W, T * C).float()
    out = torch.zeros_like(src)
    for oy, wyi in zip(offsets, wy):
        rows = (y0 + oy).clamp(0, H - 1).long() * W
        for ox, wxj in zip(offsets, wx):
            cols = (x0 + ox).clamp(0, W - 1).long()
            out.addcmul_(src.index_select(0, rows + cols), (wyi * wxj).float().view(-1, 1))
    # PIL truncates (in float64); 1e-4 absorbs the float32 error, so a flat region does not drop one level
    out = torch.floor(out.clamp_(0, 255) + 1e-4).to(torch.uint8).view(H * W, T, C)
    out[~inside] = torch.tensor(fill, dtype=torch.uint8)
    return out.view(H, W, T, C).permute(2, 0, 1, 3).contiguous()


def rotate(frames, degrees: float, fill=GRAY_FILL, interpolation="bicubic"):
    """Counter-clockwise by `degrees` about the frame centre (PIL's rotate without expand; its matrix entries are
    rounded to 15 decimals, which makes quarter turns exact)."""
    H, W = frames.shape[1:3]
    angle = -math.radians(degrees)
    cos, sin = round(math.cos(angle), 15), round(math.sin(angle), 15)
    cx, cy = W / 2.0, H / 2.0
    matrix = (cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy)
    return affine(frames, matrix, fill, interpolation)


def shear_x(frames, factor: float, fill=GRAY_FILL, interpolation="bicubic"):
    return affine(frames, (1, factor, 0, 0, 1, 0), fill, interpolation)


def shear_y(frames, factor: float, fill=GRAY_FILL, interpolation="bicubic"):
    return affine(frames, (1, 0, 0, factor, 1, 0), fill, interpolation)


def translate_x(frames, pixels: float, fill=GRAY_FILL, interpolation="bicubic"):
    """The output at x shows the input at x + pixels (content moves left for positive pixels)."""
    return affine(frames, (1, 0, pixels, 0, 1, 0), fill, interpolation)


def translate_y(frames, pixels: float, fill=GRAY_FILL, interpolation="bicubic"):
    return affine(frames, (1, 0, 0, 0, 1, pixels), fill, interpolation)


def translate_x_rel(frames, fraction: float, fill=GRAY_FILL, interpolation="bicubic"):
    return translate_x(frames, fraction * frames.shape[2], fill, interpolation)


def translate_y_rel(frames, fraction: float, fill=GRAY_FILL, interpolation="bicubic"):
    return translate_y(frames, fraction * frames.shape[1], fill, interpolation)


# -- magnitude (0..10) -> op argument

def _signed(value: float, rng: np.random.Generator) -> float:
    """The geometric and 'increasing' enhance arguments go either way with equal chance."""
    return -value if rng.random() < 0.5 else value


def _scaled(top: float, signed: bool = False, offset: float = 0.0, as_int: bool = False):
    def level(m, rng, hp):
        v = m / LEVEL_MAX * top
        v = int(v) if as_int else v
        return ((_signed(v, rng) if signed else v) + offset,)
    return level


def _enhance_increasing(m, rng, hp):
    return (max(0.1, 1.0 + _signed(m / LEVEL_MAX * 0.9, rng)),)


def _translate_abs(m, rng, hp):
    return (_signed(m / LEVEL_MAX * hp["translate_const"], rng),)


def _translate_rel(m, rng, hp):
    return (_signed(m / LEVEL_MAX * hp["translate_pct"], rng),)


def _posterize_increasing(m, rng, hp):
    return (4 - int(m / LEVEL_MAX * 4),)


def _solarize_increasing(m, rng, hp):
    return (256 - int(m / LEVEL_MAX * 256),)


_ENHANCE = _scaled(1.8, offset=0.1)  # 0.1 .. 1.9, severity not monotonic in the magnitude
_GEOMETRIC = {"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "TranslateXRel", "TranslateYRel"}

# name -> (op, magnitude -> arguments); a None level means the op takes no argument
OPS = {
    "AutoContrast": (auto_contrast, None),
    "Equalize": (equalize, None),
    "Invert": (invert, None),
    "Rotate": (rotate, _scaled(30.0, signed=True)),
    "Posterize": (posterize, _scaled(4, as_int=True)),  # 0..4 bits kept: milder with the magnitude
    "PosterizeIncreasing": (posterize, _posterize_increasing),  # 4..0 bits kept
    "PosterizeOriginal": (posterize, _scaled(4, offset=4, as_int=True)),  # 4..8 bits kept
    "Solarize": (solarize, _scaled(256, as_int=True)),
    "SolarizeIncreasing": (solarize, _solarize_increasing),  # threshold 256 .. 0
    "SolarizeAdd": (solarize_add, _scaled(110, as_int=True)),
    "Color": (color, _ENHANCE),
    "ColorIncreasing": (color, _enhance_increasing),  # 1 -/+ 0.9 m / 10
    "Contrast": (contrast, _ENHANCE),
    "ContrastIncreasing": (contrast, _enhance_increasing),
    "Brightness": (brightness, _ENHANCE),
    "BrightnessIncreasing": (brightness, _enhance_increasing),
    "Sharpness": (sharpness, _ENHANCE),
    "SharpnessIncreasing": (sharpness, _enhance_increasing),
    "ShearX": (shear_x, _scaled(0.3, signed=True)),
    "ShearY": (shear_y, _scaled(0.3, signed=True)),
    "TranslateX": (translate_x, _translate_abs),  # pixels, up to translate_const
    "TranslateY": (translate_y, _translate_abs),
    "TranslateXRel": (translate_x_rel, _translate_rel),  # fraction of the frame, up to translate_pct
    "TranslateYRel": (translate_y_rel, _translate_rel),
}

RAND_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
            "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
# 'inc1': the same list with the ops whose severity grows with the magnitude
RAND_INCREASING_OPS = tuple(n + "Increasing" if n + "Increasing" in OPS else n for n in RAND_OPS)


@dataclass
class AugmentOp:
    """One op with an application probability and a magnitude (0..10), optionally with gaussian noise
    (magnitude_std; inf = uniform in [0, magnitude]) and clipped to [0, magnitude_max]."""
    name: str
    prob: float = 0.5
    magnitude: float = 10.0
    magnitude_std: float = 0.0
    magnitude_max: float = LEVEL_MAX
    fill: tuple = GRAY_FILL
    interpolation: str = "bicubic"  # or 'bilinear', or 'random' (one of the two, drawn per application)
    translate_const: float = 250.0
    translate_pct: float = 0.45

    def __post_init__(self):
        if self.name not in OPS:
            raise ValueError(f"unknown augmentation op {self.name!r}")
        if self.interpolation not in INTERPOLATIONS + ("random",):
            raise ValueError(f"interpolation {self.interpolation!r}: expected bilinear, bicubic or random")

    def sample(self, rng: np.random.Generator):
        """The op's arguments for one application, or None when the op is skipped this time."""
        if self.prob < 1.0 and rng.random() > self.prob:
            return None
        m = self.magnitude
        if self.magnitude_std == float("inf"):
            m = rng.uniform(0.0, m)
        elif self.magnitude_std > 0:
            m = rng.normal(m, self.magnitude_std)
        m = min(max(m, 0.0), self.magnitude_max)
        level = OPS[self.name][1]
        hp = {"translate_const": self.translate_const, "translate_pct": self.translate_pct}
        return level(m, rng, hp) if level is not None else ()

    def __call__(self, frames: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        args = self.sample(rng)
        if args is None:
            return frames
        fn = OPS[self.name][0]
        if self.name not in _GEOMETRIC:
            return fn(frames, *args)
        interpolation = self.interpolation
        if interpolation == "random":
            interpolation = INTERPOLATIONS[int(rng.integers(2))]
        return fn(frames, *args, fill=self.fill, interpolation=interpolation)


class RandAugment:
    """Apply `num_layers` ops drawn uniformly with replacement, each with its own probability and magnitude."""

    def __init__(self, ops: list[AugmentOp], num_layers: int = 2):
        self.ops = list(ops)
        self.num_layers = num_layers

    @classmethod
    def from_spec(cls, spec: str, translate_const: float = 250.0, interpolation: str = "bicubic",
                  fill=GRAY_FILL, translate_pct: float = 0.45) -> RandAugment:
        """'rand-m9-n2-mstd0.5-mmax10-inc1': magnitude m, n ops per call, magnitude noise mstd (above 100:
        uniform), magnitude ceiling mmax, inc1 = the increasing-severity op set. translate_const only sizes the
        absolute TranslateX/Y ops, which neither op set contains: both translate by up to translate_pct of the
        frame."""
        parts = spec.split("-")
        if parts[0] != "rand":
            raise ValueError(f"RandAugment spec {spec!r} must start with 'rand'")
        magnitude, num_layers, mstd, mmax, names = LEVEL_MAX, 2, 0.0, LEVEL_MAX, RAND_OPS
        for part in parts[1:]:
            key, value = _split_section(part, spec)
            if key == "m":
                magnitude = float(value)
            elif key == "n":
                num_layers = int(value)
            elif key == "mstd":
                mstd = float("inf") if float(value) > 100 else float(value)
            elif key == "mmax":
                mmax = float(value)
            elif key == "inc":
                names = RAND_INCREASING_OPS if int(value) else RAND_OPS
            else:
                raise ValueError(f"RandAugment spec {spec!r}: section {part!r} is not supported")
        ops = [AugmentOp(n, 0.5, magnitude, magnitude_std=mstd, magnitude_max=mmax, fill=tuple(fill),
                         interpolation=interpolation, translate_const=translate_const, translate_pct=translate_pct)
               for n in names]
        return cls(ops, num_layers)

    def __call__(self, frames: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        for i in rng.integers(0, len(self.ops), self.num_layers):
            frames = self.ops[int(i)](frames, rng)
        return frames


def _split_section(part: str, spec: str) -> tuple[str, str]:
    """'mstd0.5' -> ('mstd', '0.5')."""
    match = re.fullmatch(r"([a-z]+)(\d.*)", part)
    if match is None:
        raise ValueError(f"augmentation spec {spec!r}: cannot read section {part!r}")
    return match.group(1), match.group(2)


# The ImageNet policy of the AutoAugment paper: 25 sub-policies of two (op, probability, magnitude) steps.
# Posterize here keeps 4..8 bits (the paper's reading of its magnitude).
_ORIGINAL = """
PosterizeOriginal 0.4 8 Rotate 0.6 9 | Solarize 0.6 5 AutoContrast 0.6 5 | Equalize 0.8 8 Equalize 0.6 3
PosterizeOriginal 0.6 7 PosterizeOriginal 0.6 6 | Equalize 0.4 7 Solarize 0.2 4 | Equalize 0.4 4 Rotate 0.8 8
Solarize 0.6 3 Equalize 0.6 7 | PosterizeOriginal 0.8 5 Equalize 1.0 2 | Rotate 0.2 3 Solarize 0.6 8
Equalize 0.6 8 PosterizeOriginal 0.4 6 | Rotate 0.8 8 Color 0.4 0 | Rotate 0.4 9 Equalize 0.6 2
Equalize 0.0 7 Equalize 0.8 8 | Invert 0.6 4 Equalize 1.0 8 | Color 0.6 4 Contrast 1.0 8
Rotate 0.8 8 Color 1.0 2 | Color 0.8 8 Solarize 0.8 7 | Sharpness 0.4 7 Invert 0.6 8
ShearX 0.6 5 Equalize 1.0 9 | Color 0.4 0 Equalize 0.6 3 | Equalize 0.4 7 Solarize 0.2 4
Solarize 0.6 5 AutoContrast 0.6 5 | Invert 0.6 4 Equalize 1.0 8 | Color 0.6 4 Contrast 1.0 8
Equalize 0.8 8 Equalize 0.6 3
"""


def original_policy() -> list[list[tuple[str, float, int]]]:
    subs = _ORIGINAL.replace("\n", " | ").split("|")
    policy = []
    for sub in filter(str.strip, subs):
        w = sub.split()
        policy.append([(w[i], float(w[i + 1]), int(w[i + 2])) for i in range(0, len(w), 3)])
    return policy


class AutoAugment:
    """Pick one sub-policy uniformly and run its steps (each with its own probability). The image eval passes
    the ImageNet mean in 0..255 as the fill, which is what its geometric steps expose at the borders."""

    def __init__(self, policy: str = "original", fill=GRAY_FILL, interpolation: str = "bicubic",
                 magnitude_std: float = 0.0):
        if policy != "original":
            raise ValueError(f"AutoAugment policy {policy!r}: only 'original' (the ImageNet policy) is implemented")
        self.policy = [[AugmentOp(name, prob, level, magnitude_std=magnitude_std, fill=tuple(fill),
                                  interpolation=interpolation) for name, prob, level in sub]
                       for sub in original_policy()]

    def __call__(self, frames: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        for op in self.policy[int(rng.integers(len(self.policy)))]:
            frames = op(frames, rng)
        return frames
