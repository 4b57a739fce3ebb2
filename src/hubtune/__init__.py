"""hubtune: which pretrained model to finetune, and how, by meta-learned gray-box Bayesian optimisation."""

from hubtune.space.config import Config, ConfigError

__all__ = ["Config", "ConfigError", "__version__"]
__version__ = "0.1.0"
