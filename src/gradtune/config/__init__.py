"""The config: schema.py (every key, its type, default and meaning), checks.py (keys against the
task, the model and each other), loading.py (YAML + dotted overrides, errors that name the key),
reference.py (docs/config.md, generated from the schema)."""

from gradtune.config.loading import as_config, build_config, load_config, parse_overrides
from gradtune.config.schema import Config, DataConfig, ModelConfig, StrategyConfig, TrainConfig

__all__ = ["Config", "DataConfig", "ModelConfig", "StrategyConfig", "TrainConfig", "as_config", "build_config",
           "load_config", "parse_overrides"]
