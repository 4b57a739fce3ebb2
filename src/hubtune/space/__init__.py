"""The typed Config schema and the search space it is sampled from."""

from hubtune.space.config import Config, ConfigError, hyperparameter_names
from hubtune.space.searchspace import V6_CHOICES, SearchSpace

__all__ = ["Config", "ConfigError", "SearchSpace", "V6_CHOICES", "hyperparameter_names"]
