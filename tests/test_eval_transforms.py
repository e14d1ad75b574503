"""Frozen-eval augmentations: RandAugment / AutoAugment ops on uint8 clips, random erasing, the four eval views."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jepa_scale.data import rand_augment as ra
from jepa_scale.data.augment import MEAN, STD, crop_params, normalize
from jepa_scale.data.eval_transforms import (IMAGENET_FILL, ImageEvalTransform, ImageTrainTransform,
                                             VideoEvalTransform, VideoTrainTransform, resize_short_side,
                                             short_side_size)
from jepa_scale.data.random_erasing import RandomErasing


def _frames(T, H, W, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (T, H, W, 3), dtype=np.uint8))


def _ramp(H, W):
    """A smooth colour image: x, y and x + y ramps in the three channels."""
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([x * 255 // (W - 1), y * 255 // (H - 1), (x + y) * 255 // (H + W - 2)], -1).astype(np.uint8)


def _view(frames):
    """The expected normalised view of uint8 [T, H, W, 3] frames, computed the plain way."""
    x = frames.permute(3, 0, 1, 2).float() / 255
    return (x - torch.tensor(MEAN).view(3, 1, 1, 1)) / torch.tensor(STD).view(3, 1, 1, 1)


# -- point ops against hand-computed values

def test_point_ops_by_hand():
    x = torch.tensor([0, 1, 100, 127, 128, 191, 254, 255], dtype=torch.uint8).view(1, 1, 8, 1).expand(1, 1, 8, 3)
    row = lambda out: out[0, 0, :, 0].tolist()
    assert row(ra.invert(x)) == [255, 254, 155, 128, 127, 64, 1, 0]
    assert row(ra.solarize(x, 128)) == [0, 1, 100, 127, 127, 64, 1, 0]  # >= threshold inverted
    assert row(ra.solarize(x, 256)) == row(x)
    assert row(ra.solarize_add(x, 50)) == [50, 51, 150, 177, 128, 191, 254, 255]  # only below 128
    assert row(ra.solarize_add(x, 200, threshold=256)) == [200, 201, 255, 255, 255, 255, 255, 255]
    assert row(ra.posterize(x, 2)) == [0, 0, 64, 64, 128, 128, 192, 192]
    assert row(ra.posterize(x, 0)) == [0] * 8 and row(ra.posterize(x, 8)) == row(x)


def test_auto_contrast_stretches_each_frame_and_channel_alone():
    x = torch.zeros(2, 4, 4, 3, dtype=torch.uint8)
    x[0, ..., 0] = torch.linspace(50, 150, 16).round().to(torch.uint8).view(4, 4)
    x[0, ..., 1] = 77  # a flat channel stays as it is
    x[1, ..., 0] = torch.linspace(10, 20, 16).round().to(torch.uint8).view(4, 4)
    out = ra.auto_contrast(x)
    for t in range(2):
        assert out[t, ..., 0].min() == 0 and out[t, ..., 0].max() >= 254
        assert torch.all(torch.diff(out[t, ..., 0].flatten().int()) >= 0)  # monotonic
    assert torch.all(out[0, ..., 1] == 77)


def test_equalize_flattens_a_skewed_histogram():
    rng = np.random.default_rng(0)
    x = torch.from_numpy((rng.beta(8, 2, (1, 96, 96, 3)) * 120 + 60).astype(np.uint8))  # crowded near 160
    out = ra.equalize(x)[..., 0].flatten().double()
    for level in (32, 64, 128, 192, 224):  # the output's CDF is close to the uniform one
        assert abs((out < level).double().mean().item() - level / 256) < 0.04
    assert torch.equal(ra.equalize(torch.full((1, 4, 4, 3), 9, dtype=torch.uint8)), torch.full((1, 4, 4, 3), 9,
                                                                                               dtype=torch.uint8))


def test_rotate_quarter_turn_is_rot90_and_corners_take_the_fill():
    x = _frames(2, 12, 12)
    for interpolation in ("bicubic", "bilinear"):
        assert torch.equal(ra.rotate(x, 90.0, interpolation=interpolation), torch.rot90(x, 1, dims=(1, 2)))
    out = ra.rotate(x, 30.0, fill=(1, 2, 3))
    assert out[:, 0, 0].tolist() == [[1, 2, 3]] * 2 and out[:, -1, -1].tolist() == [[1, 2, 3]] * 2
    assert not torch.equal(out[:, 6, 6], torch.tensor([1, 2, 3], dtype=torch.uint8).expand(2, 3))


def test_translate_shifts_whole_pixels_and_fills_what_enters():
    x = _frames(1, 6, 10)
    out = ra.translate_x(x, 3.0, fill=(9, 9, 9))
    assert torch.equal(out[:, :, :7], x[:, :, 3:]) and torch.all(out[:, :, 7:] == 9)
    out = ra.translate_y_rel(x, -0.5)  # half the height, down
    assert torch.equal(out[:, 3:], x[:, :3]) and torch.all(out[:, :3] == 128)


def test_ops_match_pil_pixel_for_pixel():
    Image = pytest.importorskip("PIL.Image")
    ImageOps, ImageEnhance = pytest.importorskip("PIL.ImageOps"), pytest.importorskip("PIL.ImageEnhance")
    for a in (_frames(1, 23, 31, seed=3)[0].numpy(), _ramp(23, 31)):
        im, t = Image.fromarray(a), torch.from_numpy(a)[None]
        pairs = [(ra.invert(t), ImageOps.invert(im)), (ra.auto_contrast(t), ImageOps.autocontrast(im)),
                 (ra.equalize(t), ImageOps.equalize(im)), (ra.solarize(t, 77), ImageOps.solarize(im, 77)),
                 (ra.posterize(t, 3), ImageOps.posterize(im, 3))]
        for f in (0.1, 0.63, 1.9):
            pairs += [(ra.color(t, f), ImageEnhance.Color(im).enhance(f)),
                      (ra.contrast(t, f), ImageEnhance.Contrast(im).enhance(f)),
                      (ra.brightness(t, f), ImageEnhance.Brightness(im).enhance(f)),
                      (ra.sharpness(t, f), ImageEnhance.Sharpness(im).enhance(f))]
        for ours, ref in pairs:
            assert np.array_equal(ours[0].numpy(), np.asarray(ref))
        for interp, resample in (("bicubic", Image.BICUBIC), ("bilinear", Image.BILINEAR)):
            geo = [(ra.rotate(t, -23.0, (5, 6, 7), interp), im.rotate(-23.0, resample, fillcolor=(5, 6, 7))),
                   (ra.shear_x(t, 0.27, interpolation=interp),
                    im.transform(im.size, Image.AFFINE, (1, 0.27, 0, 0, 1, 0), resample, fillcolor=(128,) * 3)),
                   (ra.shear_y(t, -0.2, interpolation=interp),
                    im.transform(im.size, Image.AFFINE, (1, 0, 0, -0.2, 1, 0), resample, fillcolor=(128,) * 3))]
            # PIL truncates float64 sums, we float32 ones (+1e-4): where a sample is an exact integer in theory
            # (a 0.2 shear of integer pixels, often), PIL's rounding noise may give one level less
            for ours, ref in geo:
                d = ours[0].numpy().astype(int) - np.asarray(ref).astype(int)
                assert d.min() >= 0 and d.max() <= 1 and (d > 0).mean() < 0.05


# -- magnitudes and the op sets

def test_rand_spec_builds_the_increasing_set_at_m7():
    aug = ra.RandAugment.from_spec("rand-m7-n4-mstd0.5-inc1", translate_const=100, interpolation="bicubic")
    assert aug.num_layers == 4 and [op.name for op in aug.ops] == list(ra.RAND_INCREASING_OPS)
    assert "SolarizeIncreasing" in ra.RAND_INCREASING_OPS and "TranslateXRel" in ra.RAND_INCREASING_OPS
    op = aug.ops[0]
    assert (op.prob, op.magnitude, op.magnitude_std, op.fill, op.translate_const) == (0.5, 7, 0.5, (128,) * 3, 100)
    assert [op.name for op in ra.RandAugment.from_spec("rand-m9-n2").ops] == list(ra.RAND_OPS)
    with pytest.raises(ValueError, match="not supported"):
        ra.RandAugment.from_spec("rand-m9-w0")


def test_m7_mstd05_magnitude_statistics():
    rng = np.random.default_rng(0)

    def applied(name, n):
        op = ra.AugmentOp(name, 0.5, 7, magnitude_std=0.5)
        draws = [op.sample(rng) for _ in range(n)]
        return len([d for d in draws if d is not None]) / n, np.array([d[0] for d in draws if d is not None])

    share, degrees = applied("Rotate", 4000)
    assert abs(share - 0.5) < 0.03  # applied half the time
    assert abs((degrees > 0).mean() - 0.5) < 0.04  # either direction
    assert abs(np.abs(degrees).mean() - 21.0) < 0.15 and abs(np.abs(degrees).std() - 1.5) < 0.1  # 30 * N(7, .5) / 10
    _, bits = applied("PosterizeIncreasing", 4000)  # 4 - int(0.4 m): 2 bits, or 1 when m >= 7.5 (15.9 %)
    assert set(bits) <= {1, 2, 3} and abs((bits == 1).mean() - 0.159) < 0.025
    _, factors = applied("ContrastIncreasing", 2000)  # 1 -/+ 0.09 m
    assert factors.min() >= 0.1 and factors.max() <= 1.9 and abs(np.abs(factors - 1).mean() - 0.63) < 0.02
    fixed = {ra.AugmentOp("SolarizeIncreasing", 1.0, 7).sample(rng) for _ in range(20)}
    assert fixed == {(256 - int(0.7 * 256),)}  # no noise without mstd


def test_auto_augment_original_policy():
    policy = ra.original_policy()
    assert len(policy) == 25 and all(len(sub) == 2 for sub in policy)
    assert policy[0] == [("PosterizeOriginal", 0.4, 8), ("Rotate", 0.6, 9)]
    assert policy[-1] == [("Equalize", 0.8, 8), ("Equalize", 0.6, 3)]
    assert {n for sub in policy for n, _, _ in sub} == {"PosterizeOriginal", "Rotate", "Solarize", "AutoContrast",
                                                        "Equalize", "Color", "Contrast", "Invert", "Sharpness",
                                                        "ShearX"}
    assert ra.AugmentOp("PosterizeOriginal", 1.0, 8).sample(None) == (7,)  # 4..8 bits: level 8 keeps 7
    aug = ImageTrainTransform(32).auto_augment
    assert IMAGENET_FILL == (124, 116, 104)
    assert all(op.fill == IMAGENET_FILL and op.interpolation == "bicubic" for sub in aug.policy for op in sub)
    black = torch.zeros(1, 16, 16, 3, dtype=torch.uint8)
    rotated = ra.AugmentOp("Rotate", 1.0, 9, fill=IMAGENET_FILL)(black, np.random.default_rng(0))
    assert rotated[0, 0, 0].tolist() == list(IMAGENET_FILL)


# -- RandAugment on clips

def test_rand_augment_applies_one_op_and_magnitude_to_every_frame():
    aug = ra.RandAugment.from_spec("rand-m7-n4-mstd0.5-inc1", translate_const=14)
    same = _frames(1, 20, 28).expand(5, 20, 28, 3)
    clip = _frames(3, 20, 28, seed=1)
    changed = 0
    for seed in range(12):
        out = aug(same, np.random.default_rng(seed))
        assert all(torch.equal(out[t], out[0]) for t in range(5))
        changed += not torch.equal(out[0], same[0])
        whole = aug(clip, np.random.default_rng(seed))  # each frame as if augmented alone with the same draws
        assert all(torch.equal(whole[t], aug(clip[t:t + 1], np.random.default_rng(seed))[0]) for t in range(3))
    assert changed >= 8


def test_rand_augment_is_reproducible_from_the_generator():
    aug = ra.RandAugment.from_spec("rand-m7-n4-mstd0.5-inc1")
    clip = _frames(2, 24, 24)
    a, b = aug(clip, np.random.default_rng(5)), aug(clip, np.random.default_rng(5))
    assert torch.equal(a, b) and a.dtype == torch.uint8 and a.shape == clip.shape
    assert not torch.equal(a, aug(clip, np.random.default_rng(6)))


# -- random erasing

def test_cube_erasing_is_one_box_through_all_frames():
    rng = np.random.default_rng(0)
    erase = RandomErasing(1.0, mode="pixel", cube=True)
    for _ in range(30):
        x = erase(torch.zeros(3, 6, 64, 64), rng)
        mask = x[0] != 0
        assert all(torch.equal(mask[t], mask[0]) for t in range(6))
        rows, cols = mask[0].any(1).nonzero().flatten(), mask[0].any(0).nonzero().flatten()
        h, w = len(rows), len(cols)
        assert mask[0].sum() == h * w and rows[-1] - rows[0] + 1 == h  # one filled rectangle
        assert 0.02 * 0.75 <= h * w / 64 ** 2 <= 1 / 3 * 1.25 and 0.3 * 0.6 <= h / w <= 1 / 0.3 / 0.6
        assert not torch.equal(x[:, 0][:, mask[0]], x[:, 1][:, mask[0]])  # fresh noise on every frame
    assert 0.9 < x[:, :, mask[0]].std() < 1.1


def test_erasing_happens_with_its_probability():
    rng = np.random.default_rng(1)
    erase = RandomErasing(0.25, mode="pixel", max_count=1)
    hits = sum(bool(erase(torch.zeros(3, 2, 24, 24), rng).any()) for _ in range(2000))
    assert abs(hits / 2000 - 0.25) < 0.03
    image = erase(torch.ones(3, 24, 24), np.random.default_rng(3))  # an image [C, H, W] works too
    assert image.shape == (3, 24, 24)


def test_erasing_modes_and_per_frame_boxes():
    x = RandomErasing(1.0, mode="const")(torch.ones(3, 32, 32), np.random.default_rng(0))
    assert 0 < (x == 0).sum() < x.numel() and set(x.unique().tolist()) == {0.0, 1.0}
    x = RandomErasing(1.0, mode="rand")(torch.full((3, 2, 32, 32), 50.0), np.random.default_rng(0))
    box = x[:, 0] != 50
    assert len(x[0, 0][box[0]].unique()) == 1 and len(x[0, 1][box[0]].unique()) == 1  # one colour per frame
    rng = np.random.default_rng(2)
    masks = [RandomErasing(1.0, cube=False, mode="pixel")(torch.zeros(3, 2, 32, 32), rng)[0] != 0 for _ in range(5)]
    assert any(not torch.equal(m[0], m[1]) for m in masks)
    with pytest.raises(ValueError):
        RandomErasing(mode="noise")


# -- the eval transforms

def test_short_side_resize_sizes():
    assert (short_side_size(224), short_side_size(384)) == (256, 438)
    assert resize_short_side(_frames(2, 240, 320), 256, "bilinear", False).shape == (2, 256, 341, 3)
    assert resize_short_side(_frames(1, 500, 375), 438, "bilinear", False).shape == (1, 584, 438, 3)
    (view,) = VideoEvalTransform(224)(_frames(2, 240, 320), None)
    assert view.shape == (3, 2, 224, 224) and view.dtype == torch.float32


def test_single_view_is_the_centre_crop():
    frames = _frames(2, 256, 303)  # short side already 256 for crop 224: no resize
    (view,) = VideoEvalTransform(224)(frames, None)
    assert torch.allclose(view, _view(frames[:, 16:240, 40:264]), atol=1e-5)  # Python's round(79 / 2) = 40


def test_three_views_are_left_centre_right_crops():
    frames = _frames(2, 32, 80)
    views = VideoEvalTransform(32, num_views=3)(frames, None)
    for v, s in zip(views, (0, 24, 48)):
        assert torch.allclose(v, _view(frames[:, :, s:s + 32]), atol=1e-5)
    tall = _frames(1, 90, 32)
    for v, s in zip(VideoEvalTransform(32, num_views=3)(tall, None), (0, 29, 58)):
        assert torch.allclose(v, _view(tall[:, s:s + 32]), atol=1e-5)
    big = _frames(1, 64, 160)  # short side 64 -> 32: the crops slice the resized frames
    small = resize_short_side(big, 32, "bilinear", False)
    for v, s in zip(VideoEvalTransform(32, num_views=3)(big, None), (0, 24, 48)):
        assert torch.allclose(v, _view(small[:, :, s:s + 32]), atol=1e-5)
    square = VideoEvalTransform(32, num_views=3)(_frames(1, 40, 40), None)
    assert torch.equal(square[0], square[2])


def test_video_train_transform_follows_the_reference_order():
    frames = _frames(4, 60, 80)
    t = VideoTrainTransform(32)
    for seed in range(4):
        (view,) = t(frames, np.random.default_rng(seed))
        assert view.shape == (3, 4, 32, 32) and view.dtype == torch.float32
        rng = np.random.default_rng(seed)  # the literal order: augment, float + normalise, crop, resize, erase
        aug = t.rand_augment(frames, rng)
        top, left, h, w = crop_params(60, 80, (0.08, 1.0), (0.75, 4 / 3), rng)
        ref = F.interpolate(_view(aug)[:, :, top:top + h, left:left + w], size=(32, 32), mode="bilinear",
                            align_corners=False)
        RandomErasing(0.25, mode="pixel", max_count=1, cube=True)(ref, rng)
        assert torch.allclose(view, ref, atol=1e-4)
    assert not torch.equal(t(frames, np.random.default_rng(0))[0], t(frames, np.random.default_rng(1))[0])


def test_image_eval_transform_matches_pil_resize_and_centre_crop():
    Image = pytest.importorskip("PIL.Image")
    image = _ramp(120, 90)
    (view,) = ImageEvalTransform(56)(image, None)
    ref = np.array(Image.fromarray(image).resize((64, 85), Image.BILINEAR))[14:70, 4:60]  # short side 64, long 85
    assert view.shape == (3, 56, 56)
    assert torch.allclose(view, normalize(torch.from_numpy(ref).permute(2, 0, 1)), atol=1.01 / 255 / min(STD))


def test_image_train_transform_crop_and_flip():
    Image = pytest.importorskip("PIL.Image")
    image = _ramp(50, 70)
    plain = ImageTrainTransform(40, hflip=0.0, auto_augment=None, reprob=0.0)
    (view,) = plain(image, np.random.default_rng(4))
    top, left, h, w = crop_params(50, 70, (0.08, 1.0), (3 / 4, 4 / 3), np.random.default_rng(4))
    ref = np.array(Image.fromarray(image).crop((left, top, left + w, top + h)).resize((40, 40), Image.BICUBIC))
    assert torch.allclose(view, normalize(torch.from_numpy(ref).permute(2, 0, 1)), atol=2.01 / 255 / min(STD))
    flipper = ImageTrainTransform(40, auto_augment=None, reprob=0.0)
    rng = np.random.default_rng(0)
    flips = 0
    for _ in range(400):  # red grows left to right: a flipped view has its bright side on the left
        (v,) = flipper(image, rng)
        flips += bool(v[0, :, 0].mean() > v[0, :, -1].mean())
    assert 160 <= flips <= 240
    full = ImageTrainTransform(40)
    (a,) = full(image, np.random.default_rng(9))
    assert a.shape == (3, 40, 40) and torch.equal(a, full(image, np.random.default_rng(9))[0])
    assert not torch.equal(a, full(image, np.random.default_rng(10))[0])


def test_transforms_take_numpy_and_refuse_floats():
    frames = _frames(2, 40, 40).numpy()
    assert VideoEvalTransform(32)(frames, None)[0].shape == (3, 2, 32, 32)
    with pytest.raises(TypeError, match="uint8"):
        VideoTrainTransform(32)(frames.astype(np.float32), np.random.default_rng(0))
    assert math.isclose(float(ImageEvalTransform(32)(np.zeros((40, 40, 3), np.uint8))[0][0, 0, 0]),
                        -MEAN[0] / STD[0], rel_tol=1e-5)
