"""The JEPA family on the sharded engines: a tiny V-JEPA 2, a tiny I-JEPA, a tiny VideoMamba-JEPA (also with
the Mamba predictor) and a tiny AV-JEPA (video and sound) train on 2 gloo ranks under FSDP2 and DeepSpeed ZeRO-3 with DDP's losses, as V-JEPA 1 does
(tests/test_distributed.py)."""
import pytest

from tests.conftest import tiny_av_raw, tiny_ijepa_raw, tiny_raw, tiny_v2_raw
from tests.test_distributed import TORCHRUN, launch, losses

pytestmark = pytest.mark.slow

RAW = {"vjepa2": lambda csv, images, folder: tiny_v2_raw(csv, folder, data={"batch_size": 4},
                                                         optimization={"max_steps": 4, "ipe": 8}),
       "ijepa": lambda csv, images, folder: tiny_ijepa_raw(images, folder, data={"batch_size": 4},
                                                           optimization={"max_steps": 4, "ipe": 8}),
       "videomamba": lambda csv, images, folder: tiny_raw(csv, folder, data={"batch_size": 4},
                                                          model={"model_name": "videomamba_tiny", "depth": 2},
                                                          optimization={"max_steps": 4, "ipe": 8}),
       # and with the Mamba predictor (model.pred_type: mamba): Mamba blocks on both sides
       "videomamba_mamba_pred": lambda csv, images, folder: tiny_raw(
           csv, folder, data={"batch_size": 4},
           model={"model_name": "videomamba_tiny", "depth": 2, "pred_type": "mamba"},
           optimization={"max_steps": 4, "ipe": 8}),
       # the csv argument is then the videos with sound (av_video_csv)
       "avjepa": lambda csv, images, folder: tiny_av_raw(csv, folder, data={"batch_size": 4},
                                                         optimization={"max_steps": 4, "ipe": 8})}


@pytest.fixture(scope="module", params=sorted(RAW))
def family_ddp(request, video_csv, av_video_csv, ijepa_images, tmp_path_factory):
    if TORCHRUN is None:
        pytest.skip("torchrun not found next to this python")
    videos = av_video_csv if request.param == "avjepa" else video_csv
    raw = RAW[request.param](str(videos), str(ijepa_images), str(tmp_path_factory.mktemp("unused")))
    folder = tmp_path_factory.mktemp(f"{request.param}_ddp") / "run"
    launch(raw, folder, 2, "data.batch_size=2", "distributed.engine=ddp")
    return raw, folder


@pytest.mark.parametrize("engine", ["distributed.engine=fsdp", "distributed.engine=deepspeed"],
                         ids=["fsdp2", "zero3"])
def test_the_family_trains_sharded_with_ddp_losses(family_ddp, tmp_path, engine):
    raw, ddp = family_ddp
    if "deepspeed" in engine:
        pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (make test installs it)")
    launch(raw, tmp_path / "run", 2, "data.batch_size=2", engine, "distributed.zero_stage=3")
    ours, ref = losses(tmp_path / "run"), losses(ddp)
    assert len(ours) == len(ref) == 4 and ours == pytest.approx(ref, rel=1e-4)
