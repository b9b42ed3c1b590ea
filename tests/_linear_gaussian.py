"""The linear-Gaussian oracle of the likelihood-estimator tests: log p(x) is exact.

D = 8 observed dims, d = 3 latent dims, sigma = 0.5; the model is `linear_vae` with the
dataset's true W, b and sigma and the best diagonal Gaussian encoder.
"""

from benchmark.datasets import create_dataset
from benchmark.datasets.base import Dataset
from registry import create_model
from registry.linear_vae import LinearVAE

DATA_DIM, LATENT_DIM, NOISE_STD = 8, 3, 0.5


def oracle_dataset(num_test: int) -> Dataset:
    """Return the oracle's `linear_gaussian` dataset with `num_test` test examples (seed 0)."""
    return create_dataset(
        "linear_gaussian",
        data_dim=DATA_DIM,
        latent_dim=LATENT_DIM,
        noise_std=NOISE_STD,
        num_train=10,
        num_valid=10,
        num_test=num_test,
        seed=0,
    )


def oracle_model(dataset: Dataset) -> LinearVAE:
    """Return `linear_vae` with the dataset's true parameters and optimal diagonal encoder."""
    model = create_model("linear_vae", data_shape=(DATA_DIM,), latent_dim=LATENT_DIM)
    info = dataset.info
    return model.set_generative_model(info["W"], info["b"], info["noise_std"]).eval()
