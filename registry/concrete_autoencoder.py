"""The concrete autoencoder (Abid, Balin & Zou, ICML 2019): differentiable feature selection.

The encoder is a *concrete selector layer*: k neurons, each holding logits alpha_i over the d
input features. In training, neuron i outputs u_i = m_i . x with m_i ~ Concrete(alpha_i, T), a
relaxed one-hot sample (Gumbel-softmax; Sec. 3, Eq. 2), and the temperature T is annealed
exponentially from T_0 to T_B over training (Sec. 3.1: T(b) = T_0 (T_B / T_0)^(b / B)). At test
time each neuron picks its argmax feature, so the code is x restricted to k selected features.
A decoder reconstructs all of x from them. The loss is the reconstruction error only, here
-log p(x|z) with the zoo's likelihoods (the paper: mean squared error, i.e. ``gaussian_fixed``).

No prior, no likelihood. The model describes p(x|x_S) for the selected set S and nothing about
x_S itself, so it defines no p(z) and no bound on log p(x): ``prior()`` raises
`LikelihoodUndefined` (``has_prior = False``), and so does log q(z|x), which has no density
(a point mass at test time). The ELBO, NLL, AIS, BDMC, gap, collapse and sample-quality metrics
are therefore n/a with that reason; active units and linear probes, which need only the code,
are defined. The Gumbel noise of one draw is shared by the batch, as in the authors' code.

``selection: random`` replaces the learned selector by k features drawn uniformly without
replacement with ``selection_seed``, the same decoder and budget: the baseline of the paper's
claim that learned selection reconstructs better than random selection.

Presets: ``concrete_autoencoder`` (small: k = 16, anneal over 1,000 steps) and
``concrete_autoencoder_paper`` (MNIST: k = 50, T_0 = 10, T_B = 0.01, a decoder of two 320-unit
LeakyReLU layers and the squared-error loss, as recalled from Sec. 4; its 300 epochs of batch
256 give the annealing length [unverified]).

Equation and section numbers are cited from memory; vaebench's references do not hold the
paper's text [unverified].
"""

import math
from typing import Literal

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, constraints

from registry._registry import register_model, register_model_preset
from registry.base import LatentVariableModel, LikelihoodUndefined, LossOutput
from registry.likelihoods import create_likelihood
from registry.trunks import Architecture, build_decoder
from registry.vae import LikelihoodName

NO_LIKELIHOOD = (
    "the concrete autoencoder defines no prior p(z) and no density q(z|x): its code is k "
    "selected input features and it models only the reconstruction of x from them (Abid et al. "
    "2019), so there is no likelihood of x and no bound on it."
)
SMALL_ARCHITECTURE = Architecture(hidden=(200, 200))
PAPER_ARCHITECTURE = Architecture(hidden=(320, 320), activation="leaky_relu")


class SelectedFeatures(Distribution):
    """The code of a concrete selector: x at k selected features, relaxed in training.

    Args:
        x: Flattened inputs ``(B, d)``.
        indices: The selected features ``(k,)`` (argmax of the logits, or the random choice).
        logits: Selector logits ``(k, d)``; None for a hard selection.
        temperature: Concrete temperature T of relaxed samples (a float or a 0-dim tensor).
    """

    arg_constraints: dict[str, constraints.Constraint] = {}
    support = constraints.real
    has_rsample = True

    def __init__(
        self, x: Tensor, indices: Tensor, logits: Tensor | None, temperature: float | Tensor
    ) -> None:
        self.x, self.indices, self.logits, self.temperature = x, indices, logits, temperature
        super().__init__(x.shape[:1], indices.shape, validate_args=False)

    @property
    def mean(self) -> Tensor:
        """Return the hard selection x_S ``(B, k)``, the code the trained encoder outputs."""
        return self.x[:, self.indices]

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        """Draw u = m . x with m ~ Concrete(alpha, T) per neuron (Eq. 2), ``(*S, B, k)``."""
        if self.logits is None:
            return self.mean.expand(*sample_shape, *self.mean.shape)
        uniform = torch.rand(*sample_shape, *self.logits.shape, device=self.x.device)
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-10, 1.0)))  # (*S, k, d)
        weights = torch.softmax((self.logits + gumbel) / self.temperature, dim=-1)
        return torch.einsum("bd,...kd->...bk", self.x, weights)

    def log_prob(self, value: Tensor) -> Tensor:
        raise LikelihoodUndefined(NO_LIKELIHOOD)


class ConcreteAutoencoder(LatentVariableModel):
    """A concrete selector of k input features and a decoder of x from them.

    Args:
        data_shape: Shape of one observation; d = prod(data_shape) features.
        num_selected: k.
        architecture: MLP decoder from the k features.
        likelihood: Observation model of the reconstruction.
        selection: ``concrete`` (learned) or ``random`` (the paper's baseline).
        start_temperature: T_0.
        end_temperature: T_B.
        anneal_steps: Steps B over which T decays exponentially; T_B afterwards.
        selection_seed: Seed of the random selection.
    """

    trains_on_likelihood_bound = False
    has_prior = False

    def __init__(
        self,
        data_shape: tuple[int, ...],
        num_selected: int,
        architecture: Architecture,
        likelihood: LikelihoodName,
        selection: Literal["concrete", "random"],
        start_temperature: float,
        end_temperature: float,
        anneal_steps: int,
        selection_seed: int,
    ) -> None:
        super().__init__(data_shape, num_selected)
        num_features = math.prod(self.data_shape)
        self.observation = create_likelihood(likelihood, self.data_shape)
        self.decoder = build_decoder(
            self.data_shape, architecture, num_selected, self.observation.num_params
        )
        self.schedule = (start_temperature, end_temperature, anneal_steps)
        self.register_buffer("temperature", torch.tensor(start_temperature))
        self.logits: nn.Parameter | None = None
        if selection == "concrete":
            # Small random logits: every neuron starts near the uniform selection (Sec. 3).
            self.logits = nn.Parameter(1e-2 * torch.randn(num_selected, num_features))
        generator = torch.Generator().manual_seed(selection_seed)
        features = torch.randperm(num_features, generator=generator)[:num_selected]
        self.register_buffer("random_indices", features if selection == "random" else None)

    def temperature_at(self, step: int) -> float:
        """Return T(step) = T_0 (T_B / T_0)^(min(step, B) / B) (Abid et al. 2019, Sec. 3.1)."""
        start, end, steps = self.schedule
        return start * (end / start) ** (min(step, steps) / steps)

    def selected_features(self) -> Tensor:
        """Return the indices ``(k,)`` of the selected input features (flattened order)."""
        return self.random_indices if self.logits is None else self.logits.argmax(-1)

    def prior(self) -> Distribution:
        raise LikelihoodUndefined(NO_LIKELIHOOD)

    def encode(self, x: Tensor) -> SelectedFeatures:
        self.check_input(x)
        relaxed = self.logits if self.training else None  # the test-time selection is hard
        return SelectedFeatures(
            x.flatten(start_dim=1), self.selected_features(), relaxed, self.temperature
        )

    def decode(self, z: Tensor) -> Distribution:
        return self.observation(self.decoder(z))

    def loss(self, x: Tensor, step: int, *, kl_weight: float = 1.0) -> LossOutput:
        """Return the mean reconstruction error -log p(x|u); `kl_weight` is ignored (no KL)."""
        self.temperature.fill_(self.temperature_at(step))
        reconstruction = self.decode(self.encode(x).rsample()).log_prob(x)  # (B,)
        chosen = torch.zeros(math.prod(self.data_shape), device=x.device)
        terms = {  # detached tensors: the trainer reads them without a host sync per step
            "reconstruction": reconstruction.detach().mean(),
            "temperature": self.temperature.clone(),
            "distinct_features": chosen.index_fill_(0, self.selected_features(), 1.0).sum(),
        }
        if self.logits is not None:  # the paper's convergence check: mean max probability
            terms["mean_max_probability"] = self.logits.detach().softmax(-1).amax(-1).mean()
        return LossOutput(-reconstruction.mean(), terms)


def _build(
    data_shape: tuple[int, ...],
    num_selected: int,
    architecture: Architecture,
    likelihood: LikelihoodName,
    selection: Literal["concrete", "random"],
    start_temperature: float,
    end_temperature: float,
    anneal_steps: int,
    selection_seed: int,
) -> ConcreteAutoencoder:
    if architecture.trunk != "mlp":
        raise ValueError(
            f"Expected `model.architecture.trunk` to be 'mlp' for `concrete_autoencoder` (the "
            f"decoder reads k selected features), but got {architecture.trunk!r}."
        )
    # NOTE: k > d is allowed for the concrete selector, whose neurons may pick the same feature.
    limit = math.prod(data_shape) if selection == "random" else math.inf
    if not 1 <= num_selected <= limit:
        raise ValueError(
            f"Expected `model.num_selected` >= 1, and at most the {limit} input features for "
            f"`selection: random` (drawn without replacement), but got {num_selected}."
        )
    if not 0 < end_temperature <= start_temperature or anneal_steps < 1:
        raise ValueError(
            f"Expected 0 < `model.end_temperature` <= `model.start_temperature` and "
            f"`model.anneal_steps` >= 1, but got {end_temperature}, {start_temperature} and "
            f"{anneal_steps}."
        )
    return ConcreteAutoencoder(
        data_shape,
        num_selected,
        architecture,
        likelihood,
        selection,
        start_temperature,
        end_temperature,
        anneal_steps,
        selection_seed,
    )


@register_model("concrete_autoencoder")
def concrete_autoencoder(
    *,
    data_shape: tuple[int, ...],
    num_selected: int = 16,
    architecture: Architecture = SMALL_ARCHITECTURE,
    likelihood: LikelihoodName = "bernoulli",
    selection: Literal["concrete", "random"] = "concrete",
    start_temperature: float = 10.0,
    end_temperature: float = 0.01,
    anneal_steps: int = 1000,
    selection_seed: int = 0,
) -> ConcreteAutoencoder:
    """Build a concrete autoencoder (Abid et al. 2019); no prior, so likelihood metrics are n/a."""
    return _build(
        data_shape,
        num_selected,
        architecture,
        likelihood,
        selection,
        start_temperature,
        end_temperature,
        anneal_steps,
        selection_seed,
    )


register_model_preset(
    "concrete_autoencoder_paper",
    base="concrete_autoencoder",
    doc="Build the concrete autoencoder of the paper's MNIST experiment (k = 50, MSE loss).",
    num_selected=50,
    architecture=PAPER_ARCHITECTURE,
    likelihood="gaussian_fixed",
    anneal_steps=70_500,  # 300 epochs x 235 batches of 256 [unverified]
)
