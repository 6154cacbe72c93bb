"""PSNR and SSIM for evaluation: known values, and SSIM against scikit-image's definitions."""

import math

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


def test_ssim_map_averages_to_ssim_and_is_the_valid_region():
    generator = torch.Generator().manual_seed(2)
    truth, generated = torch.rand(2, 3, 24, 30, generator=generator).unbind(0)
    values = image.ssim_map(generated, truth)
    assert values.shape == (3, 14, 20)  # 10 px smaller: only where the 11x11 window fits
    torch.testing.assert_close(values.mean(), image.ssim(generated, truth))


def test_masked_psnr_pools_the_squared_error_over_masked_pixels():
    truth = torch.full((2, 3, 16, 16), 0.5)
    generated = truth.clone()
    mask = torch.zeros(2, 16, 16, dtype=torch.bool)
    mask[0, :4] = True  # 64 pixels of frame 0, off by 0.1: squared error 0.01
    mask[1] = True  # all 256 pixels of frame 1, exact
    generated[0, :, :4] += 0.1
    generated[0, :, 8:] = 0.0  # outside the mask: does not count
    # Pooled: 64 x 0.01 over 320 pixels = 0.002, i.e. 26.99 dB; a mean of per-frame PSNRs would be 60 dB.
    assert image.masked_psnr(generated, truth, mask).item() == pytest.approx(
        -10 * math.log10(0.002), abs=1e-3
    )
    assert image.masked_psnr(generated[0], truth[0], mask[0]).item() == pytest.approx(20.0, abs=1e-3)
    # A full mask on one image is plain PSNR; identical regions score 100 dB like psnr; an empty mask is NaN.
    full = torch.ones(16, 16, dtype=torch.bool)
    torch.testing.assert_close(
        image.masked_psnr(generated[0], truth[0], full), image.psnr(generated[0], truth[0])
    )
    assert image.masked_psnr(truth, truth, mask).item() == pytest.approx(100.0)
    assert math.isnan(image.masked_psnr(generated, truth, torch.zeros_like(mask)).item())


def test_masked_ssim_is_the_ssim_map_over_masked_window_centres():
    generator = torch.Generator().manual_seed(3)
    truth = torch.rand(2, 3, 24, 30, generator=generator)
    generated = (truth + 0.1 * torch.randn(2, 3, 24, 30, generator=generator)).clamp(0, 1)
    full = torch.ones(2, 24, 30, dtype=torch.bool)
    torch.testing.assert_close(image.masked_ssim(generated, truth, full), image.ssim(generated, truth).mean())
    left = full.clone()
    left[..., 15:] = False  # window centres in columns 5..14: map columns 0..9
    expected = image.ssim_map(generated, truth).mean(dim=-3)[..., :10].mean()
    torch.testing.assert_close(image.masked_ssim(generated, truth, left), expected)
    assert image.masked_ssim(truth, truth, left).item() == pytest.approx(1.0)
    border = torch.zeros_like(full)
    border[..., :5] = True  # no window fits around these pixels
    assert math.isnan(image.masked_ssim(generated, truth, border).item())
