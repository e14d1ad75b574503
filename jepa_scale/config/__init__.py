from jepa_scale.config.loader import ConfigError, load_config, save_config, config_to_dict
from jepa_scale.config.schema import (DEAD_KEYS, DataAugConfig, DataConfig, LoggingConfig, LossConfig, MaskConfig,
                                      MetaConfig, ModelConfig, OptimizationConfig, PretrainConfig, dali_unsupported,
                                      dead_key_reason, ignored_keys)

__all__ = ["ConfigError", "load_config", "save_config", "config_to_dict", "DEAD_KEYS", "PretrainConfig", "DataConfig",
           "DataAugConfig", "LoggingConfig", "LossConfig", "MaskConfig", "MetaConfig", "ModelConfig",
           "OptimizationConfig", "dali_unsupported", "dead_key_reason", "ignored_keys"]
