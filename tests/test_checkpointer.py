"""The checkpointer alone: cadence, format per engine, epoch copies, rank-0 config."""
import json
from pathlib import Path

import pytest

from jepa_scale.checkpoint import read_checkpoint
from jepa_scale.checkpoint.checkpointer import Checkpointer
from jepa_scale.distributed.engine import SingleEngine
from jepa_scale.trainer import Trainer
from tests.conftest import one_rank_group

pytestmark = pytest.mark.slow


@pytest.fixture(name="one_rank_group")
def one_rank_group_fixture():
    with one_rank_group():
        yield


EPOCHS = {"ipe": 4, "epochs": 3, "max_steps": 8}


def test_sharded_engine_keeps_save_every_freq_copies(tiny_cfg, one_rank_group):
    from jepa_scale.distributed.fsdp import FSDPEngine

    cfg = tiny_cfg(optimization=EPOCHS, meta={"save_every_freq": 1}, logging={"checkpoint_freq": 2})
    Trainer(cfg, engine=FSDPEngine("cpu", "float32")).run()
    root = Path(cfg.logging.folder) / "checkpoints"
    # keep_latest=2 (the default) keeps the newest two steps; the epoch copies stay
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [
        "jepa-e1", "jepa-e2", "step-00000006", "step-00000008"]
    # each copy is the complete checkpoint of its epoch's last step
    for epoch in (1, 2):
        copy = root / f"jepa-e{epoch}"
        assert {".metadata", "MANIFEST.json", "jepa_scale.json"} <= {f.name for f in copy.iterdir()}
        assert json.loads((copy / "jepa_scale.json").read_text())["step"] == 4 * epoch
    assert (root / "latest").read_text() == "step-00000008"


def test_single_file_engine_keeps_save_every_freq_copies(tiny_cfg):
    cfg = tiny_cfg(optimization=EPOCHS, meta={"save_every_freq": 2})
    Trainer(cfg).run()
    folder = Path(cfg.logging.folder)
    assert sorted(p.name for p in folder.glob("*.pth.tar")) == ["jepa-e2.pth.tar", "jepa-latest.pth.tar"]
    assert read_checkpoint(folder / "jepa-e2.pth.tar")["jepa_scale"]["step"] == 8


class RankOne(SingleEngine):
    """A single-process engine that reports rank 1 of 2 (what a second rank's checkpointer sees)."""
    rank, world_size = 1, 2


def test_only_rank_zero_writes_the_config(tiny_cfg):
    cfg = tiny_cfg()
    folder = Path(cfg.logging.folder)
    Checkpointer(cfg, RankOne(), stop_step=8).prepare(resume=False)
    assert not (folder / "config.yaml").exists()
    Checkpointer(cfg, SingleEngine(), stop_step=8).prepare(resume=False)
    assert (folder / "config.yaml").is_file()


def test_cadence(tiny_cfg):
    c = Checkpointer(tiny_cfg(logging={"checkpoint_freq": 3}), SingleEngine(), stop_step=7)
    assert [s for s in range(1, 8) if c.due(s)] == [3, 6, 7]
    once_an_epoch = Checkpointer(tiny_cfg(), SingleEngine(), stop_step=12)  # ipe 4
    assert [s for s in range(1, 13) if once_an_epoch.due(s)] == [4, 8, 12]
