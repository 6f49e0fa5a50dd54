"""Configuration: YAML files read into frozen dataclasses, validated, stored in every checkpoint.

:mod:`ssdlite.config.schema` holds the sections and their checks, :mod:`ssdlite.config.loader`
reads YAML, applies ``--set key=value`` overrides and converts to and from the plain dict stored
in checkpoints and ONNX files. This package imports no torch (the ONNX Runtime back end reads
configs without it).
"""

from ssdlite.config.loader import (
    FIXED_BY_TRAINING,
    MOVED_KEYS,
    apply_overrides,
    check_backbone_name,
    from_dict,
    load_config,
    migrate,
    to_dict,
    trained_config,
)
from ssdlite.config.schema import (
    AnchorConfig,
    BackboneConfig,
    Config,
    ConfigError,
    DataConfig,
    LossConfig,
    ModelConfig,
    PostprocessConfig,
    PreprocessConfig,
    SplitConfig,
    TrainConfig,
)

__all__ = [
    "AnchorConfig", "BackboneConfig", "Config", "ConfigError", "DataConfig", "LossConfig", "ModelConfig",
    "PostprocessConfig", "PreprocessConfig", "SplitConfig", "TrainConfig", "apply_overrides",
    "check_backbone_name", "from_dict", "load_config", "to_dict", "migrate", "trained_config",
    "MOVED_KEYS", "FIXED_BY_TRAINING",
]
