"""Frozen probes on an AV-JEPA backbone pretrained here: the eval config's `audio:` section builds the joint encoder
the run trained (its target encoder loads strictly), and `probe.inputs` feeds it the video, the sound of each
segment's window, or both; the tone-coded classes are learnt from the sound alone; a video without sound is a
counted failure."""
import math

import numpy as np
import pytest
import torch

from jepa_scale.checkpoint import read_checkpoint, strip_prefix
from jepa_scale.config import ConfigError, load_config
from jepa_scale.data.audio_clips import ClipAudio
from jepa_scale.data.labelled_clips import LabelledClips, collate_clips
from jepa_scale.data.pyav_decoder import PyAVDecoder
from jepa_scale.data.synthetic import make_moving_shapes, split_list
from jepa_scale.evals import inputs
from jepa_scale.evals.backbone import load_encoder
from jepa_scale.evals.feature_cache import cache_key
from jepa_scale.evals.runner import _input_settings, evaluate
from jepa_scale.evals.spec import eval_spec
from jepa_scale.trainer import train
from tests.conftest import ROOT, tiny_av_raw

TINY_AV = ROOT / "configs/evals/tiny_cpu_probe_av.yaml"
AUDIO = tiny_av_raw(None, "")["audio"]  # the pretraining run's section: 32 mel x 48 columns, 2 x 3 audio tokens
AUDIO_TOKENS = 6
# tiny_av_raw's backbone (64 px, 4 frames of step 2, a 2-block ViT of width 48), 2 segments x 2 views
SMALL = ["optimization.resolution=64", "pretrain.depth=2", "pretrain.embed_dim=48", "pretrain.num_heads=2",
         "pretrain.frames_per_clip=4", "data.frames_per_clip=4", "optimization.batch_size=4",
         "optimization.num_epochs=2", "probe.num_workers=0", "probe.tensorboard=false",
         *(f"audio.{k}={v}" for k, v in AUDIO.items())]
INPUTS = ("video", "audio", "both")


@pytest.fixture(scope="module")
def av_probe_videos(tmp_path_factory):
    """24 AV videos (2 per class): 12 train, 12 val."""
    folder = tmp_path_factory.mktemp("av_probe_videos")
    return split_list(make_moving_shapes(folder, num_videos=24, num_frames=24, height=64, width=80, seed=3,
                                         audio=True), 0.25)


@pytest.fixture(scope="module")
def av_checkpoint(av_video_csv, tmp_path_factory):
    folder = tmp_path_factory.mktemp("av_run")
    raw = tiny_av_raw(str(av_video_csv), str(folder), optimization={"max_steps": 4}, logging={"tensorboard": False})
    assert train(load_config(raw=raw))["step"] == 4
    return folder / "jepa-latest.pth.tar"


def av_probe(videos, out, *more, checkpoint=None):
    train_csv, val_csv = videos
    where = [f"pretrain.folder={checkpoint.parent}", f"pretrain.checkpoint={checkpoint.name}",
             "pretrain.write_tag=jepa"] if checkpoint else ["pretrain.folder=''"]
    return load_config(TINY_AV, [f"data.dataset_train={train_csv}", f"data.dataset_val={val_csv}",
                                 f"probe.output_folder={out}", *SMALL, *where, *more])


def first_batch(spec, split: str):
    clips, labels, _, failed = collate_clips([inputs.labelled_dataset(spec, split)[i] for i in range(3)])
    return clips, labels, failed


@pytest.mark.parametrize("choice", INPUTS)
def test_each_input_choice_probes_the_pretrained_backbone(av_probe_videos, av_checkpoint, tmp_path, choice):
    cfg = av_probe(av_probe_videos, tmp_path / "out", f"probe.inputs={choice}", checkpoint=av_checkpoint)
    spec = eval_spec(cfg)
    encoder = load_encoder(spec)
    saved = strip_prefix(read_checkpoint(av_checkpoint)["target_encoder"])
    state = encoder.state_dict()
    assert set(state) == set(saved) and any(k.startswith("audio_embed.") for k in saved)
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    video_tokens = 2 * (64 // 16) ** 2  # per clip: 4 frames / tubelet 2, 4 x 4 patches
    per_segment = {"video": video_tokens, "audio": AUDIO_TOKENS, "both": video_tokens + AUDIO_TOKENS}[choice]
    views = 1 if choice == "audio" else 2
    assert inputs.output_shape(spec, encoder, "val") == (views, 2 * per_segment, 48)  # both segments attended
    for split in ("train", "val"):
        clips, labels, _ = first_batch(spec, split)
        with torch.no_grad():
            features = inputs.encode(encoder, spec, clips)
        assert tuple(torch.stack(features, 1).shape[1:]) == inputs.output_shape(spec, encoder, split)
        assert all(f.shape[0] == len(labels) and torch.isfinite(f).all() for f in features)
    r = evaluate(cfg)
    assert r["num_samples"] == 12 and math.isfinite(r["top1"]) and 0 <= r["top1"] <= 100
    assert r["replaced_samples"] == {"train": 0, "val": 0}


def test_segments_probed_alone_and_the_joint_sequence(av_probe_videos, tmp_path):
    """Without attend_across_segments every (view, segment) is an output; `both` holds each clip's video tokens
    then its audio tokens, as the encoder returns them."""
    cfg = av_probe(av_probe_videos, tmp_path, "probe.inputs=both", "optimization.attend_across_segments=false")
    spec = eval_spec(cfg)
    encoder = load_encoder(spec)
    assert inputs.output_shape(spec, encoder, "val") == (4, 32 + AUDIO_TOKENS, 48)
    clips, _, _ = first_batch(spec, "val")
    with torch.no_grad():
        features = inputs.encode(encoder, spec, clips)
        view0_segment1 = encoder(clips[1][0])
    torch.testing.assert_close(features[1], view0_segment1)  # item v * S + s


def test_the_feature_cache_key_follows_the_inputs_choice(av_probe_videos, tmp_path):
    def key(*more):
        return cache_key("one encoder", _input_settings(eval_spec(av_probe(av_probe_videos, tmp_path, *more)), "val"))

    keys = {key(f"probe.inputs={choice}") for choice in INPUTS}
    assert len(keys) == 3
    assert key("probe.inputs=audio", "audio.hop_length=32") != key("probe.inputs=audio")  # the front end, too


def test_each_segment_hears_exactly_its_window(av_probe_videos, tmp_path):
    """The spectrogram of a segment is ClipAudio's of its first frame to just after its last (8 fps), and the
    audio-only path, which decodes no frame, finds the same windows from the header."""
    asked, windows = [], []

    class Spy(PyAVDecoder):
        def _decode(self, container, stream, indices):
            asked.append(np.asarray(indices))
            return super()._decode(container, stream, indices)

    reader = ClipAudio(eval_spec(av_probe(av_probe_videos, tmp_path)).audio)

    def heard(rec, start, end):
        windows.append((start, end))
        return reader(rec, start, end)

    def clips(**kw):
        return LabelledClips.from_csv([str(av_probe_videos[0])], frames_per_clip=4, frame_step=2, num_segments=2,
                                      transform=lambda frames, rng: [frames.permute(3, 0, 1, 2).float()], seed=1,
                                      random_clip_sampling=False, audio=heard, decoder=Spy(), **kw)

    ds = clips()
    both = ds[5][0]
    segments = asked[0].reshape(2, 4)
    assert windows == [(s[0] / 8, (s[-1] + 1) / 8) for s in segments] and windows[0] != windows[1]
    for segment, window in zip(both, windows):
        assert set(segment[0]) == {"video", "audio"}
        assert torch.equal(segment[0]["audio"], reader(ds.records[5], *window))
    audio_only = clips(video=False)[5][0]
    assert len(asked) == 1 and windows[2:] == windows[:2]  # nothing decoded, the same windows
    assert [list(s[0]) for s in audio_only] == [["audio"], ["audio"]]
    assert all(torch.equal(a[0]["audio"], b[0]["audio"]) for a, b in zip(audio_only, both))


def test_audio_only_probing_learns_the_tone_classes_on_a_random_backbone(tmp_path_factory, tmp_path):
    # the pitch of each video's tone is its class, so even a random-init encoder's audio tokens separate the 12
    # classes. Measured here (36 train / 12 val, 12 epochs): top-1 of 12 classes 100%; the bound leaves margin for
    # other torch builds and is far above chance (8.3%)
    folder = tmp_path_factory.mktemp("av_tone_videos")
    videos = split_list(make_moving_shapes(folder, num_videos=48, num_frames=24, height=64, width=80, seed=4,
                                           audio=True), 0.25)
    cfg = av_probe(videos, tmp_path, "probe.inputs=audio", "optimization.num_epochs=12", "optimization.lr=0.005",
                   "optimization.start_lr=0.005")
    r = evaluate(cfg, encoder_checkpoint="")
    assert r["num_samples"] == 12 and r["top1"] >= 75, r["top1"]


def test_a_video_without_sound_is_a_counted_failure(av_probe_videos, tmp_path):
    silent = make_moving_shapes(tmp_path / "silent", num_videos=1, num_frames=24, height=64, width=80, seed=9)
    train_csv, val_csv = av_probe_videos
    with_silent = tmp_path / "train.csv"
    with_silent.write_text(train_csv.read_text() + silent.read_text())
    r = evaluate(av_probe((with_silent, val_csv), tmp_path / "audio", "probe.inputs=audio",
                          "optimization.num_epochs=1"))
    assert r["replaced_samples"] == {"train": 1, "val": 0} and math.isfinite(r["top1"])
    ds = inputs.labelled_dataset(eval_spec(av_probe((with_silent, val_csv), tmp_path, "probe.inputs=both")), "train")
    _, label, _, replaced = ds[len(ds) - 1]
    assert [f.reason for f in replaced] == ["audio: no audio track"] and ds.skipped["audio: no audio track"] == 1
    video_only = evaluate(av_probe((with_silent, val_csv), tmp_path / "video", "optimization.num_epochs=1"))
    assert video_only["replaced_samples"] == {"train": 0, "val": 0}  # the sound is never read


@pytest.mark.parametrize("more,key,message", [
    (["probe.inputs=audio", "audio=null"], "probe.inputs", "needs an audio-visual backbone"),
    (["probe.inputs=stereo"], "probe.inputs", "must be one of video, audio, both"),
    (["pretrain.modality_embed=true", "audio=null"], "pretrain.modality_embed", "needs the run's `audio:` section"),
    (["audio.n_mels=40"], "audio.n_mels", "not divisible by audio.patch_size"),
    (["audio.front_end=mfcc"], "audio.front_end", "must be one of avjepa, kaldi"),
    (["pretrain.model_name=videomamba_tiny"], "pretrain.model_name", "VideoMamba backbone"),
])
def test_config_errors_name_the_key(more, key, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(TINY_AV, more)
    assert f": {key}: " in str(err.value)


def test_only_a_v1_video_eval_takes_sound():
    with pytest.raises(ConfigError, match="probe.inputs: 'both' needs an audio-visual backbone"):
        load_config(ROOT / "configs/evals/vitl16_ssv2_16x2x3_v2.yaml", ["probe.inputs=both"])
    with pytest.raises(ConfigError, match="audio: unknown key"):
        load_config(ROOT / "configs/evals/vitl16_in1k.yaml", ["audio.n_mels=32"])
    video_only = eval_spec(load_config(ROOT / "configs/evals/tiny_cpu_probe.yaml"))
    assert video_only.audio is None and video_only.inputs == "video" and not video_only.reads_audio
