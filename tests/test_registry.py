"""Tests of the model registry and of the model contract every metric relies on."""

import pytest
import torch
from torch.distributions import Distribution

from registry import create_model, list_models, register_model
from registry._registry import MODELS
from registry.base import LikelihoodUndefined
from registry.estimators import log_importance_weights


def build(name: str):
    """Build `name` on 8x8 images, or on 16-d vectors for vector-only models."""
    try:
        return create_model(name, data_shape=(1, 8, 8)), (1, 8, 8)
    except ValueError:
        return create_model(name, data_shape=(16,)), (16,)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("name", list_models())
def test_model_contract_shapes(name):
    """Contract: prior/encode/decode return distributions of the documented shapes."""
    model, shape = build(name)
    x = torch.rand(4, *shape).round()
    q_z = model.encode(x)
    assert isinstance(q_z, Distribution)
    assert q_z.batch_shape == (4,) and q_z.event_shape == (model.latent_dim,)
    z = q_z.rsample((3,))  # (K, B, D)
    p_x = model.decode(z)
    assert p_x.batch_shape == (3, 4) and tuple(p_x.event_shape) == shape
    if not model.has_prior:  # no p(z) (concrete autoencoder): densities raise with a reason
        with pytest.raises(LikelihoodUndefined):
            model.prior()
        with pytest.raises(LikelihoodUndefined):
            log_importance_weights(model, x, num_samples=3, chunk_size=3)
        return
    assert isinstance(model.prior(), Distribution)
    assert model.prior().event_shape == (model.latent_dim,)
    assert log_importance_weights(model, x, num_samples=3, chunk_size=3).shape == (3, 4)


@pytest.mark.parametrize("name", list_models())
def test_model_contract_finite_and_differentiable(name):
    """Contract: finite log-probs and loss, and gradients reach the encoder through rsample."""
    model, shape = build(name)
    x = torch.rand(4, *shape).round()
    if model.has_prior:
        assert torch.isfinite(log_importance_weights(model, x, num_samples=2, chunk_size=2)).all()
    output = model.loss(x, step=0)
    assert output.loss.dim() == 0 and torch.isfinite(output.loss)
    output.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    q_z = model.encode(x)
    q_z.rsample().sum().backward()  # reparameterised: gradients flow into encoder parameters


@pytest.mark.parametrize("name", list_models())
def test_model_rejects_wrong_input_shape(name):
    """Contract: a batch of the wrong shape gets an error naming the expected shape."""
    model, shape = build(name)
    with pytest.raises(ValueError, match="Expected `x` to have shape"):
        model.encode(torch.rand(4, 3, *shape))


def test_unknown_model_suggests_close_names():
    """Property: a typo is answered with did-you-mean and the listing command."""
    with pytest.raises(ValueError, match=r"Did you mean 'iwae'.*vaebench list models"):
        create_model("iwea", data_shape=(1, 8, 8))


def test_duplicate_registration_raises():
    """Property: registering a taken name raises instead of silently replacing the model."""
    with pytest.raises(ValueError, match="already registered"):

        @register_model("vae")
        def another_vae(*, data_shape: tuple[int, ...]):  # pragma: no cover
            raise AssertionError


def test_factory_parameters_must_be_typed_keyword_only():
    """Property: an untyped or positional factory parameter is refused at registration."""
    with pytest.raises(TypeError, match="keyword-only"):
        MODELS.register("bad_positional")(lambda data_shape: None)


def test_list_models_wildcard_and_natural_sort():
    """Property: wildcards filter and names sort naturally."""
    assert "vae" in list_models() and "iwae" not in list_models("*beta*")
    assert list_models("*vae") == sorted(list_models("*vae"))


def test_hyperparameter_type_errors_name_the_key():
    """Property: wrong types and unknown keys name the offending spec path."""
    with pytest.raises(TypeError, match="model.latent_dim"):
        create_model("vae", data_shape=(1, 8, 8), latent_dim="eight")
    with pytest.raises(ValueError, match="among"):
        create_model("vae", data_shape=(1, 8, 8), latentdim=8)
    with pytest.raises(TypeError, match="model.latent_dim"):
        create_model("vae", data_shape=(1, 8, 8), latent_dim=True)


def test_presets_are_the_base_factory_with_other_defaults():
    """Property: a preset resolves to its own defaults, builds through the base factory, accepts
    overrides, and refuses defaults the base does not have (on a private registry)."""
    from registry._registry import Registry

    registry = Registry("model")

    @registry.register("toy")
    def toy(*, width: int = 2, depth: int = 1) -> tuple[int, int]:
        return width, depth

    registry.register_preset("toy_paper", base="toy", doc="The paper's toy.", width=8)
    assert registry.resolve("toy_paper", {}) == {"width": 8, "depth": 1}
    assert registry.create("toy_paper") == (8, 1) and registry.create("toy_paper", depth=3) == (
        8,
        3,
    )
    assert registry.create("toy") == (2, 1)
    with pytest.raises(ValueError, match="not parameters"):
        registry.register_preset("toy_bad", base="toy", doc="x", breadth=3)
    with pytest.raises(ValueError, match="already registered"):
        registry.register_preset("toy_paper", base="toy", doc="x", width=9)
