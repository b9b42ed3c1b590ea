"""NCP-VAE: a noise-contrastive prior on a VAE (Aneja, Schwing, Kautz & Vahdat, NeurIPS 2021).

The VAE is trained as usual with its base prior p_base(z) = N(0, I). A binary classifier D(z)
learns to tell samples of the aggregate posterior q(z) = E_x q(z|x) (label 1) from samples of
p_base (label 0); at its optimum D/(1 - D) = q(z)/p_base(z), so the reweighting factor
r(z) = exp(logit D(z)) corrects the base prior towards the aggregate posterior (Sec. 3, Eqs. 3-5
as recalled):

    p_NCP(z) = p_base(z) r(z) / Z,    Z = E_{p_base}[r(z)].

Sampling is by sampling-importance-resampling (draw M proposals from p_base, keep one with
probability proportional to r) or by Langevin dynamics on log p_base + log r started at a base
sample (Sec. 3.2 as recalled); both are approximate for finite M or steps.

Densities. log p_NCP(z) needs the normaliser Z, which has no closed form. It is estimated once per
set of weights by importance sampling from p_base, Z_hat = mean_i r(z_i) over `normalizer_samples`
draws under a fixed seed, with the standard error of log Z_hat by the delta method,
sd(r) / (sqrt(n) Z_hat). `estimated_constants()` returns it, and the run record keeps it under
``model.estimated_constants``: every likelihood metric of this model (ELBO, NLL, AIS) is computed
with the plug-in log Z_hat, so it inherits that error on top of its own (the same constant
shifts every example's log p(x) by the same amount, so it is not part of their stderr).

Training. The paper trains the VAE, then the classifier with the VAE fixed. Here both train in
one loop: the VAE on its ELBO with the base prior (the NCP does not enter it), the classifier
with its own Adam (`auxiliary_parameters`, as FactorVAE's discriminator) on detached posterior
and base-prior samples of every batch, so it tracks the current aggregate posterior and matches
the final VAE's once its weights settle. The logged ``elbo`` is the base-prior ELBO.

Presets: ``ncp_vae`` (small MLP VAE, a 2-layer classifier, 50 resampling proposals) and
``ncp_vae_paper`` (as recalled, all [unverified]: importance resampling with 5,000 proposals;
a 64-d latent on the shared MLP trunk and a 3-layer classifier stand in for the paper's NVAE
with one residual classifier per latent group, which a one-group VAE reduces to one; the
normaliser from 100,000 base samples is vaebench's choice).

Equation and section numbers are cited from memory; vaebench's references do not hold the
paper's text [unverified].
"""

import math
from typing import Literal

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, constraints

from registry._registry import register_model, register_model_preset
from registry.base import LossOutput, kl_to_prior
from registry.trunks import Architecture, mlp
from registry.vae import VAE, LikelihoodName, _terms

Sampler = Literal["importance_resampling", "langevin"]
NORMALIZER_SEED = 1234  # fixed, so that log Z_hat (and every density) is a function of the weights


class NoiseContrastivePrior(Distribution):
    """p_NCP(z) = p_base(z) r(z) / Z_hat; batch ``()``, event ``(D,)``.

    ``log_prob`` uses the model's importance-sampled log Z_hat; ``sample`` resamples or runs
    Langevin dynamics (see the module docstring), so its draws are approximate.
    """

    arg_constraints: dict[str, constraints.Constraint] = {}
    support = constraints.real_vector

    def __init__(self, model: "NCPVAE") -> None:
        self.model = model
        self.base = model.base_prior()
        super().__init__(torch.Size(), torch.Size([model.latent_dim]), validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        log_z = self.model.log_normalizer()["value"]
        return self.base.log_prob(value) + self.model.log_ratio(value) - log_z

    def sample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        if self.model.sampler == "langevin":
            return self.model.langevin_sample(torch.Size(sample_shape))
        return self.model.resample(torch.Size(sample_shape))

    @property
    def mean(self) -> Tensor:
        return self.base.mean  # NOTE: the base mean; the NCP mean has no closed form


class NCPVAE(VAE):
    """A VAE whose prior is reweighted by a noise-contrastive classifier; see the module doc.

    Args:
        data_shape, latent_dim, architecture, likelihood: As for the VAE.
        classifier_hidden: Hidden widths of the classifier D(z).
        classifier_lr: Adam learning rate of the classifier.
        sampler: ``importance_resampling`` or ``langevin``.
        resampling_proposals: M, base proposals per sample of importance resampling.
        langevin_steps: Steps of Langevin dynamics.
        langevin_step_size: Step size eps of z <- z + eps/2 grad log p + sqrt(eps) noise.
        normalizer_samples: Base samples of the importance-sampled normaliser.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        latent_dim: int,
        architecture: Architecture,
        likelihood: LikelihoodName,
        *,
        classifier_hidden: tuple[int, ...],
        classifier_lr: float,
        sampler: Sampler,
        resampling_proposals: int,
        langevin_steps: int,
        langevin_step_size: float,
        normalizer_samples: int,
    ) -> None:
        super().__init__(data_shape, latent_dim, architecture, likelihood)
        self.classifier = mlp([latent_dim, *classifier_hidden, 1], "relu")
        self.auxiliary_optimizer = {"lr": classifier_lr}
        self.sampler, self.resampling_proposals = sampler, resampling_proposals
        self.langevin_steps, self.langevin_step_size = langevin_steps, langevin_step_size
        self.normalizer_samples = normalizer_samples
        self._log_normalizer: dict[str, float] | None = None

    def auxiliary_parameters(self) -> list[nn.Parameter]:
        return list(self.classifier.parameters())

    def base_prior(self) -> Distribution:
        return super().prior()

    def prior(self) -> Distribution:
        return NoiseContrastivePrior(self)

    def log_ratio(self, z: Tensor) -> Tensor:
        """Return log r(z), the classifier's logit, shape ``z.shape[:-1]``."""
        return self.classifier(z).squeeze(-1)

    @torch.no_grad()
    def log_normalizer(self) -> dict[str, float]:
        """Return log Z_hat = log mean r(z_i), z_i ~ p_base, with its delta-method stderr.

        Cached until the next training step; drawn under a fixed seed so that it is a function
        of the weights.
        """
        if self._log_normalizer is None:
            with torch.random.fork_rng():
                torch.manual_seed(NORMALIZER_SEED)
                z = self.base_prior().sample((self.normalizer_samples,))  # (n, D)
            self._log_normalizer = importance_log_normalizer(self.log_ratio(z))
        return self._log_normalizer

    def estimated_constants(self) -> dict[str, dict[str, object]]:
        """Return the estimated constants every density of this model uses, for the record."""
        method = "importance sampling from p_base, stderr by the delta method"
        return {"log_normalizer": {**self.log_normalizer(), "method": method}}

    def train(self, mode: bool = True) -> "NCPVAE":
        self._log_normalizer = None  # weights may have changed since it was estimated
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201  torch's signature
        self._log_normalizer = None
        return super().load_state_dict(*args, **kwargs)

    @torch.no_grad()
    def resample(self, shape: torch.Size) -> Tensor:
        """Draw ``(*shape, D)`` by sampling-importance-resampling with M base proposals each."""
        n = math.prod(shape)
        proposals = self.base_prior().sample((n, self.resampling_proposals))  # (n, M, D)
        pick = torch.distributions.Categorical(logits=self.log_ratio(proposals)).sample()  # (n,)
        return proposals[torch.arange(n, device=pick.device), pick].reshape(*shape, self.latent_dim)

    def langevin_sample(self, shape: torch.Size) -> Tensor:
        """Draw ``(*shape, D)`` by unadjusted Langevin dynamics on log p_base + log r."""
        base, eps = self.base_prior(), self.langevin_step_size
        z = base.sample(shape)
        for _ in range(self.langevin_steps):
            z = z.detach().requires_grad_(True)
            with torch.enable_grad():
                energy = (base.log_prob(z) + self.log_ratio(z)).sum()
                (grad,) = torch.autograd.grad(energy, z)
            z = z + 0.5 * eps * grad + math.sqrt(eps) * torch.randn_like(z)
        return z.detach()

    def loss(self, x: Tensor, step: int, *, kl_weight: float = 1.0) -> LossOutput:
        self._log_normalizer = None  # the weights change at this step
        q_z = self.encode(x)
        z = q_z.rsample()  # (B, D)
        reconstruction = self.decode(z).log_prob(x)  # (B,)
        kl = kl_to_prior(q_z, self.base_prior(), z[None])  # (B,)
        loss = -(reconstruction - kl_weight * kl).mean()
        classifier_loss, accuracy = noise_contrastive_loss(
            self.classifier, z.detach(), self.base_prior().sample(z.shape[:1])
        )
        terms = {**_terms(reconstruction, kl), "classifier_loss": classifier_loss.detach()}
        terms["classifier_accuracy"] = accuracy.detach()
        return LossOutput(loss, terms, auxiliary_loss=classifier_loss)


def importance_log_normalizer(log_r: Tensor) -> dict[str, float]:
    """Return log mean exp(log_r) and its delta-method standard error sd(r) / (sqrt(n) mean r).

    Args:
        log_r: Log-ratios ``(n,)`` of draws from p_base.
    """
    log_r = log_r.double()
    n = log_r.numel()
    log_z = torch.logsumexp(log_r, 0) - math.log(n)
    relative = (log_r - log_z).exp()  # r_i / Z_hat, (n,)
    return {"value": log_z.item(), "stderr": relative.std().item() / math.sqrt(n), "n": n}


def noise_contrastive_loss(
    classifier: nn.Module, z_posterior: Tensor, z_base: Tensor
) -> tuple[Tensor, Tensor]:
    """Return the binary cross-entropy of D on posterior (1) vs base (0) codes, and its accuracy.

    Args:
        classifier: Codes ``(B, D)`` to logits ``(B, 1)``.
        z_posterior: Draws of the aggregate posterior, ``(B, D)``.
        z_base: Draws of p_base, ``(B, D)``.
    """
    logits = classifier(torch.cat([z_posterior, z_base])).squeeze(-1)  # (2B,)
    labels = torch.cat([torch.ones(len(z_posterior)), torch.zeros(len(z_base))]).to(logits)
    accuracy = ((logits > 0).to(labels) == labels).float().mean()
    return nn.functional.binary_cross_entropy_with_logits(logits, labels), accuracy


@register_model("ncp_vae")
def ncp_vae(
    *,
    data_shape: tuple[int, ...],
    latent_dim: int = 16,
    architecture: Architecture = Architecture(),
    likelihood: LikelihoodName = "bernoulli",
    classifier_hidden: tuple[int, ...] = (64, 64),
    classifier_lr: float = 1e-3,
    sampler: Sampler = "importance_resampling",
    resampling_proposals: int = 50,
    langevin_steps: int = 50,
    langevin_step_size: float = 0.01,
    normalizer_samples: int = 10_000,
) -> NCPVAE:
    """Build an NCP-VAE (Aneja et al. 2021): a VAE with a noise-contrastive reweighted prior."""
    counts = (resampling_proposals, langevin_steps, normalizer_samples)
    if min(counts) < 1 or classifier_lr <= 0 or langevin_step_size <= 0:
        raise ValueError(
            f"Expected positive `model.resampling_proposals`, `model.langevin_steps`, "
            f"`model.normalizer_samples`, `model.classifier_lr` and `model.langevin_step_size`, "
            f"but got {counts}, {classifier_lr} and {langevin_step_size}."
        )
    return NCPVAE(
        data_shape,
        latent_dim,
        architecture,
        likelihood,
        classifier_hidden=classifier_hidden,
        classifier_lr=classifier_lr,
        sampler=sampler,
        resampling_proposals=resampling_proposals,
        langevin_steps=langevin_steps,
        langevin_step_size=langevin_step_size,
        normalizer_samples=normalizer_samples,
    )


register_model_preset(
    "ncp_vae_paper",
    base="ncp_vae",
    doc="Build an NCP-VAE with the paper's classifier on a one-group VAE (Aneja et al. 2021).",
    latent_dim=64,
    classifier_hidden=(256, 256, 256),
    resampling_proposals=5000,
    normalizer_samples=100_000,
)
