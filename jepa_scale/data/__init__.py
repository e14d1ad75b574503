from jepa_scale.data.batch import Batch
from jepa_scale.data.csv_source import DataError, VideoRecord, read_video_csv, read_video_lists
from jepa_scale.data.pyav_decoder import PyAVDecoder, VideoError, VideoInfo
from jepa_scale.data.stream import DataStream
from jepa_scale.data.video_batches import ClipLoader, VideoBatches

__all__ = ["Batch", "DataError", "VideoRecord", "read_video_csv", "read_video_lists", "PyAVDecoder", "VideoError",
           "VideoInfo", "DataStream", "ClipLoader", "VideoBatches"]
