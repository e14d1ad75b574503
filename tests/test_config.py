import subprocess
import sys

import pytest
import yaml

from jepa_scale.config import ConfigError, DEAD_KEYS, load_config, save_config
from tests.conftest import ROOT, SHARED

OFFICIAL_DIR = SHARED / "reference" / "official_configs" / "pretrain"
BUNDLED = sorted((ROOT / "configs" / "pretrain").glob("*.yaml"))


def official_files():
    return sorted(OFFICIAL_DIR.glob("*.yaml")) if OFFICIAL_DIR.is_dir() else []


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_bundled_configs_validate(path):
    cfg = load_config(path)
    assert cfg.data.crop_size % cfg.data.patch_size == 0


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
    with pytest.raises(ConfigError, match="use_rope"):
        load_config(write(tmp_path, "model:\n  use_rope: true\n"))
