"""Fréchet distance between Gaussian fits of feature embeddings (FID; Heusel et al., NeurIPS 2017).

FID = ||mu_r - mu_g||^2 + tr(S_r + S_g - 2 (S_r S_g)^{1/2})  (Heusel et al. 2017, Eq. 6), with the
means and covariances of a feature network's embeddings of real and generated images.

The moments and the matrix square root are torchmetrics' `FrechetInceptionDistance`, with the
feature network injected. Features are computed once per image set (`extract_features`) and
handed to torchmetrics through the identity module `PrecomputedFeatures`, so that FID, KID and
precision/recall see the same features and bootstrap replicates cost no extra network passes.

FID depends on the feature network (numbers from different networks are not comparable) and is
biased by the sample counts: both go into the params of every estimate.
"""

import math

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance

from metrics.estimate import Estimate


class PrecomputedFeatures(nn.Module):
    """Identity feature extractor, so torchmetrics' image metrics accept features ``(N, F)``.

    Args:
        num_features: F; torchmetrics reads it instead of probing the network with a dummy image.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


@torch.no_grad()
def extract_features(feature_network: nn.Module, images: Tensor, *, batch_size: int) -> Tensor:
    """Return the feature network's embedding of each image, in float64.

    Args:
        feature_network: Maps a batch of images to features ``(b, F)``; run in eval mode.
        images: ``(N, C, H, W)`` in the range the network was trained on.
        batch_size: Images per forward pass (bounds memory only; the result does not depend on it).

    Returns:
        Features of shape ``(N, F)``, on the CPU; batches run on the network's device.
    """
    if batch_size < 1:
        raise ValueError(f"Expected `batch_size` to be >= 1, but got {batch_size}.")
    device = next(feature_network.parameters(), images).device
    training = feature_network.training
    feature_network.eval()
    try:
        chunks = [feature_network(b.to(device)).double().cpu() for b in images.split(batch_size)]
    finally:
        feature_network.train(training)
    return torch.cat(chunks).flatten(1)  # (N, F)


def check_features(real_features: Tensor, generated_features: Tensor, *, minimum: int) -> None:
    """Raise unless both sets are ``(N, F)`` matrices with one F and >= `minimum` rows each."""
    for name, features in (
        ("real_features", real_features),
        ("generated_features", generated_features),
    ):
        if not isinstance(features, Tensor) or features.dim() != 2:
            shape = tuple(features.shape) if isinstance(features, Tensor) else type(features)
            raise ValueError(f"Expected `{name}` to be a tensor of shape (N, F), but got {shape}.")
        if len(features) < minimum:
            raise ValueError(
                f"Expected `{name}` to have at least {minimum} rows, but got {len(features)}."
            )
    if real_features.shape[1] != generated_features.shape[1]:
        raise ValueError(
            f"Expected both feature sets to have the same width, but got "
            f"{real_features.shape[1]} (real) and {generated_features.shape[1]} (generated)."
        )


def torchmetrics_frechet_distance(real_features: Tensor, generated_features: Tensor) -> float:
    """Return FID between two feature sets with torchmetrics (float64 moments, ddof-1 covariances).

    Args:
        real_features: ``(N_r, F)``.
        generated_features: ``(N_g, F)``.
    """
    check_features(real_features, generated_features, minimum=2)
    metric = FrechetInceptionDistance(feature=PrecomputedFeatures(real_features.shape[1]))
    # NOTE: torchmetrics casts its result to the features' dtype; float64 keeps every digit.
    metric.update(real_features.double(), real=True)
    metric.update(generated_features.double(), real=False)
    return metric.compute().item()


def frechet_distance(
    real_features: Tensor, generated_features: Tensor, *, num_bootstrap: int = 20, seed: int = 0
) -> Estimate:
    """Estimate the Fréchet distance between real and generated features, with a bootstrap stderr.

    Heusel et al. (2017), Eq. 6. The value uses all features. Its standard error is the standard
    deviation (ddof 1) of the FID over `num_bootstrap` replicates that resample both sets with
    replacement; it measures sampling noise, not FID's upward small-sample bias.

    Args:
        real_features: Reference-image features ``(N_r, F)``.
        generated_features: Generated-image features ``(N_g, F)``.
        num_bootstrap: Bootstrap replicates for the stderr (>= 2).
        seed: Seed of the bootstrap resampling.
    """
    if num_bootstrap < 2:
        raise ValueError(f"Expected `num_bootstrap` to be >= 2, but got {num_bootstrap}.")
    value = torchmetrics_frechet_distance(real_features, generated_features)
    replicates = _bootstrap_frechet_distances(
        real_features, generated_features, num_bootstrap=num_bootstrap, seed=seed
    )
    params = {
        "num_real": len(real_features),
        "num_generated": len(generated_features),
        "num_features": real_features.shape[1],
        "num_bootstrap": num_bootstrap,
        "bootstrap_seed": seed,
        "stderr_method": "std (ddof 1) of FID over bootstrap resamples of both sets",
    }
    mean_gap = real_features.double().mean(0) - generated_features.double().mean(0)  # (F,)
    diagnostics = {
        "bootstrap_mean": replicates.mean().item(),
        "mean_term": mean_gap.square().sum().item(),  # ||mu_r - mu_g||^2; the rest is covariance
    }
    return Estimate(
        value=value,
        stderr=replicates.std(correction=1).item(),
        n=len(generated_features),
        unit="squared feature distance",
        higher_is_better=False,
        params=params,
        diagnostics=diagnostics,
    )


def _bootstrap_frechet_distances(
    real_features: Tensor, generated_features: Tensor, *, num_bootstrap: int, seed: int
) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(num_bootstrap):
        real_index = torch.randint(len(real_features), (len(real_features),), generator=generator)
        fake_index = torch.randint(
            len(generated_features), (len(generated_features),), generator=generator
        )
        values.append(
            torchmetrics_frechet_distance(real_features[real_index], generated_features[fake_index])
        )
    replicates = torch.tensor(values, dtype=torch.float64)  # (R,)
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"Expected finite bootstrap FIDs, but got {values}.")
    return replicates
