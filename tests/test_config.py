import dataclasses
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

from jepa_scale.config import (ConfigError, DEAD_KEYS, DataConfig, PretrainConfig, dali_unsupported, dead_key_reason,
                               ignored_keys, load_config, save_config)
from tests.conftest import ROOT, SHARED

OFFICIAL_DIR = SHARED / "reference" / "official_configs" / "pretrain"
BUNDLED = sorted((ROOT / "configs" / "pretrain").glob("*.yaml"))


def official_files():
    return sorted(OFFICIAL_DIR.glob("*.yaml")) if OFFICIAL_DIR.is_dir() else []


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_bundled_configs_validate(path):
    cfg = load_config(path)
    assert cfg.problems() == [] and cfg.recipe in ("vjepa", "vjepa2", "ijepa", "avjepa")


def test_every_official_pretrain_config_validates_unchanged():
    files = official_files()
    if not files:
        pytest.skip(f"{OFFICIAL_DIR} is absent (it exists only in the development workplace)")
    for f in files:
        cfg = load_config(f)
        assert cfg.optimization.ipe == 300 and cfg.mask[0].num_blocks == 8, f


def test_bundled_official_configs_are_the_official_values():
    files = official_files()
    if not files:
        pytest.skip(f"{OFFICIAL_DIR} is absent")
    for f in files:
        assert yaml.safe_load((ROOT / "configs" / "pretrain" / f.name).read_text()) == yaml.safe_load(f.read_text())


def test_official_values_are_read(tmp_path):
    cfg = load_config(ROOT / "configs" / "pretrain" / "vith16_384.yaml")
    assert (cfg.model.model_name, cfg.data.crop_size, cfg.data.batch_size) == ("vit_huge", 384, 10)
    assert cfg.optimization.ema == [0.998, 1.0] and cfg.optimization.final_lr == 1e-6
    assert [m.spatial_scale for m in cfg.mask] == [[0.15, 0.15], [0.7, 0.7]]
    assert cfg.meta.eval_freq == 100 and cfg.data.decode_one_clip  # dead keys parse
    assert "meta.eval_freq" in DEAD_KEYS and "data.decode_one_clip" in DEAD_KEYS


def write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_typo_names_file_line_path_and_suggestion(tmp_path):
    p = write(tmp_path, "data:\n  batch_size: 2\n  crop_sise: 224\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert f"{p}:3" in msg and "data.crop_sise" in msg and "did you mean 'crop_size'" in msg


def test_typo_in_top_level_and_list_sections(tmp_path):
    with pytest.raises(ConfigError, match=r"optimisation.*did you mean 'optimization'"):
        load_config(write(tmp_path, "optimisation:\n  lr: 1.0\n"))
    with pytest.raises(ConfigError, match=r":4: mask\[1\]\.num_block: unknown key \(did you mean 'num_blocks'\?\)"):
        load_config(write(tmp_path, "mask:\n  - num_blocks: 8\n  - spatial_scale: [0.7, 0.7]\n    num_block: 2\n"))


@pytest.mark.parametrize("text,match", [
    ("data:\n  batch_size: many\n", r"data\.batch_size: expected an integer, got 'many'"),
    ("data:\n  batch_size: true\n", r"data\.batch_size: expected an integer"),
    ("meta:\n  load_checkpoint: 1\n", r"meta\.load_checkpoint: expected true or false"),
    ("optimization:\n  lr: fast\n", r"optimization\.lr: expected a number"),
    ("data:\n  crop_size: 230\n", r"data\.crop_size: 230 is not divisible by data\.patch_size=16"),
    ("data:\n  num_frames: 15\n", r"data\.num_frames: 15 is not divisible by data\.tubelet_size=2"),
    ("data:\n  datasets: a.csv\n", r"data\.datasets: expected a list"),
    ("model:\n  attention: flashy\n", r"model\.attention: must be sdpa, math or xformers"),
    ("data_aug:\n  reprob: 0.25\n", r"data_aug\.reprob: random erasing is not implemented"),
    ("mask:\n  - num_blocks: 0\n", r"mask\[0\]\.num_blocks: must be positive"),
])
def test_wrong_types_and_impossible_values(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, text))


def test_numbers_written_without_a_dot_are_numbers(tmp_path):
    # PyYAML reads 1e-3 as a string; a float field accepts it
    assert load_config(write(tmp_path, "optimization:\n  lr: 1e-3\n")).optimization.lr == 1e-3


def test_overrides(tmp_path):
    base = ROOT / "configs" / "pretrain" / "vitl16.yaml"
    cfg = load_config(base, ["optimization.lr=1e-3", "model.depth=2", "mask[1].num_blocks=3",
                             "mask.0.max_keep=100", "optimization.max_steps=5"])
    assert cfg.optimization.lr == 1e-3 and cfg.model.depth == 2
    assert cfg.mask[1].num_blocks == 3 and cfg.mask[0].max_keep == 100 and cfg.optimization.max_steps == 5
    with pytest.raises(ConfigError, match=r"model\.dpeth: unknown key \(did you mean 'depth'\?\)"):
        load_config(base, ["model.dpeth=2"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(base, ["model.depth"])


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(ROOT / "configs" / "pretrain" / "vith16.yaml", ["model.pred_num_heads=12"])
    save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == cfg


def test_cli_exit_codes(tmp_path):
    bad = write(tmp_path, "model:\n  modle_name: vit_large\n")
    run = lambda *a: subprocess.run([sys.executable, "-m", "jepa_scale.config", *map(str, a)],  # noqa: E731
                                    capture_output=True, text=True, cwd=ROOT)
    ok = run(*BUNDLED)
    assert ok.returncode == 0, ok.stderr
    r = run(BUNDLED[0], bad)
    assert r.returncode == 1 and "did you mean 'model_name'" in r.stderr and str(bad) in r.stderr


def test_options_we_do_not_implement_are_errors_not_silently_ignored(tmp_path):
    with pytest.raises(ConfigError, match="datasets_weights: has 1 weights for 2 CSV lists"):
        load_config(write(tmp_path, "data:\n  datasets: [a.csv, b.csv]\n  datasets_weights: [0.5]\n"))
    with pytest.raises(ConfigError, match="data.shards: give CSV lists"):
        load_config(write(tmp_path, "data:\n  datasets: [a.csv]\n  shards: [s/]\n"))
    with pytest.raises(ConfigError, match="model.use_silu: is a V-JEPA 2 option"):
        load_config(write(tmp_path, "model:\n  use_silu: true\n"))
    # a RoPE encoder is V-JEPA 2: the file is read by the V2 root, not run as V1 with a sin-cos predictor
    assert load_config(write(tmp_path, "model:\n  use_rope: true\n")).recipe == "vjepa2"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "jepa_scale.config", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("text,key", [
    ("optimization:\n  is_anneal: true\n", "optimization.is_anneal"),
    ("optimization:\n  anneal_ckpt: /ckpt/e0.pt\n", "optimization.anneal_ckpt"),
    ("optimization:\n  resume_anneal: true\n", "optimization.resume_anneal"),
], ids=["is_anneal", "anneal_ckpt", "resume_anneal"])
def test_cooldown_keys_in_a_v1_file_are_refused_not_trained_from_scratch(tmp_path, text, key):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert f"{p}:2: {key}:" in msg and "V-JEPA 2 cooldown key" in msg and "V-JEPA 1 config" in msg


def test_cooldown_keys_at_their_defaults_load_and_are_reported_ignored(tmp_path):
    text = "optimization:\n  is_anneal: false\n  anneal_ckpt: null\n  resume_anneal: false\n"
    cfg = load_config(write(tmp_path, text))
    assert (cfg.optimization.is_anneal, cfg.optimization.anneal_ckpt, cfg.optimization.resume_anneal) == (
        False, None, False)
    assert [k for k, _ in ignored_keys(yaml.safe_load(text))] == [
        "optimization.is_anneal", "optimization.anneal_ckpt", "optimization.resume_anneal"]


def test_app_selects_the_method_and_is_not_reported_ignored():
    assert "app" not in DEAD_KEYS and ignored_keys({"app": "vjepa"}) == []


def schema_paths(cls, prefix=""):
    """Every key path of the config tree; list sections (mask) without an index, as DEAD_KEYS writes them."""
    for f in dataclasses.fields(cls):
        path = f"{prefix}.{f.name}" if prefix else f.name
        yield path
        tp = typing.get_type_hints(cls)[f.name]
        tp = typing.get_args(tp)[0] if typing.get_origin(tp) is list else tp
        if dataclasses.is_dataclass(tp):
            yield from schema_paths(tp, path)


def test_every_dead_key_is_a_config_key():
    assert set(DEAD_KEYS) <= set(schema_paths(PretrainConfig))


def test_ignored_keys_walks_list_sections(monkeypatch):
    monkeypatch.setitem(DEAD_KEYS, "mask.full_complement", "test reason")
    raw = {"nodes": 2, "mask": [{"num_blocks": 8}, {"full_complement": False}], "data": {"pin_mem": False}}
    assert ignored_keys(raw) == [("nodes", DEAD_KEYS["nodes"]), ("mask[1].full_complement", "test reason"),
                                 ("data.pin_mem", DEAD_KEYS["data.pin_mem"])]
    assert dead_key_reason("mask.0.full_complement") == dead_key_reason("mask[3].full_complement") == "test reason"
    assert dead_key_reason("data.crop_size") is None


def test_official_pretrain_configs_set_only_known_dead_keys():
    files = official_files()
    if not files:
        pytest.skip(f"{OFFICIAL_DIR} is absent")
    for f in files:
        assert [k for k, _ in ignored_keys(yaml.safe_load(f.read_text()))] == [
            "nodes", "tasks_per_node", "data.decode_one_clip", "data.pin_mem", "meta.eval_freq"], f


def test_cli_lists_the_ignored_keys_each_file_sets(tmp_path):
    with_nodes = write(tmp_path, "nodes: 4\ndata:\n  batch_size: 2\n", "a.yaml")
    plain = write(tmp_path, "data:\n  batch_size: 2\n", "b.yaml")
    r = run_cli(with_nodes, plain, "--set", "data.pin_mem=false")
    assert r.returncode == 0, r.stderr
    a, b = r.stdout.split(f"ok {plain}\n")
    assert a.startswith(f"ok {with_nodes}\n")
    assert f"  ignored nodes = {DEAD_KEYS['nodes']}\n" in a and "job layout, read by launch/slurm.py" in DEAD_KEYS["nodes"]
    assert f"  ignored data.pin_mem = {DEAD_KEYS['data.pin_mem']}\n" in a
    assert b == f"  ignored data.pin_mem = {DEAD_KEYS['data.pin_mem']}\n"  # the override only: b sets no nodes
    bad = run_cli(with_nodes, write(tmp_path, "optimization:\n  is_anneal: true\n", "c.yaml"))
    assert bad.returncode == 1 and "optimization.is_anneal" in bad.stderr and f"ok {with_nodes}" in bad.stdout


@pytest.mark.parametrize("key,value", [("num_clips", 2), ("clip_duration", 2.0), ("filter_short_videos", True),
                                       ("sampling", "resampled")])
def test_options_the_dali_path_ignores_are_refused_with_dali(tmp_path, key, value):
    raw = {"data": {"shards": ["s/"], "decoder": "dali", key: value}}
    with pytest.raises(ConfigError, match=rf"data\.{key}: .*DALI.*use data\.decoder: pyav"):
        load_config(raw=raw)
    for decoder in ("auto", "pyav"):  # auto falls back to PyAV in the data layer; pyav applies them
        cfg = load_config(raw={"data": {**raw["data"], "decoder": decoder}})
        assert [k for k, _ in dali_unsupported(cfg.data)] == [f"data.{key}"]


def test_dali_unsupported_is_empty_for_the_defaults_and_bundled_configs():
    assert dali_unsupported(DataConfig()) == []
    for path in BUNDLED:
        cfg = load_config(path)
        if cfg.recipe == "ijepa":  # images: no video decoder
            continue
        want = ["data.fps"] if cfg.data.fps is not None else []  # V2 samples by fps; DALI steps by sampling_rate
        assert [k for k, _ in dali_unsupported(cfg.data)] == want, path
    assert load_config(raw={"data": {"shards": ["s/"], "decoder": "dali"}}).data.decoder == "dali"


def test_plain_pytest_collects_from_the_repository_root():
    pytest_exe = Path(sys.executable).with_name("pytest")
    if not pytest_exe.is_file():
        pytest.skip(f"no pytest executable next to {sys.executable}")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # importable through the pytest config only
    r = subprocess.run([str(pytest_exe), "--collect-only", "-q", "tests/test_config.py"], capture_output=True,
                       text=True, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ERROR" not in r.stdout and "ModuleNotFoundError" not in r.stdout
    assert "tests/test_config.py::test_plain_pytest_collects_from_the_repository_root" in r.stdout
