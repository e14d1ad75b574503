from jepa_scale.checkpoint.official import (PREFIX, CheckpointError, add_prefix, atomic_save, check_matches, load_strict,
                                            official_checkpoint, read_checkpoint, strip_prefix)

__all__ = ["PREFIX", "CheckpointError", "add_prefix", "atomic_save", "check_matches", "load_strict", "official_checkpoint",
           "read_checkpoint", "strip_prefix"]
