"""VAE-GAN (Larsen et al. 2016): three losses, each reaching its own part, and its claim."""

import pytest
import torch

from benchmark.datasets import create_dataset
from benchmark.spec import TrainSpec
from benchmark.trainer import train
from registry import create_model, resolve_hyperparameters


def small_vae_gan(**settings):
    torch.manual_seed(0)
    return create_model("vae_gan", data_shape=(1, 8, 8), **settings)


def gradients(model, loss, part) -> list[torch.Tensor | None]:
    """Return d loss / d parameters of `part` (None where the loss does not reach one)."""
    params = list(part.parameters())
    return list(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True))


def test_each_of_the_three_losses_reaches_only_its_own_part():
    """Contract (Algorithm 1): the main loss trains encoder and decoder, not Dis; Dis's loss
    trains Dis only; gamma changes the decoder's gradient and not the encoder's (the encoder
    sees L_prior + L_llike, the decoder gamma L_llike - L_GAN)."""
    x = (torch.rand(6, 1, 8, 8) > 0.5).float()
    grads = {}
    for gamma in (0.0, 5.0):
        model = small_vae_gan(gamma=gamma)
        torch.manual_seed(1)
        output = model.loss(x, step=0)
        assert all(g is None for g in gradients(model, output.loss, model.discriminator))
        for part in (model.encoder, model.decoder):
            assert all(g is None for g in gradients(model, output.auxiliary_loss, part))
        assert all(
            g is not None for g in gradients(model, output.auxiliary_loss, model.discriminator)
        )
        grads[gamma] = {
            name: torch.cat([g.flatten() for g in gradients(model, output.loss, part)])
            for name, part in (("encoder", model.encoder), ("decoder", model.decoder))
        }
    torch.testing.assert_close(grads[0.0]["encoder"], grads[5.0]["encoder"])
    assert not torch.allclose(grads[0.0]["decoder"], grads[5.0]["decoder"])


def test_feature_error_is_half_the_squared_distance_of_layer_l():
    """Closed form (Eq. 7): L_llike of an image against itself is 0, and against another image
    it is 1/2 ||Dis_l(x) - Dis_l(x~)||^2 computed by hand from the convolutions."""
    model = small_vae_gan()
    x, other = torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        features = model.discriminate(x)[1]
        assert model.feature_error(features, x).abs().max() < 1e-6
        h_x, h_o = x, other
        for conv in model.discriminator.convs[: model.discriminator.feature_layer + 1]:
            h_x = torch.nn.functional.leaky_relu(conv(h_x), 0.2)
            h_o = torch.nn.functional.leaky_relu(conv(h_o), 0.2)
        expected = 0.5 * (h_x - h_o).flatten(1).pow(2).sum(-1)
        torch.testing.assert_close(model.feature_error(features, other), expected)


def test_flagged_as_not_trained_on_a_bound_and_presets_share_a_schema():
    """Contract: the objective is no bound on log p(x), so the model is flagged as the WAE is;
    small and paper presets share a schema; vector data is refused."""
    assert small_vae_gan().trains_on_likelihood_bound is False
    small, paper = (
        resolve_hyperparameters("vae_gan", {}),
        resolve_hyperparameters("vae_gan_paper", {}),
    )
    assert small.keys() == paper.keys() and small != paper
    assert paper["gamma"] == 1e-6 and paper["latent_dim"] == 128
    with pytest.raises(ValueError, match="image dataset"):
        create_model("vae_gan", data_shape=(16,))


def sharpness(images: torch.Tensor) -> float:
    """Return the mean of 2 |x - 1/2|: 1 for black-and-white images, 0 for uniform grey."""
    return (2 * (images - 0.5).abs()).mean().item()


def test_samples_are_sharper_than_a_pixel_vae():
    """Property (Larsen et al. 2016, Sec. 4.1: "the VAE-GAN produces sharper images than the
    VAE"): after 250 steps on binarised digits, the decoder means of VAE-GAN prior samples are
    closer to black-and-white than those of a VAE of the same encoder and decoder (measured,
    seeds 0-2: sharpness 0.935, 0.984, 0.956 against 0.563, 0.557, 0.562). Reconstructions are
    not tested: sharper in 3 of 3 seeds here (0.73, 0.84, 0.80 against 0.43, 0.40, 0.42), but
    in 2 of 3 with the trainer's earlier data order (0.72, 0.79, 0.11 against 0.45, 0.42, 0.40).

    Why it holds at this scale: a Bernoulli VAE's decoder mean is the pixel's posterior-averaged
    probability, grey wherever strokes vary across the codes a sample could be (blur); the
    discriminator tells grey pixels from the binarised data's 0/1 pixels from its first steps,
    so the generator loss pushes every decoded pixel towards 0 or 1.
    """
    dataset = create_dataset("digits")
    scores = {}
    for name in ("vae_gan", "vae"):
        torch.manual_seed(0)
        model = create_model(name, data_shape=dataset.data_shape)
        train(model, dataset, TrainSpec(steps=STEPS, checkpoint_every=0), seed=0, progress=False)
        torch.manual_seed(1)
        with torch.no_grad():
            scores[name] = sharpness(model.sample(360))
    assert scores["vae_gan"] > scores["vae"] + MARGIN, scores


STEPS, MARGIN = 250, 0.2
