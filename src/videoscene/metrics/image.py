"""Image quality against ground truth: PSNR and SSIM, for images in [0, 1] shaped [..., 3, H, W].

The prior trains with these same functions (`videoscene.prior.losses`), so a validation score during
training and an evaluation score here are the same number:

- PSNR = −10 log10(MSE) in dB with data range 1; the generated image is clamped to [0, 1] first (as a saved
  frame would be) and the MSE is floored at 1e-10, so identical images score 100 dB, not inf (means over
  scenes stay finite).
- SSIM (Wang et al. 2004): 11-tap Gaussian window, σ = 1.5, C1 = 0.01², C2 = 0.03², averaged over channels
  and the pixels where the window fits. It equals scikit-image's `structural_similarity(gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=1)`; pixelSplat/MVSplat call scikit-image with the
  default `use_sample_covariance=True`, which scales the variances by 121/120 and moves SSIM by < 0.005.
- Masked scores, for a region such as the pixels no context view saw (docs/evaluation.md): `masked_psnr` is
  the PSNR of the MSE pooled over every masked pixel of all the given images (so a frame with a large
  region weighs more than one with a sliver, and identical regions score 100 dB as above); `masked_ssim` is
  the mean of the SSIM map (averaged over channels) over the window centres that are masked, pooled the same
  way; pixels within 5 px of the border have no SSIM value and take no part. Both are NaN for an empty mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from videoscene.errors import VideoSceneError
from videoscene.geometry.image_ops import gaussian_kernel_1d

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def ssim(x: Float[Tensor, "*batch c h w"], y: Float[Tensor, "*batch c h w"]) -> Float[Tensor, "*batch"]:
    """Mean SSIM per image (over channels and valid pixels) for images in [0, 1]; differentiable."""
    return ssim_map(x, y).mean(dim=(-3, -2, -1))


def ssim_map(
    x: Float[Tensor, "*batch c h w"], y: Float[Tensor, "*batch c h w"]
) -> Float[Tensor, "*batch c valid_h valid_w"]:
    """SSIM per channel at every pixel where the 11x11 window fits: entry (i, j) is the window centred on
    pixel (i + 5, j + 5), so the map is 10 pixels smaller than the images in each direction."""
    if x.shape != y.shape or x.ndim < 3:
        raise VideoSceneError(
            f"ssim needs two images of one shape [..., C, H, W], got {list(x.shape)} and {list(y.shape)}"
        )
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise VideoSceneError(
            f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {list(x.shape[-2:])}"
        )
    batch_shape, (c, h, w) = x.shape[:-3], x.shape[-3:]
    window = gaussian_kernel_1d(SSIM_SIGMA, SSIM_WINDOW // 2, x.dtype, x.device)
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=-3).reshape(-1, 1, h, w)
    # Separable Gaussian blur with no padding: the 'valid' region.
    blurred = F.conv2d(F.conv2d(stacked, window.view(1, 1, 1, -1)), window.view(1, 1, -1, 1))
    mu_x, mu_y, xx, yy, xy = blurred.reshape(-1, 5, c, *blurred.shape[-2:]).unbind(1)
    sigma_x, sigma_y, sigma_xy = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    values = ((2 * mu_x * mu_y + SSIM_C1) * (2 * sigma_xy + SSIM_C2)) / (
        (mu_x**2 + mu_y**2 + SSIM_C1) * (sigma_x + sigma_y + SSIM_C2)
    )
    return values.reshape(*batch_shape, *values.shape[-3:])


def _check_mask(x: Tensor, y: Tensor, mask: Tensor, what: str) -> None:
    if x.shape != y.shape or x.ndim < 3 or mask.shape != x.shape[:-3] + x.shape[-2:]:
        raise VideoSceneError(
            f"{what} needs two images [..., C, H, W] of one shape and a mask [..., H, W], got "
            f"{list(x.shape)}, {list(y.shape)} and {list(mask.shape)}"
        )


def masked_psnr(
    x: Float[Tensor, "*batch c h w"], y: Float[Tensor, "*batch c h w"], mask: Bool[Tensor, "*batch h w"]
) -> Float[Tensor, ""]:
    """PSNR in dB of the MSE pooled over the masked pixels of all the images (module docstring); NaN for an
    empty mask."""
    _check_mask(x, y, mask, "masked_psnr")
    weight = mask[..., None, :, :].to(x.dtype)
    count = weight.sum() * x.shape[-3]
    mse = ((x.clamp(0, 1) - y).square() * weight).sum() / count
    return torch.where(count > 0, -10 * torch.log10(mse.clamp_min(1e-10)), torch.nan)


def masked_ssim(
    x: Float[Tensor, "*batch c h w"], y: Float[Tensor, "*batch c h w"], mask: Bool[Tensor, "*batch h w"]
) -> Float[Tensor, ""]:
    """Mean of the SSIM map (over channels) at the masked window centres of all the images (module
    docstring); NaN when no masked pixel is 5 px or more inside the border."""
    _check_mask(x, y, mask, "masked_ssim")
    border = SSIM_WINDOW // 2
    values = ssim_map(x, y).mean(dim=-3)
    inner = mask[..., border:-border, border:-border]
    return values[inner].mean() if inner.any() else torch.tensor(torch.nan, dtype=x.dtype)


def psnr(x: Float[Tensor, "*batch c h w"], y: Float[Tensor, "*batch c h w"]) -> Float[Tensor, "*batch"]:
    """PSNR in dB for images in [0, 1] (x is clamped to [0, 1] first, as a saved image would be)."""
    mse = (x.clamp(0, 1) - y).square().mean(dim=(-3, -2, -1))
    return -10 * torch.log10(mse.clamp_min(1e-10))
