"""V-JEPA 2 data and masks: frames sampled by fps, frames-per-clip groups in a batch, the V2 mask options
(full_complement, pred_full_complement, inv_block) against a transcription of the official collator, the V2
token budgets, and the weighted mixture."""
import dataclasses

import numpy as np
import pytest
import torch

from jepa_scale.config import ConfigError, DataConfig, MaskConfig, dali_unsupported, load_config
from jepa_scale.data import ClipLoader, DataError, DataStream, PyAVDecoder, VideoBatches, VideoError
from jepa_scale.data.batch import video_key
from jepa_scale.data.csv_source import read_video_csv
from jepa_scale.data.sample_order import SampleOrder
from jepa_scale.data.seeds import mask_seed, sample_rng
from jepa_scale.data.sources import open_datasets
from jepa_scale.data.synthetic import make_moving_shapes
from jepa_scale.masks import MaskGenerator, MultiBlockMasks
from tests.conftest import tiny_v2_raw
from tests.reference_vjepa2_masks import MaskCollator

# the two mask configs of the released V2 train configs (configs/train/vitl16/*.yaml)
V2_MASKS = [dict(aspect_ratio=[0.75, 1.5], num_blocks=8, spatial_scale=[0.15, 0.15], temporal_scale=[1.0, 1.0],
                 max_temporal_keep=1.0, max_keep=None, full_complement=False),
            dict(aspect_ratio=[0.75, 1.5], num_blocks=2, spatial_scale=[0.7, 0.7], temporal_scale=[1.0, 1.0],
                 max_temporal_keep=1.0, max_keep=None, full_complement=False)]


# -- fps sampling

@pytest.mark.parametrize("video_fps,step", [(30, 7), (29.97, 7), (25, 6), (24, 6), (60, 15), (8, 2), (3, 1)])
def test_frame_step_from_fps_is_ceil_of_the_video_rate_floor_divided(video_fps, step):
    assert DataConfig(fps=4).frame_step(video_fps, 16) == step
    assert DataConfig(fps=4).frame_step(video_fps, 64) == step  # independent of the clip length


class Recording(PyAVDecoder):
    """A PyAV decoder that remembers the frame rate it read and the frame indices it was asked for."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def probe_and_clip(self, path, choose):
        def ask(info):
            idx = choose(info)
            self.seen.append((info.fps, idx))
            return idx
        return super().probe_and_clip(path, ask)


@pytest.fixture(scope="module")
def fps_videos(tmp_path_factory):
    """One 250-frame 48x48 video at each of 30, 25 and 60 fps: fps -> record."""
    out = {}
    for fps in (30, 25, 60):
        d = tmp_path_factory.mktemp(f"fps{fps}")
        make_moving_shapes(d, num_videos=1, num_frames=250, height=48, width=48, fps=fps, seed=fps)
        (rec,), _ = read_video_csv(d / "videos.csv")
        out[fps] = rec
    return out


def v2_data(**data):
    cfg = load_config(raw=tiny_v2_raw(None, "unused", data=data))
    return cfg


@pytest.mark.parametrize("video_fps,step", [(30, 7), (25, 6), (60, 15)])
def test_clip_loader_samples_real_videos_at_the_target_fps(fps_videos, video_fps, step):
    cfg = v2_data(dataset_fpcs=[16], fps=4, crop_size=32)
    dec = Recording()
    clip = ClipLoader(cfg.data, cfg.data_aug, dec)(fps_videos[video_fps], np.random.default_rng(0), 16)
    assert clip.shape == (3, 16, 32, 32)
    (rate, idx), = dec.seen
    assert round(rate) == video_fps and len(idx) == 16
    # the window is fpc * step source frames: indices from its start to its last frame (end - 1)
    assert idx[-1] - idx[0] == 16 * step - 1 and idx[-1] < 250
    gaps = np.diff(idx)
    assert gaps.min() >= step - 1 and gaps.max() <= step + 1


def test_filter_short_videos_uses_the_fps_step(fps_videos):
    cfg = v2_data(dataset_fpcs=[16], fps=4, crop_size=32, filter_short_videos=True)
    loader = ClipLoader(cfg.data, cfg.data_aug)
    with pytest.raises(VideoError, match=r"too short \(250 frames < 480\)"):  # 32 frames x 15 at 60 fps
        loader(fps_videos[60], np.random.default_rng(0), 32)
    assert loader(fps_videos[60], np.random.default_rng(0), 16).shape[1] == 16  # 16 x 15 = 240 <= 250
    with pytest.raises(VideoError, match=r"too short \(250 frames < 288\)"):  # 48 frames x 6 at 25 fps
        loader(fps_videos[25], np.random.default_rng(0), 48)


def test_clip_duration_and_sampling_rate_steps_are_unchanged(fps_videos):
    """V1's two ways, through the one DataConfig.frame_step: clip_duration spreads the clip over that many
    seconds at the video's rate (int(2.0 * 30 / 8) = 7), sampling_rate is the step."""
    base = load_config(raw={"data": {"num_frames": 8, "crop_size": 32}})
    for data, step in ((dataclasses.replace(base.data, clip_duration=2.0), 7),
                       (dataclasses.replace(base.data, sampling_rate=3), 3)):
        dec = Recording()
        ClipLoader(data, base.data_aug, dec)(fps_videos[30], np.random.default_rng(0))
        (_, idx), = dec.seen
        assert len(idx) == 8 and idx[-1] - idx[0] == 8 * step - 1


# -- frames-per-clip groups

@pytest.fixture(scope="module")
def two_lists(tmp_path_factory, video_dir):
    """The 16 test videos as two datasets: labels 0..15 in the first list, 100..115 in the second."""
    d = tmp_path_factory.mktemp("lists")
    videos = sorted(video_dir.glob("*.mp4"))
    a, b = d / "a.csv", d / "b.csv"
    a.write_text("".join(f"{p} {i}\n" for i, p in enumerate(videos)))
    b.write_text("".join(f"{p} {100 + i}\n" for i, p in enumerate(videos)))
    return str(a), str(b)


def group_cfg(two_lists, fpcs, **data):
    return load_config(raw=tiny_v2_raw(None, "unused", data={"datasets": list(two_lists), "dataset_fpcs": fpcs,
                                                             **data}))


def group_masks(cfg):
    """What the V2 recipe injects: one MultiBlockMasks per frames-per-clip group, under the group's key."""
    d, groups = cfg.data, cfg.data.fpc_groups()
    return {video_key(f, groups): MultiBlockMasks(cfg.mask, d.crop_size, f, d.patch_size, d.tubelet_size)
            for f in groups}


def batches(cfg, seed=5, **kw):
    datasets, weights = open_datasets(cfg.data)
    return VideoBatches(datasets, cfg, seed=seed, weights=weights, mask_fns=group_masks(cfg), **kw)


def find_batch(vb, want):
    """The first batch counter whose micro-batch holds both datasets (want='both') or one only ('one')."""
    for j in range(500):
        first = [i < 16 for i in vb.sample_ids(j)]
        if (want == "both") == (0 < sum(first) < len(first)):
            return j
    raise AssertionError(want)


def same_batch(x, y):
    assert x.index == y.index and list(x.inputs) == list(y.inputs) and list(x.masks) == list(y.masks)
    assert torch.equal(x.labels, y.labels)
    for k in x.inputs:
        assert torch.equal(x.inputs[k], y.inputs[k])
        for a, b in zip(x.masks[k].context + x.masks[k].target, y.masks[k].context + y.masks[k].target):
            assert torch.equal(a, b)


def test_two_fpc_groups_are_stacked_and_masked_separately(two_lists):
    cfg = group_cfg(two_lists, [4, 8])
    assert cfg.data.num_frames == 8 and cfg.data.fpc_groups() == [4, 8]
    vb = batches(cfg)
    j = find_batch(vb, "both")
    batch = vb[j]
    ids = vb.sample_ids(j)
    in_a = [i for i in ids if i < 16]
    assert list(batch.inputs) == ["video@4", "video@8"] and list(batch.masks) == ["video@4", "video@8"]
    assert batch.inputs["video@4"].shape == (len(in_a), 3, 4, 64, 64)
    assert batch.inputs["video@8"].shape == (4 - len(in_a), 3, 8, 64, 64)
    assert batch.size == 4
    # labels: the groups' labels in group order, each group in micro-batch order
    assert batch.labels.tolist() == [i for i in ids if i < 16] + [100 + i - 16 for i in ids if i >= 16]
    # each clip is the one its sample position draws, at its dataset's clip length
    for key, fpc, group in (("video@4", 4, [p for p, i in enumerate(ids) if i < 16]),
                            ("video@8", 8, [p for p, i in enumerate(ids) if i >= 16])):
        for row, pos in enumerate(group):
            want = vb.clip_loader(vb.records[ids[pos]], sample_rng(5, j, 0, pos), fpc)
            assert torch.equal(batch.inputs[key][row], want)
    # masks: one (context, target) per mask config, B_g rows, token indices inside that group's grid
    for key, fpc in (("video@4", 4), ("video@8", 8)):
        n, b = (fpc // 2) * 4 * 4, batch.inputs[key].shape[0]
        m = batch.masks[key]
        assert len(m.context) == len(m.target) == 2
        for c, t in zip(m.context, m.target):
            assert c.shape[0] == t.shape[0] == b and c.max() < n and t.max() < n
            for cr, tr in zip(c, t):
                assert not set(cr.tolist()) & set(tr.tolist())
    assert any(int(c.max()) >= 32 for c in batch.masks["video@8"].context + batch.masks["video@8"].target)
    # group g's masks: its own mask function, its clip count, the batch counter, the placement seed of group g
    # (group 0 has the micro-batch's seed, as with one group; each other group another one)
    assert mask_seed(5, j, 0, 1) != mask_seed(5, j, 0, 0) == mask_seed(5, j, 0)
    fns = group_masks(cfg)
    for g, key in enumerate(("video@4", "video@8")):
        want = fns[key](batch.inputs[key].shape[0], j, mask_seed(5, j, 0, g))
        for a, b in zip(batch.masks[key].context + batch.masks[key].target, want.context + want.target):
            assert torch.equal(a, b)


def test_a_group_without_clips_is_left_out(two_lists):
    cfg = group_cfg(two_lists, [4, 8])
    vb = batches(cfg)
    j = find_batch(vb, "one")
    batch = vb[j]
    key = "video@4" if vb.sample_ids(j)[0] < 16 else "video@8"
    assert list(batch.inputs) == [key] and list(batch.masks) == [key]
    assert batch.size == 4 and batch.masks[key].context[0].shape[0] == 4


def test_group_batches_are_a_function_of_seed_counter_and_micro_index(two_lists):
    cfg = group_cfg(two_lists, [4, 8])
    j = find_batch(batches(cfg), "both")
    same_batch(batches(cfg)[j], batches(cfg)[j])
    other = batches(cfg)[j + 1]
    assert other.labels.tolist() != batches(cfg)[j].labels.tolist() or \
        not torch.equal(other.inputs[list(other.inputs)[0]], batches(cfg)[j].inputs[list(other.inputs)[0]])
    # micro-batch 1 of a 2-micro global batch is the second half of the same global order
    half = batches(cfg, micro_index=1, num_micro=2)
    assert half.sample_ids(3) == half.order.batch(3)[4:8].tolist()


@pytest.mark.parametrize("workers", [2])
def test_group_batches_do_not_depend_on_the_loader_workers(two_lists, workers):
    cfg = group_cfg(two_lists, [4, 8])
    serial, parallel = DataStream(batches(cfg)), DataStream(batches(cfg), num_workers=workers)
    try:
        for _ in range(3):
            x, y = next(serial), next(parallel)
            same_batch(x, y)
            moved = y.to("cpu")  # several keys survive the move
            assert list(moved.inputs) == list(y.inputs) and list(moved.masks) == list(y.masks)
    finally:
        serial.close()
        parallel.close()


def test_one_group_keeps_the_video_key_and_the_v1_mask_draw(two_lists):
    for fpcs in ([4, 4], [8, 8]):
        cfg = group_cfg(two_lists, fpcs)
        vb = batches(cfg)
        batch = vb[3]
        assert list(batch.inputs) == ["video"] and list(batch.masks) == ["video"]
        assert batch.inputs["video"].shape == (4, 3, fpcs[0], 64, 64)
        d = cfg.data
        want = MultiBlockMasks(cfg.mask, d.crop_size, fpcs[0], d.patch_size, d.tubelet_size)(4, 3, mask_seed(5, 3, 0))
        for a, b in zip(batch.masks["video"].context + batch.masks["video"].target, want.context + want.target):
            assert torch.equal(a, b)


def test_official_collator_groups_the_same_samples_in_the_same_order(two_lists):
    """Our groups against the official multi-sequence collator's, fed the same samples in micro-batch order."""
    cfg = group_cfg(two_lists, [8, 4], batch_size=6)  # group order follows dataset_fpcs: 8 first
    vb = batches(cfg)
    j = find_batch(vb, "both")
    ids = vb.sample_ids(j)
    fpc = [8 if i < 16 else 4 for i in ids]
    labels = [vb.records[i].label for i in ids]
    samples = [(torch.zeros(1), lab, [list(range(f))]) for lab, f in zip(labels, fpc)]
    official = MaskCollator(V2_MASKS, [8, 4], crop_size=64, patch_size=16, tubelet_size=2)(samples)
    batch = vb[j]
    assert list(batch.inputs) == [video_key(f, [8, 4]) for f in (8, 4)]
    assert batch.labels.tolist() == [lab for group, _, _ in official for lab in group[1].tolist()]
    assert [batch.inputs[k].shape[0] for k in batch.inputs] == [len(group[1]) for group, _, _ in official]


def test_several_groups_need_one_fpc_per_dataset(two_lists):
    cfg = group_cfg(two_lists, [4, 8])
    datasets, _ = open_datasets(cfg.data)
    with pytest.raises(DataError, match="dataset_fpcs has 2 values for 3 datasets"):
        VideoBatches(datasets + [datasets[0]], cfg, seed=0)


def test_the_dali_path_refuses_fps_and_several_groups():
    def cfg(**data):
        raw = tiny_v2_raw(None, "unused", data=data)
        if "sampling_rate" in data:  # instead of the tiny config's fps
            del raw["data"]["fps"]
        return load_config(raw=raw)

    assert [k for k, _ in dali_unsupported(cfg(dataset_fpcs=[4], fps=4).data)] == ["data.fps"]
    two = dict(shards=["s1/", "s2/"], dataset_fpcs=[4, 8], sampling_rate=2)
    assert [k for k, _ in dali_unsupported(cfg(**two).data)] == ["data.dataset_fpcs"]
    one = dict(shards=["s1/", "s2/"], dataset_fpcs=[4, 4], sampling_rate=2)
    assert dali_unsupported(cfg(**one).data) == []  # one group stepped by sampling_rate: DALI decodes it
    assert cfg(**one, decoder="dali").data.decoder == "dali"
    for data, key in ((dict(shards=["s/"], dataset_fpcs=[4], fps=4), "fps"), (two, "dataset_fpcs")):
        with pytest.raises(ConfigError, match=rf"data\.{key}: .*DALI.*use data\.decoder: pyav"):
            cfg(**data, decoder="dali")


# -- V2 mask options against the official generator

def official_masks(collator, fpc, batch_size, batch_counter, seed):
    """The official masks of one fpc group for the collator's `batch_counter`-th batch, global RNG seeded `seed`."""
    for gens in collator.mask_generators.values():
        for g in gens:
            g._itr_counter.value = batch_counter - 1  # step() increments before use
    samples = [(torch.zeros(1), 0, [list(range(fpc))])] * batch_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        (_, enc, pred), = collator(samples)
    return enc, pred


OPTIONS = [
    {},
    {"full_complement": True},
    {"pred_full_complement": True},
    {"inv_block": True},
    {"inv_block": True, "full_complement": True},
    {"inv_block": True, "pred_full_complement": True},
    {"full_complement": True, "max_keep": 300, "max_temporal_keep": 0.5},
    {"pred_full_complement": True, "max_keep": 300},
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "+".join(f"{k}={v}" for k, v in o.items()) or "v1")
@pytest.mark.parametrize("fpc,crop,batch_size", [(16, 256, 6), (4, 64, 8)])
def test_v2_mask_options_give_the_official_masks(options, fpc, crop, batch_size):
    cfgs = [{**m, **options} for m in V2_MASKS]
    ours = MultiBlockMasks([MaskConfig(**m) for m in cfgs], crop, fpc, 16, 2)
    official = MaskCollator(cfgs, [fpc], crop_size=crop, patch_size=16, tubelet_size=2)
    for j, seed in ((0, 11), (7, 3), (123, 99)):
        got = ours(batch_size, j, seed)
        enc, pred = official_masks(official, fpc, batch_size, j, seed)
        for a, b in zip(got.context + got.target, list(enc) + list(pred)):
            assert a.dtype == torch.int64 and torch.equal(a, b)


def gen(**kw):
    args = dict(crop_size=224, num_frames=16, patch_size=16, tubelet_size=2, spatial_scale=(0.15, 0.15),
                temporal_scale=(1.0, 1.0), aspect_ratio=(0.75, 1.5), num_blocks=8)
    return MaskGenerator(**{**args, **kw})


def draw(g, j=3, seed=0, batch_size=8):
    return g(batch_size, j, torch.Generator().manual_seed(seed))


N = 8 * 14 * 14


def assert_partition(ctx, tgt):
    for c, t in zip(ctx, tgt):
        assert torch.all(c[1:] > c[:-1]) and torch.all(t[1:] > t[:-1])
        assert not set(c.tolist()) & set(t.tolist()) and len(c) + len(t) == N


def test_full_complement_targets_are_every_token_the_cut_context_lacks():
    plain_ctx, plain_tgt = draw(gen())
    assert any(len(c) + len(t) < N for c, t in zip(plain_ctx, plain_tgt))  # the cut drops tokens without it
    ctx, tgt = draw(gen(full_complement=True))
    assert torch.equal(ctx, plain_ctx)  # the same draws, the context as V1's
    assert_partition(ctx, tgt)
    assert tgt.shape[1] == N - ctx.shape[1]
    # with max_keep, the complement is of the capped context (the official cut-then-complement order)
    ctx, tgt = draw(gen(full_complement=True, max_keep=100))
    assert ctx.shape[1] == 100 and tgt.shape[1] == N - 100
    assert_partition(ctx, tgt)


def test_pred_full_complement_context_is_every_token_the_cut_targets_lack():
    plain_ctx, plain_tgt = draw(gen())
    ctx, tgt = draw(gen(pred_full_complement=True, max_keep=100))
    assert torch.equal(tgt, plain_tgt)
    assert_partition(ctx, tgt)
    assert ctx.shape[1] == N - tgt.shape[1] > 100  # max_keep caps the cut context only, which is then replaced


def test_full_complement_wins_over_pred_full_complement_as_the_official_elif():
    a = draw(gen(full_complement=True, pred_full_complement=True))
    b = draw(gen(full_complement=True))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("options", [{}, {"full_complement": True}, {"pred_full_complement": True},
                                     {"max_keep": 50}])
def test_inv_block_swaps_the_roles_of_the_same_draws(options):
    ctx, tgt = draw(gen(**options))
    inv_ctx, inv_tgt = draw(gen(inv_block=True, **options))
    assert torch.equal(inv_ctx, tgt) and torch.equal(inv_tgt, ctx)


def test_v2_mask_options_are_read_from_the_mask_config():
    m = MultiBlockMasks([MaskConfig(**{**V2_MASKS[0], "full_complement": True}),
                         MaskConfig(**{**V2_MASKS[1], "inv_block": True})], 224, 16, 16, 2)
    assert [(g.full_complement, g.pred_full_complement, g.inv_block) for g in m.generators] == \
        [(True, False, False), (False, False, True)]
    masks = m(4, 0, 1)
    assert masks.context[0].shape[1] + masks.target[0].shape[1] == N
    assert masks.context[1].shape[1] > masks.target[1].shape[1]  # inverted: the big blocks are the context


# -- token budgets (the V1 algorithm at V2 sizes)

def test_token_budget_matches_the_v2_reference_table():
    """family.md 1.4: 16 frames, 256 px, B=24, mean over 100 batches after the cut: config 0 506 / 946 context /
    target, config 1 132 / 1442."""
    masks = MultiBlockMasks([MaskConfig(**m) for m in V2_MASKS], 256, 16, 16, 2)
    sums = torch.zeros(2, 2)
    for j in range(100):
        m = masks(24, j, seed=1000 + j)
        for i in range(2):
            sums[i] += torch.tensor([m.context[i].shape[1], m.target[i].shape[1]], dtype=torch.float)
    got = (sums / 100).tolist()
    for (i, k), want in (((0, 0), 506), ((0, 1), 946), ((1, 0), 132), ((1, 1), 1442)):
        assert abs(got[i][k] - want) <= 0.05 * want, (i, k, got[i][k], want)


# -- the weighted mixture

def test_resampled_mixture_draws_each_sample_with_the_official_weight_over_size():
    """The official DistributedWeightedSampler: per-sample weight dataset_weight / dataset_size, drawn with
    replacement. data.sampling: resampled draws a dataset by weight, then a sample uniformly in it: the same law."""
    sizes, weights = [30, 10, 60], [0.335, 0.100, 0.565]
    order = SampleOrder(sizes, 50, seed=239, weights=weights, mode="resampled")
    draws = np.concatenate([order.batch(j) for j in range(4000)])
    freq = np.bincount(draws, minlength=sum(sizes)) / len(draws)
    official = np.concatenate([[w / n] * n for w, n in zip(weights, sizes)])
    official /= official.sum()
    assert np.abs(freq - official).max() < 0.15 * official.max()
    per_dataset = [freq[:30].sum(), freq[30:40].sum(), freq[40:].sum()]
    assert np.allclose(per_dataset, weights, atol=0.01)
    assert len(set(order.batch(0).tolist())) < 50  # with replacement: a batch can repeat a sample


def test_epoch_mixture_has_the_official_expected_shares_but_exact_counts_per_epoch():
    """data.sampling: epoch (the default) with weights takes round(w_i * total) samples of dataset i per epoch,
    without replacement within each pass over it: the official expected shares, with no multinomial spread."""
    sizes, weights = [30, 10, 60], [0.335, 0.100, 0.565]
    order = SampleOrder(sizes, 10, seed=239, weights=weights, mode="epoch")
    assert order.per_epoch == [34, 10, 56]
    epoch = np.concatenate([order.batch(j) for j in range(order.batches_per_epoch)])
    counts = np.bincount(np.searchsorted(np.cumsum(sizes), epoch, side="right"), minlength=3)
    assert counts.tolist() == [34, 10, 56]
    first = np.bincount(epoch[epoch < 30], minlength=30)
    assert first.min() == 1 and first.max() == 2  # up-weighted: one whole pass, then 4 of a second
    assert len(set(epoch[epoch >= 40].tolist())) == 56  # down-weighted: no sample twice


# -- end to end

@pytest.mark.slow
def test_tiny_v2_pretrains_on_two_fpc_groups_and_trains_one_mask_token_per_group(two_lists, tmp_path):
    """Two datasets at 4 and 8 frames through the V2 recipe: each group reaches the loss with its own mask token
    (the tokens start at zero; the ones no group uses stay there)."""
    import csv
    import math

    from jepa_scale.trainer import train

    raw = tiny_v2_raw(None, str(tmp_path / "run"), data={"datasets": list(two_lists), "dataset_fpcs": [4, 8]},
                      optimization={"max_steps": 4, "ipe": 2, "epochs": 2})
    out = train(load_config(raw=raw))
    assert out["step"] == 4
    losses = [float(r["loss"]) for r in csv.DictReader(open(tmp_path / "run" / "jepa_r0.csv"))]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    tokens = {k.rsplit(".", 1)[-1]: v for k, v in torch.load(out["checkpoint"], weights_only=True)["predictor"].items()
              if "mask_tokens" in k}
    assert tokens["0"].abs().sum() > 0 and tokens["1"].abs().sum() > 0
    assert all(v.abs().sum() == 0 for k, v in tokens.items() if int(k) >= 2)
