"""Evidential sparsification of a discrete-latent CVAE (Itkina, Ivanovic, Senanayake,
Kochenderfer & Pavone, NeurIPS 2020).

The model is a conditional VAE whose latent is *categorical*: z is one of K latent classes
(a one-hot vector), with a prior network p(z|y) = softmax(W phi(y) + b) on the one-hot label y,
a recognition network q(z|x, y) and a generation network p(x|z, y). With K classes the ELBO is
computed exactly by enumerating z, and so is the likelihood,

    log p(x|y) = log sum_k p(z = k|y) p(x|z = k, y).

Post-hoc sparsification (Sec. 3). The last layer of the prior network is read as a
Dempster-Shafer evidence combination (Denoeux 2019): feature j gives class k the evidence
weight w_jk = beta_jk phi_j(y) + alpha_jk, where beta are the weights centred over classes and
alpha_jk = (beta_0k + sum_j' beta_j'k mu_j') / J - beta_jk mu_j spreads the centred bias over the
J features (mu_j: the mean of phi_j over the training labels). With w+_k and w-_k the sums of the
positive and negative parts, the mass of the singleton {k} is proportional to

    exp(-w-_k) (exp(w+_k) - 1 + prod_{l != k} (1 - exp(-w-_l))),

which is zero exactly when k has no positive evidence and some other class has no negative
evidence. Those classes are filtered out of p(z|y) and the rest renormalised. Nothing is
retrained: the sparsified model is the trained one with a smaller support.

With ``prior_sparsification: evidential`` the model uses the sparsified prior (and restricts
q(z|x, y) to its support, so the bound stays finite) whenever it is not training, i.e. in every
evaluation; training always uses the full prior, since the method is post-hoc. The label
frequencies behind mu are counted from the training batches.

Interface: as the CVAE (`registry.cvae`), bind labels with ``conditioned_on(y)``. z is discrete
(``continuous_latents = False``), so AIS and the inference gaps are n/a.

Presets: ``evidential_cvae`` (small: K = 16) and ``evidential_cvae_paper`` (K = 100 latent
classes and 200-200 MLPs [unverified]).

Equation and section numbers are cited from memory; vaebench's references do not hold the
paper's text [unverified].
"""

import math
from typing import Literal

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, OneHotCategoricalStraightThrough, kl_divergence

from registry._registry import register_model, register_model_preset
from registry.base import LatentVariableModel, LossOutput
from registry.cvae import ConditionalVAE
from registry.likelihoods import create_likelihood
from registry.trunks import Architecture, build_decoder, build_encoder
from registry.vae import LikelihoodName

SparsificationName = Literal["none", "evidential"]


class EvidentialCVAE(ConditionalVAE):
    """A CVAE with a categorical latent and an evidentially sparsifiable conditional prior.

    Args:
        data_shape: Shape of one observation.
        num_latent_classes: K.
        architecture: MLP trunks of the recognition and generation networks.
        prior_hidden: Width J of the prior network's feature layer phi(y).
        likelihood: Observation model.
        num_classes: Number of label classes C.
        prior_sparsification: ``evidential`` to evaluate with the sparsified prior.
        decoder_sees_label: Condition p(x|z, y) on y too; else p(x|z), and the latent classes
            must carry the label's modes.
    """

    continuous_latents = False

    def __init__(
        self,
        data_shape: tuple[int, ...],
        num_latent_classes: int,
        architecture: Architecture,
        prior_hidden: int,
        likelihood: LikelihoodName,
        num_classes: int,
        prior_sparsification: SparsificationName,
        decoder_sees_label: bool,
    ) -> None:
        # NOTE: skips ConditionalVAE.__init__ (Gaussian heads) but keeps its label handling.
        LatentVariableModel.__init__(self, data_shape, num_latent_classes)
        self.num_classes, self.sparsification = num_classes, prior_sparsification
        self.decoder_sees_label = decoder_sees_label
        self.likelihood = create_likelihood(likelihood, self.data_shape)
        inputs = (math.prod(self.data_shape) + num_classes,)
        self.encoder = build_encoder(inputs, architecture, num_latent_classes)
        self.decoder = build_decoder(
            self.data_shape,
            architecture,
            num_latent_classes + (num_classes if decoder_sees_label else 0),
            self.likelihood.num_params,
        )
        self.prior_features = nn.Sequential(nn.Linear(num_classes, prior_hidden), nn.ReLU())
        self.prior_logits = nn.Linear(prior_hidden, num_latent_classes)
        self.register_buffer("label_counts", torch.zeros(num_classes))

    def full_prior_logits(self, c: Tensor) -> Tensor:
        """Return the logits ``(..., K)`` of the trained prior p(z|c)."""
        return self.prior_logits(self.prior_features(c))

    def evidence_weights(self, c: Tensor) -> Tensor:
        """Return w_jk ``(..., J, K)``, the evidence of feature j for class k (Denoeux 2019).

        The sum over j is the centred logit, so the weights explain the softmax exactly.
        """
        phi = self.prior_features(c)  # (..., J)
        weight, bias = self.prior_logits.weight.T, self.prior_logits.bias  # (J, K), (K,)
        beta = weight - weight.mean(-1, keepdim=True)  # (J, K), centred over classes
        beta_0 = bias - bias.mean()  # (K,)
        total = self.label_counts.sum()
        # Never trained: uniform label frequencies (torch.where, so no host sync).
        frequencies = torch.where(
            total > 0, self.label_counts / total.clamp(min=1), 1 / self.num_classes
        )
        mu = frequencies @ self.prior_features(torch.eye(self.num_classes, device=c.device))  # (J,)
        alpha = (beta_0 + mu @ beta) / len(mu) - beta * mu[:, None]  # (J, K)
        return beta * phi[..., :, None] + alpha  # (..., J, K)

    def kept_classes(self, c: Tensor) -> Tensor:
        """Return which latent classes keep a non-zero singleton mass, ``(..., K)`` bool.

        Itkina et al. (2020), Sec. 3: m({k}) = 0 iff w+_k = 0 and some l != k has w-_l = 0.
        """
        weights = self.evidence_weights(c)
        positive = weights.clamp(min=0).sum(-2)  # (..., K)
        no_negative = ((-weights).clamp(min=0).sum(-2) == 0).int()  # (..., K)
        others_without_negative = no_negative.sum(-1, keepdim=True) - no_negative
        return (positive > 0) | (others_without_negative == 0)

    def sparsified(self) -> bool:
        """Return whether the model now uses the sparsified prior (evaluation only)."""
        return self.sparsification == "evidential" and not self.training

    def _restrict(self, logits: Tensor, c: Tensor) -> Tensor:
        if not self.sparsified():
            return logits
        return logits.masked_fill(~self.kept_classes(c), -math.inf)

    def conditional_prior(self, c: Tensor) -> Distribution:
        logits = self._restrict(self.full_prior_logits(c), c)
        return OneHotCategoricalStraightThrough(logits=logits)

    def conditional_encode(self, x: Tensor, c: Tensor) -> Distribution:
        self.check_input(x)
        inputs = torch.cat([x.flatten(start_dim=1), c], dim=-1)  # (B, prod(data_shape) + C)
        return OneHotCategoricalStraightThrough(logits=self._restrict(self.encoder(inputs), c))

    def conditional_decode(self, z: Tensor, c: Tensor) -> Distribution:
        if self.decoder_sees_label:
            return super().conditional_decode(z, c)
        return self.likelihood(self.decoder(z))

    def class_log_likelihoods(self, x: Tensor, c: Tensor) -> Tensor:
        """Return log p(x|z = k, c) for every latent class k, ``(K, B)``."""
        every_class = torch.eye(self.latent_dim, device=x.device)[:, None, :]  # (K, 1, K)
        every_class = every_class.expand(-1, len(x), -1)  # (K, B, K)
        return self.conditional_decode(every_class, c).log_prob(x)

    def conditional_log_likelihood(self, x: Tensor, c: Tensor) -> Tensor:
        """Return the exact log p(x|c) = log sum_k p(k|c) p(x|k, c), ``(B,)``."""
        log_prior = self.conditional_prior(c).logits.T  # (K, B), normalised by torch
        return torch.logsumexp(log_prior + self.class_log_likelihoods(x, c), dim=0)

    def conditional_loss(self, x: Tensor, c: Tensor, kl_weight: float = 1.0) -> LossOutput:
        """Return the negative conditional ELBO, with E_q log p(x|z, c) summed over z exactly."""
        if self.training:
            self.label_counts += c.detach().sum(0)
        q_z = self.conditional_encode(x, c)
        reconstruction = (q_z.probs.T * self.class_log_likelihoods(x, c)).sum(0)  # (B,)
        kl = kl_divergence(q_z, self.conditional_prior(c))
        rec, kl_mean = reconstruction.detach().mean(), kl.detach().mean()
        terms = {"elbo": rec - kl_mean, "reconstruction": rec, "kl": kl_mean}
        with torch.no_grad():
            terms["kept_classes"] = self.kept_classes(c).sum(-1).double().mean()
        return LossOutput(-(reconstruction - kl_weight * kl).mean(), terms)


def _build(
    data_shape: tuple[int, ...],
    num_latent_classes: int,
    architecture: Architecture,
    prior_hidden: int,
    likelihood: LikelihoodName,
    num_classes: int,
    prior_sparsification: SparsificationName,
    decoder_sees_label: bool,
) -> EvidentialCVAE:
    if architecture.trunk != "mlp":
        raise ValueError(
            f"Expected `model.architecture.trunk` to be 'mlp' for `evidential_cvae` (the "
            f"condition is concatenated to the input), but got {architecture.trunk!r}."
        )
    if min(num_latent_classes, num_classes) < 2 or prior_hidden < 1:
        raise ValueError(
            f"Expected `model.num_latent_classes` and `model.num_classes` >= 2 and "
            f"`model.prior_hidden` >= 1, but got {num_latent_classes}, {num_classes} and "
            f"{prior_hidden}."
        )
    return EvidentialCVAE(
        data_shape,
        num_latent_classes,
        architecture,
        prior_hidden,
        likelihood,
        num_classes,
        prior_sparsification,
        decoder_sees_label,
    )


@register_model("evidential_cvae")
def evidential_cvae(
    *,
    data_shape: tuple[int, ...],
    num_latent_classes: int = 16,
    architecture: Architecture = Architecture(),
    prior_hidden: int = 32,
    likelihood: LikelihoodName = "bernoulli",
    num_classes: int = 10,
    prior_sparsification: SparsificationName = "none",
    decoder_sees_label: bool = False,
) -> EvidentialCVAE:
    """Build a categorical-latent CVAE whose prior can be sparsified (Itkina et al. 2020)."""
    return _build(
        data_shape,
        num_latent_classes,
        architecture,
        prior_hidden,
        likelihood,
        num_classes,
        prior_sparsification,
        decoder_sees_label,
    )


register_model_preset(
    "evidential_cvae_paper",
    base="evidential_cvae",
    doc="Build the evidential CVAE with K = 100 latent classes and 200-200 MLPs [unverified].",
    num_latent_classes=100,
    prior_hidden=200,
    architecture=Architecture(hidden=(200, 200)),
)
