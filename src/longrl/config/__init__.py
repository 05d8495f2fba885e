"""Typed configuration: one module per section group, composed into `Config` and loaded from YAML.

    from longrl.config import Config, load_config
    cfg = load_config("configs/demo.yaml", ["algo.clip_eps_high=0.28"])

This package sits just above the foundation (errors, files, ...) and imports no stage, so any
stage can take the typed config without importing the stages above it.
"""

from longrl.config.base import RunConfig, Section
from longrl.config.loading import (
                                   Config,
                                   apply_overrides,
                                   data_sources,
                                   load_config,
                                   parse_override,
                                   read_yaml,
                                   set_dotted,
                                   validate_config,
)

__all__ = ["Config", "RunConfig", "Section", "apply_overrides", "data_sources", "load_config", "parse_override",
           "read_yaml", "set_dotted", "validate_config"]
