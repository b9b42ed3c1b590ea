"""AASAE (Falcon et al. 2021): augmentations in, originals out, no KL, flagged like the WAE."""

import pytest
import torch

from registry import create_model
from registry.aasae import random_translation


def test_random_translation_is_a_crop_of_the_zero_padded_image():
    """Reference: every translated image equals one of the (2s + 1)^2 crops of the padded
    image, computed by explicit slicing; with s = 0 the image is unchanged."""
    torch.manual_seed(0)
    x = torch.rand(20, 1, 5, 6)
    shifted = random_translation(x, 2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):
        crops = [padded[i, :, r : r + 5, c : c + 6] for r in range(5) for c in range(5)]
        assert any(torch.equal(shifted[i], crop) for crop in crops), i
    assert not torch.equal(shifted, x)  # 20 images: some shift is non-zero
    assert torch.equal(random_translation(x, 0), x)


def test_pixel_flips_happen_at_their_rate():
    """Property: with shifts off, a binary image's pixels change with `flip_probability`
    (0.2 +- 4 standard errors over 64,000 pixels)."""
    torch.manual_seed(1)
    model = create_model("aasae", data_shape=(1, 8, 8), max_shift=0, flip_probability=0.2)
    x = (torch.rand(1000, 1, 8, 8) > 0.5).float()
    changed = (model.augment(x) != x).double().mean().item()
    assert abs(changed - 0.2) < 4 * (0.2 * 0.8 / 64_000) ** 0.5


def test_loss_reconstructs_the_original_from_the_augmented_view(monkeypatch):
    """Closed form: the loss is -log p(x|z) of the *original* x with z from q(z|a(x)), and no
    KL term: it equals the reconstruction term computed by hand with the same draws."""
    torch.manual_seed(2)
    model = create_model("aasae", data_shape=(1, 8, 8), latent_dim=3)
    x = (torch.rand(6, 1, 8, 8) > 0.5).float()
    view = 1.0 - x  # a deterministic "augmentation" that the encoder must see
    monkeypatch.setattr(model, "augment", lambda batch: view)
    torch.manual_seed(3)
    loss = model.loss(x, 0).loss
    torch.manual_seed(3)
    z = model.encode(view).rsample()
    expected = -model.decode(z).log_prob(x).mean()
    torch.testing.assert_close(loss, expected)
    assert model.trains_on_likelihood_bound is False
    with pytest.raises(ValueError, match="flip_probability"):
        create_model("aasae", data_shape=(1, 8, 8), flip_probability=0.5)
