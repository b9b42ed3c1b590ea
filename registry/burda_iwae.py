"""The VAE and IWAE of Burda, Grosse & Salakhutdinov (ICLR 2016), as released (yburda/iwae).

One or two stochastic layers of diagonal Gaussians, each computed by a tanh MLP with the mean
linear and the standard deviation exp(linear) (``iwae.py``, ``GaussianStochasticLayer``):

- 1 layer: q 784-200-200-50, p 50-200-200-784;
- 2 layers: q 784-200-200-100 (z1) -100-100-50 (z2), p 50-100-100-100 (z1) -200-200-784.

The posterior is bottom-up, q(z1|x) q(z2|z1); the prior N(0, I) is on the top layer and the
output is Bernoulli. Weights are Glorot-uniform, biases zero, and the output bias starts at the
logit of the training mean (`initialize_from_data`). Both objectives use k samples of the log
weights log w = log p(x, z) - log q(z|x) (Eq. 8): the VAE maximises their mean (its k-sample ELBO
estimate, no analytic KL, as in the released code), the IWAE log (1/k) sum w. At k = 1 they are
one objective.

Metrics see one vector z = (z1, z2): the layers in inference order, bottom first.
"""

import math
from typing import Literal

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from registry._registry import register_model
from registry.base import LatentDraws, LatentVariableModel, LossOutput, closed_form_kl
from registry.estimators import (
    log_importance_weights,
    normal_kl_to_standard_normal,
    normal_log_prob,
    standard_normal_log_prob,
)
from registry.hierarchical import AncestralDistribution

# (latent sizes bottom first, q hidden widths per layer, p hidden widths per layer top first)
ARCHITECTURES = {
    1: ((50,), ((200, 200),), ((200, 200),)),
    2: ((100, 50), ((200, 200), (100, 100)), ((100, 100), (200, 200))),
}
BIAS_CLIP = 1e-3  # the training mean is clipped to [1e-3, 1 - 1e-3] before its logit


def tanh_mlp(widths: tuple[int, ...]) -> nn.Sequential:
    """Return Linear + tanh layers through `widths` (tanh after every layer)."""
    layers: list[nn.Module] = []
    for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(w_in, w_out), nn.Tanh()]
    return nn.Sequential(*layers)


class GaussianLayer(nn.Module):
    """A diagonal Gaussian whose mean is linear and whose std is exp(linear) of a tanh MLP."""

    def __init__(self, n_in: int, hidden: tuple[int, ...], n_out: int) -> None:
        super().__init__()
        self.trunk = tanh_mlp((n_in, *hidden))
        self.mean = nn.Linear(hidden[-1], n_out)
        self.log_sigma = nn.Linear(hidden[-1], n_out)

    def forward(self, inputs: Tensor) -> Distribution:
        return Independent(Normal(*self.loc_scale(inputs)), 1)

    def loc_scale(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """Return the Gaussian's mean and standard deviation, each ``(..., n_out)``."""
        h = self.trunk(inputs)
        return self.mean(h), self.log_sigma(h).exp()


class BurdaIWAE(LatentVariableModel):
    """The Table 1 models of Burda et al. (2016): `objective` ``vae`` or ``iwae`` with k samples."""

    def __init__(
        self, data_shape: tuple[int, ...], layers: int, objective: str, num_samples: int
    ) -> None:
        sizes, q_hidden, p_hidden = ARCHITECTURES[layers]
        super().__init__(data_shape, sum(sizes))
        self.sizes, self.objective, self.num_samples = sizes, objective, num_samples
        inputs = (math.prod(data_shape), *sizes[:-1])
        self.q_layers = nn.ModuleList(
            GaussianLayer(n_in, hidden, n_out)
            for n_in, hidden, n_out in zip(inputs, q_hidden, sizes, strict=True)
        )
        # p(z_l | z_{l+1}) for the layers under the top, top first; then p(x | z1).
        self.p_latent = nn.ModuleList(
            GaussianLayer(sizes[i + 1], p_hidden[len(sizes) - 2 - i], sizes[i])
            for i in reversed(range(len(sizes) - 1))
        )
        self.p_x = nn.Sequential(
            tanh_mlp((sizes[0], *p_hidden[-1])), nn.Linear(p_hidden[-1][-1], inputs[0])
        )
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)  # Glorot & Bengio (2010), as released
                nn.init.zeros_(module.bias)

    def initialize_from_data(self, x_train: Tensor) -> None:
        mean = x_train.flatten(1).mean(0).clamp(BIAS_CLIP, 1 - BIAS_CLIP)  # (784,)
        with torch.no_grad():
            self.p_x[-1].bias.copy_(torch.logit(mean))

    def split(self, z: Tensor) -> list[Tensor]:
        """Split flattened z ``(..., D)`` into the layers, bottom first."""
        return list(z.split(self.sizes, dim=-1))

    def _top_prior(self, like: Tensor) -> Distribution:
        loc = torch.zeros(self.sizes[-1], device=like.device, dtype=like.dtype)
        return Independent(Normal(loc, torch.ones_like(loc)), 1)

    def log_prior(self, z: Tensor) -> Tensor:
        layers = self.split(z)
        log_p = self._top_prior(z).log_prob(layers[-1])
        for i, p_layer in zip(reversed(range(len(layers) - 1)), self.p_latent, strict=True):
            log_p = log_p + p_layer(layers[i + 1]).log_prob(layers[i])
        return log_p

    def decode(self, z: Tensor) -> Distribution:
        logits = self.p_x(self.split(z)[0])  # (..., B, 784)
        logits = logits.reshape(*logits.shape[:-1], *self.data_shape)  # (..., B, *data_shape)
        return Independent(Bernoulli(logits=logits), len(self.data_shape))

    def draw_latents(self, x: Tensor, num_samples: int) -> LatentDraws:
        """Draw the layers bottom-up, z1 ~ q(z1|x), z2 ~ q(z2|z1), with log q and log p(z).

        One layer is a diagonal Gaussian under N(0, I), so its KL is given in closed form (when
        read). The densities are taken in closed form (`registry.estimators.normal_log_prob`:
        the same bits as the distributions, which cost a tenth of a protocol step); with
        torch.distributions' argument validation on (the trainer's first step, evaluation)
        the distributions are built, so bad parameters raise as they always have.
        """
        if Distribution._validate_args:
            return self._draw_latents_from_distributions(x, num_samples)
        self.check_input(x)
        h, layers, log_q = x.flatten(1), [], 0.0  # h: (B, 784)
        for i, q_layer in enumerate(self.q_layers):
            loc, scale = q_layer.loc_scale(h)  # (B, D_1) for z1, then (K, B, D_i)
            shape = (num_samples, *loc.shape) if i == 0 else loc.shape
            z = loc + torch.randn(shape, dtype=loc.dtype, device=loc.device) * scale  # (K, B, D_i)
            layers.append(z)
            log_q = log_q + normal_log_prob(z, loc, scale)  # (K, B)
            h = z
        kl = (lambda: normal_kl_to_standard_normal(loc, scale)) if len(layers) == 1 else None
        z = torch.cat(layers, dim=-1)  # (K, B, D)
        return LatentDraws(z, log_q, log_prior=self._log_prior_closed_form(layers), kl=kl)

    def _log_prior_closed_form(self, layers: list[Tensor]) -> Tensor:
        """Return log p(z) of `log_prior` for the layers (bottom first) without distributions."""
        log_p = standard_normal_log_prob(layers[-1])
        for i, p_layer in zip(reversed(range(len(layers) - 1)), self.p_latent, strict=True):
            log_p = log_p + normal_log_prob(layers[i], *p_layer.loc_scale(layers[i + 1]))
        return log_p

    def _draw_latents_from_distributions(self, x: Tensor, num_samples: int) -> LatentDraws:
        self.check_input(x)
        h = x.flatten(1)  # (B, 784)
        layers, log_q = [], 0.0
        for i, q_layer in enumerate(self.q_layers):
            q = q_layer(h)
            z = q.rsample((num_samples,)) if i == 0 else q.rsample()  # (K, B, D_i)
            layers.append(z)
            log_q = log_q + q.log_prob(z)
            h = z
        kl = closed_form_kl(q, self.prior()) if len(self.q_layers) == 1 else None
        return LatentDraws(torch.cat(layers, dim=-1), log_q, kl=kl)  # (K, B, D), (K, B)

    def encode(self, x: Tensor) -> Distribution:
        self.check_input(x)
        flat = x.flatten(1)  # (B, 784)
        if len(self.q_layers) == 1:
            return self.q_layers[0](flat)

        def draw(shape: torch.Size) -> Tensor:
            return self.sample_posterior(x, math.prod(shape[:-1]) or 1)[0].reshape(*shape, -1)

        def density(z: Tensor) -> Tensor:
            layers, inputs = self.split(z), [flat, *self.split(z)[:-1]]
            terms = zip(self.q_layers, inputs, layers, strict=True)
            return sum(q(h).log_prob(z_l) for q, h, z_l in terms)

        def location() -> Tensor:
            means, h = [], flat
            for q_layer in self.q_layers:
                h = q_layer(h).mean  # the plug-in mean of each layer given the one below
                means.append(h)
            return torch.cat(means, dim=-1)

        return AncestralDistribution(
            draw=draw,
            density=density,
            location=location,
            batch_shape=torch.Size([len(x)]),
            event_size=self.latent_dim,
        )

    def prior(self) -> Distribution:
        like = self.p_x[-1].bias
        if not self.p_latent:
            return self._top_prior(like)

        def draw(shape: torch.Size) -> Tensor:
            layers = [self._top_prior(like).sample(shape)]
            for p_layer in self.p_latent:
                layers.insert(0, p_layer(layers[0]).sample())
            return torch.cat(layers, dim=-1)

        def location() -> Tensor:
            layers = [torch.zeros(self.sizes[-1], device=like.device)]
            for p_layer in self.p_latent:
                layers.insert(0, p_layer(layers[0]).mean)
            return torch.cat(layers, dim=-1)

        return AncestralDistribution(
            draw=draw,
            density=self.log_prior,
            location=location,
            batch_shape=torch.Size(),
            event_size=self.latent_dim,
        )

    def loss(self, x: Tensor, step: int, *, kl_weight: float = 1.0) -> LossOutput:
        # NOTE: the protocol has no KL warm-up; `kl_weight` is accepted and ignored.
        log_w = log_importance_weights(
            self, x, num_samples=self.num_samples, chunk_size=self.num_samples
        )  # (k, B)
        elbo = log_w.mean(0)  # (B,)
        bound = torch.logsumexp(log_w, dim=0) - math.log(self.num_samples)  # (B,)
        objective = elbo if self.objective == "vae" else bound
        terms = {"elbo": elbo.detach().mean(), "iwae_bound": bound.detach().mean()}
        return LossOutput(-objective.mean(), terms)


@register_model("burda_iwae")
def burda_iwae(
    *,
    data_shape: tuple[int, ...],
    stochastic_layers: int = 1,
    objective: Literal["vae", "iwae"] = "iwae",
    num_samples: int = 1,
) -> BurdaIWAE:
    """Build the VAE or IWAE of Burda et al. (2016) Table 1 with 1 or 2 stochastic layers."""
    if stochastic_layers not in ARCHITECTURES:
        raise ValueError(
            f"Expected `model.stochastic_layers` to be 1 or 2 (Burda et al. 2016), "
            f"but got {stochastic_layers!r}."
        )
    if num_samples < 1:
        raise ValueError(f"Expected `model.num_samples` to be >= 1, but got {num_samples}.")
    return BurdaIWAE(data_shape, stochastic_layers, objective, num_samples)
