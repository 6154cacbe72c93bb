"""Photometric losses: SSIM against scikit-image, PSNR, LPIPS loading by path (never downloaded)."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from shape_checks import unchecked
from skimage.metrics import structural_similarity

from videoscene.errors import VideoSceneError
from videoscene.metrics.image import psnr, ssim
from videoscene.metrics.lpips import LPIPS
from videoscene.prior.losses import PhotometricLoss, PhotometricLossConfig


def skimage_ssim(x: torch.Tensor, y: torch.Tensor) -> float:
    return structural_similarity(
        x.double().numpy(),
        y.double().numpy(),
        channel_axis=0,
        data_range=1.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )


@pytest.mark.parametrize("size", [(32, 48), (23, 40)])
def test_ssim_matches_skimage(size):
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(3, *size, generator=generator, dtype=torch.float64)
    # Correlated pair (a blurred, noisy copy) so SSIM is far from 0 and from 1.
    y = (0.7 * x + 0.3 * torch.rand(3, *size, generator=generator, dtype=torch.float64)).clamp(0, 1)
    for a, b in ((x, y), (x, torch.rand(3, *size, generator=generator, dtype=torch.float64))):
        ours = ssim(a, b).item()
        assert ours == pytest.approx(skimage_ssim(a, b), abs=1e-6)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-9)


def test_ssim_is_batched_and_differentiable():
    x = torch.rand(2, 4, 3, 24, 24, requires_grad=True)
    y = torch.rand(2, 4, 3, 24, 24)
    values = ssim(x, y)
    assert values.shape == (2, 4)
    assert values[1, 2].item() == pytest.approx(skimage_ssim(x[1, 2].detach(), y[1, 2]), abs=1e-5)
    (1 - values.mean()).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_ssim_rejects_tiny_or_mismatched_images():
    with pytest.raises(VideoSceneError, match="at least 11x11"):
        ssim(torch.rand(3, 8, 8), torch.rand(3, 8, 8))
    with unchecked(), pytest.raises(VideoSceneError, match="one shape"):
        ssim(torch.rand(3, 16, 16), torch.rand(3, 16, 17))


def test_psnr_of_known_error():
    x = torch.full((3, 8, 8), 0.5)
    assert psnr(x + 0.1, x).item() == pytest.approx(20.0, abs=1e-4)  # MSE 0.01 -> 20 dB


def _random_lpips_files(tmp_path):
    """Random weights in the two layouts users have: torchvision's VGG16 state dict (.pth) and the LPIPS
    linear layers (.safetensors here)."""
    generator = torch.Generator().manual_seed(0)
    widths = [
        (3, 64),
        (64, 64),
        (64, 128),
        (128, 128),
        (128, 256),
        (256, 256),
        (256, 256),
        (256, 512),
        (512, 512),
        (512, 512),
        (512, 512),
        (512, 512),
        (512, 512),
    ]
    indices = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    vgg = {}
    for index, (cin, cout) in zip(indices, widths):
        vgg[f"features.{index}.weight"] = (
            torch.randn(cout, cin, 3, 3, generator=generator) * (2 / (9 * cin)) ** 0.5
        )
        vgg[f"features.{index}.bias"] = torch.zeros(cout)
    vgg["classifier.0.weight"] = torch.zeros(2, 2)  # extra torchvision keys are ignored
    lins = {
        f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=generator)
        for k, c in enumerate([64, 128, 256, 512, 512])
    }
    torch.save(vgg, tmp_path / "vgg16.pth")
    save_file(lins, str(tmp_path / "lpips_vgg.safetensors"))
    return [tmp_path / "vgg16.pth", tmp_path / "lpips_vgg.safetensors"]


def test_lpips_loads_user_weights_and_behaves_like_a_distance(tmp_path):
    lpips = LPIPS(_random_lpips_files(tmp_path))
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 32, 32, generator=generator)
    near = (x + 0.02 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    far = torch.rand(2, 3, 32, 32, generator=generator)
    assert torch.allclose(lpips(x, x), torch.zeros(2), atol=1e-7)
    assert (lpips(x, near) < lpips(x, far)).all()
    torch.testing.assert_close(lpips(x, far), lpips(far, x))
    y = far.clone().requires_grad_(True)
    lpips(x, y).sum().backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in lpips.parameters())  # LPIPS is frozen


def test_lpips_missing_or_incomplete_weights_fail_clearly(tmp_path):
    with pytest.raises(VideoSceneError, match="does not exist"):
        LPIPS([tmp_path / "absent.pth"])
    files = _random_lpips_files(tmp_path)
    with pytest.raises(VideoSceneError, match="lack 5 tensors"):
        LPIPS(files[:1])


def test_photometric_loss_terms(tmp_path):
    x, y = torch.rand(2, 3, 3, 32, 32), torch.rand(2, 3, 3, 32, 32)
    plain = PhotometricLoss(PhotometricLossConfig(ssim_weight=0.5, lpips_weight=0.05))
    terms = plain(x, y)
    assert "lpips" not in terms  # no weights given: the term is skipped
    expected = (x - y).square().mean() + 0.5 * (1 - ssim(x, y).mean())
    torch.testing.assert_close(terms["total"], expected)
    with_lpips = PhotometricLoss(
        PhotometricLossConfig(0.5, 0.05, [str(p) for p in _random_lpips_files(tmp_path)])
    )
    terms = with_lpips(x, y)
    torch.testing.assert_close(terms["total"], expected + 0.05 * terms["lpips"])
    assert np.isfinite(terms["lpips"].item()) and terms["lpips"].item() > 0
