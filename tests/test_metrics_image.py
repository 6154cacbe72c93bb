"""PSNR and SSIM for evaluation: known values, and SSIM against scikit-image's definitions."""

import pytest
import torch
from skimage.metrics import structural_similarity

from videoscene.metrics import image
from videoscene.prior import losses


def test_the_prior_trains_with_the_metrics_implementation():
    # One implementation: a training-time validation score and an evaluation score are the same number.
    assert losses.ssim is image.ssim


def test_psnr_known_values():
    x = torch.full((2, 3, 16, 16), 0.5)
    torch.testing.assert_close(image.psnr(x + 0.1, x), torch.full((2,), 20.0), atol=1e-4, rtol=0)  # MSE 0.01
    torch.testing.assert_close(image.psnr(x + 0.01, x), torch.full((2,), 40.0), atol=1e-3, rtol=0)  # MSE 1e-4
    # Identical images: capped at 100 dB (MSE floored at 1e-10) so means over scenes stay finite.
    assert image.psnr(x, x).tolist() == pytest.approx([100.0, 100.0])
    # The generated image is clamped like a saved frame: values above 1 do not count as error against 1.
    assert image.psnr(torch.full((3, 16, 16), 1.5), torch.ones(3, 16, 16)).item() == pytest.approx(100.0)


def test_ssim_identical_is_one_and_matches_skimage():
    generator = torch.Generator().manual_seed(0)
    truth = torch.rand(3, 40, 56, generator=generator, dtype=torch.float64)
    generated = (0.8 * truth + 0.2 * torch.rand(3, 40, 56, generator=generator, dtype=torch.float64)).clamp(
        0, 1
    )
    assert image.ssim(truth, truth).item() == pytest.approx(1.0, abs=1e-9)
    kwargs = dict(channel_axis=0, data_range=1.0, gaussian_weights=True, sigma=1.5)
    exact = structural_similarity(generated.numpy(), truth.numpy(), use_sample_covariance=False, **kwargs)
    assert image.ssim(generated, truth).item() == pytest.approx(exact, abs=1e-6)
    # pixelSplat/MVSplat's call (sample covariance, scikit-image's default) differs only slightly.
    pixelsplat = structural_similarity(generated.numpy(), truth.numpy(), **kwargs)
    assert image.ssim(generated, truth).item() == pytest.approx(pixelsplat, abs=5e-3)


def test_ssim_orders_degradations():
    generator = torch.Generator().manual_seed(1)
    truth = torch.rand(3, 32, 32, generator=generator)
    noise = torch.randn(3, 32, 32, generator=generator)
    scores = [image.ssim((truth + sigma * noise).clamp(0, 1), truth).item() for sigma in (0.02, 0.1, 0.3)]
    assert scores[0] > scores[1] > scores[2]
