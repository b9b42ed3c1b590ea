"""The model registry: `register_model`, `create_model`, `list_models`, and the model families.

A new model family goes in its own file in this folder, registered with `@register_model`, and
is imported below so that it is listed. Models from outside vaebench register through a plugin
module or the `vaebench.models` entry-point group instead (see the README).
"""

from registry._registry import (
    MODELS,
    Registry,
    create_model,
    list_models,
    register_model,
    resolve_hyperparameters,
)
from registry.base import LatentVariableModel, LossOutput

# Built-in families, one file per paper. Importing a module registers its models.
from registry import beta_vae, burda_iwae, iwae, linear_vae, vae  # noqa: E402, F401  isort: skip
from registry import annealed_vae, beta_tcvae, dip_vae, factor_vae  # noqa: E402, F401  isort: skip
from registry import cvae, iaf_vae, ladder_vae, nvae  # noqa: E402, F401  isort: skip
from registry import skip_vae, vamp_prior, vq_vae, wae  # noqa: E402, F401  isort: skip
from registry import aasae, concrete_autoencoder, evidential_cvae, patch_vae  # noqa: E402, F401  isort: skip
from registry import biva, ncp_vae, vae_gan, vq_vae2  # noqa: E402, F401  isort: skip

__all__ = [
    "MODELS",
    "LatentVariableModel",
    "LossOutput",
    "Registry",
    "create_model",
    "list_models",
    "register_model",
    "resolve_hyperparameters",
]
