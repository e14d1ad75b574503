"""The training loop's data stream on the DALI path: DaliClips plus masks, with a resumable position."""
from __future__ import annotations

from jepa_scale.data.batch import Batch
from jepa_scale.data.seeds import draw_masks


class DaliStream:
    def __init__(self, tars: list[str], cfg, seed: int, rank: int, world_size: int, device_id, pipelines: int = 1,
                 mask_fns: dict | None = None):
        self.cfg, self.tars, self.seed, self.rank, self.world_size = cfg, tars, seed, rank, world_size
        self.device_id, self.pipelines = device_id, pipelines
        self.mask_fns = mask_fns or {}
        self.next_batch = 0
        self.skipped: dict = {}  # shards hold only samples that decoded when they were made
        self._clips = None
        self._dali_state = None

    def _start(self):
        from jepa_scale.data.dali_pipeline import DaliClips

        self._clips = DaliClips(self.tars, self.cfg.data.batch_size, self.cfg.data, self.cfg.data_aug, self.seed,
                                self.rank, self.world_size, self.device_id, self.pipelines, state=self._dali_state)

    def state_dict(self) -> dict:
        return {"next_batch": self.next_batch,
                "dali": self._clips.state() if self._clips is not None else self._dali_state}

    def load_state_dict(self, state: dict):
        self.next_batch, self._dali_state, self._clips = int(state["next_batch"]), state.get("dali"), None

    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        if self._clips is None:
            self._start()
        clips, labels = next(self._clips)
        j = self.next_batch
        masks = draw_masks(self.mask_fns, clips.shape[0], self.seed, j, self.rank)
        self.next_batch += 1
        return Batch({"video": clips}, labels, j, masks)

    def close(self):
        self._clips = None
