import logging
from types import SimpleNamespace

import pytest
import torch
import yaml

from jepa_scale.masks import MultiBlock2DMasks
from tests.conftest import SHARED
from tests.reference_ijepa_masks import MaskCollator

OFFICIAL = SHARED / "reference" / "official_configs" / "ijepa"
SETTINGS = [(224, 14), (448, 16), (224, 16)]
OURS = "jepa_scale.masks.multiblock2d"


def reference(collator, batch_size, batch_counter, seed):
    """The official masks of the collator's `batch_counter`-th batch, with the global RNG seeded by `seed`."""
    collator._itr_counter.value = batch_counter - 1  # step() increments before use
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _, enc, pred = collator([torch.zeros(1)] * batch_size)
    return enc, pred


def official_pair(input_size, patch_size, **kw):
    args = dict(enc_mask_scale=(0.85, 1.0), pred_mask_scale=(0.15, 0.2), aspect_ratio=(0.75, 1.5), nenc=1,
                npred=4, min_keep=10, allow_overlap=False)
    args.update(kw)
    return MultiBlock2DMasks(input_size, patch_size, **args), MaskCollator(input_size, patch_size, **args)


def assert_same(ours, enc, pred):
    assert len(ours.context) == len(enc) and len(ours.target) == len(pred)
    for a, b in zip(ours.context + ours.target, list(enc) + list(pred)):
        assert a.dtype == torch.int64 and torch.equal(a, b)


@pytest.mark.parametrize("input_size,patch_size", SETTINGS)
def test_same_draws_give_the_official_masks(input_size, patch_size):
    ours, official = official_pair(input_size, patch_size)
    for j in (0, 1, 7, 123, 5000):
        assert_same(ours(8, j, seed=j + 11), *reference(official, 8, j, seed=j + 11))


def test_same_draws_through_the_relaxation_and_with_several_context_blocks(caplog):
    # 6x6 grid, targets of ~16 tokens in a 5x5 context box: the context often fails and the constraint relaxes
    kw = dict(pred_mask_scale=(0.4, 0.5), min_keep=4, nenc=2, npred=4)
    ours, official = official_pair(96, 16, **kw)
    with caplog.at_level(logging.WARNING):
        for j in range(6):
            assert_same(ours(6, j, seed=j), *reference(official, 6, j, seed=j))
    assert any(r.name == OURS for r in caplog.records)  # the relaxation really ran
    overlap_too = official_pair(96, 16, allow_overlap=True, **kw)
    assert_same(overlap_too[0](6, 3, seed=9), *reference(overlap_too[1], 6, 3, seed=9))


def mean_counts(masks, batch_size, batches=200):
    ctx = tgt = 0
    for j in range(batches):
        m = masks(batch_size, j, seed=1000 + j)
        ctx, tgt = ctx + m.context[0].shape[1], tgt + m.target[0].shape[1]
    return ctx / batches, tgt / batches


# The mean token counts after the cut of the official collator over 200 batches. The target count is h*w of the
# batch's size draw alone (targets are never constrained), so ours is the official's for those batch counters;
# the context count also depends on the placement draws.
@pytest.mark.parametrize("input_size,patch_size,batch_size,table", [
    (224, 14, 128, (68.9, 43.8)), (448, 16, 16, (268.4, 136.4)), (224, 16, 16, (59.6, 33.2))])
def test_mean_token_counts_match_the_reference_table(input_size, patch_size, batch_size, table):
    got = mean_counts(MultiBlock2DMasks(input_size, patch_size), batch_size)
    for g, t in zip(got, table):
        assert abs(g - t) <= 0.05 * t, (got, table)


def rows_cols(idx, width):
    return idx // width, idx % width


def test_224_14_context_is_the_top_left_15x15_box_minus_the_targets(caplog):
    m = MultiBlock2DMasks(224, 14)
    box = {r * 16 + c for r in range(15) for c in range(15)}
    seen = set()
    with caplog.at_level(logging.WARNING):
        for j in range(40):
            (th, tw), e_size = m.block_sizes(j)
            assert e_size == (15, 15)
            masks = m(16, j, seed=j)
            assert all(t.shape[1] == th * tw for t in masks.target)  # no target is ever cut
            for i, ctx in enumerate(masks.context[0].tolist()):
                targets = {x for t in masks.target for x in t[i].tolist()}
                assert ctx == sorted(box - targets)[:len(ctx)]  # the lowest indices of the box minus targets
                seen |= set(ctx) | targets
    assert not [r for r in caplog.records if r.name == OURS]  # never relaxed, so never overlapping
    assert all(r < 15 and c < 15 for r, c in (rows_cols(x, 16) for x in seen))  # row 15 / column 15 unused


@pytest.mark.parametrize("input_size,patch_size", SETTINGS)
def test_blocks_miss_the_last_row_and_column_and_never_overlap(input_size, patch_size):
    m = MultiBlock2DMasks(input_size, patch_size)
    side = input_size // patch_size
    for j in range(20):
        masks = m(8, j, seed=3 * j)
        lists = masks.context + masks.target
        assert len(masks.context) == 1 and len(masks.target) == 4
        assert len({x.shape for x in lists}) <= 2 and all(x.shape[0] == 8 for x in lists)
        assert len({t.shape for t in masks.target}) == 1
        for x in lists:
            assert torch.all(x[:, 1:] > x[:, :-1])  # sorted ascending, no repeats
            r, c = rows_cols(x, side)
            assert r.max() < side - 1 and c.max() < side - 1
        for i in range(8):
            assert not set(masks.context[0][i].tolist()) & {v for t in masks.target for v in t[i].tolist()}


def test_a_block_needs_more_than_min_keep_tokens(caplog):
    m = MultiBlock2DMasks(64, 16, min_keep=5)  # 4x4 grid: a 3x3 block always sits at the top left
    region = torch.ones(4, 4, dtype=torch.bool)
    region[0, :2] = region[1, :2] = False  # leaves exactly 5 of the box's 9 tokens
    with caplog.at_level(logging.WARNING):
        idx, _ = m._block((3, 3), torch.Generator().manual_seed(0), [region.numpy()])
    assert len(idx) == 9 and len([r for r in caplog.records if r.name == OURS]) == 1  # rejected 20x, then relaxed


def test_allow_overlap_leaves_the_context_box_whole():
    masks = MultiBlock2DMasks(224, 14, allow_overlap=True)(4, 2, seed=0)
    assert masks.context[0].shape == (4, 225)


def test_masks_are_a_function_of_seed_and_batch_counter():
    m = MultiBlock2DMasks(224, 16)
    a, b = m(4, 7, seed=1), m(4, 7, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.context + a.target, b.context + b.target))
    c = m(4, 7, seed=2)  # placement follows the seed, sizes the counter
    assert c.target[0].shape == a.target[0].shape and not torch.equal(c.target[0], a.target[0])
    assert len({m.block_sizes(j)[0] for j in range(30)}) > 3


def test_blocks_that_can_never_be_valid_raise_instead_of_looping():
    with pytest.raises(ValueError, match="min_keep"):
        MultiBlock2DMasks(224, 16, pred_mask_scale=(0.02, 0.02))(2, 0, seed=0)


def official_yamls():
    if not OFFICIAL.is_dir():
        return []
    return sorted(OFFICIAL.glob("*.yaml"))


@pytest.mark.parametrize("path", official_yamls(), ids=lambda p: p.stem)
def test_from_config_reads_the_official_mask_section(path):
    cfg = yaml.safe_load(path.read_text())
    mask, crop = cfg["mask"], cfg["data"]["crop_size"]
    ours = MultiBlock2DMasks.from_config(mask, crop)
    official = MaskCollator(input_size=crop, patch_size=mask["patch_size"], pred_mask_scale=mask["pred_mask_scale"],
                            enc_mask_scale=mask["enc_mask_scale"], aspect_ratio=mask["aspect_ratio"],
                            nenc=mask["num_enc_masks"], npred=mask["num_pred_masks"],
                            allow_overlap=mask["allow_overlap"], min_keep=mask["min_keep"])
    assert_same(ours(4, 5, seed=5), *reference(official, 4, 5, seed=5))
    as_attributes = MultiBlock2DMasks.from_config(SimpleNamespace(**mask), crop)
    assert vars(as_attributes) == vars(ours)
