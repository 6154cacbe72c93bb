"""Photometric losses for training the prior on rendered target views: MSE + λ·(1 − SSIM), plus an
optional λ_lpips·LPIPS when the user supplies LPIPS weights by path (nothing is ever downloaded).

SSIM follows Wang et al. 2004: an 11-tap Gaussian window with σ = 1.5, C1 = (0.01 L)², C2 = (0.03 L)²,
L = 1, averaged over the "valid" region where the window fits inside the image (this equals
`skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=1)`, which crops the border of that size before averaging).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from videoscene.errors import VideoSceneError
from videoscene.io_utils import load_safetensors

logger = logging.getLogger(__name__)

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def _gaussian_window(dtype, device) -> Tensor:
    offsets = torch.arange(SSIM_WINDOW, dtype=dtype, device=device) - SSIM_WINDOW // 2
    window = torch.exp(-(offsets**2) / (2 * SSIM_SIGMA**2))
    return window / window.sum()


def ssim(x: Float[Tensor, "*batch c h w"], y: Float[Tensor, "*batch c h w"]) -> Float[Tensor, "*batch"]:
    """Mean SSIM per image (over channels and valid pixels) for images in [0, 1]; differentiable."""
    if x.shape != y.shape or x.ndim < 3:
        raise VideoSceneError(f"ssim needs two images of one shape [..., C, H, W], got {list(x.shape)} and {list(y.shape)}")
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise VideoSceneError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {list(x.shape[-2:])}")
    batch_shape, (c, h, w) = x.shape[:-3], x.shape[-3:]
    window = _gaussian_window(x.dtype, x.device)
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=-3).reshape(-1, 1, h, w)
    # Separable Gaussian blur with no padding: the 'valid' region.
    blurred = F.conv2d(F.conv2d(stacked, window.view(1, 1, 1, -1)), window.view(1, 1, -1, 1))
    mu_x, mu_y, xx, yy, xy = blurred.reshape(-1, 5, c, *blurred.shape[-2:]).unbind(1)
    sigma_x, sigma_y, sigma_xy = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + SSIM_C1) * (2 * sigma_xy + SSIM_C2)) / (
        (mu_x**2 + mu_y**2 + SSIM_C1) * (sigma_x + sigma_y + SSIM_C2)
    )
    return ssim_map.mean(dim=(-3, -2, -1)).reshape(batch_shape)


def psnr(x: Float[Tensor, "*batch c h w"], y: Float[Tensor, "*batch c h w"]) -> Float[Tensor, "*batch"]:
    """PSNR in dB for images in [0, 1] (x is clamped to [0, 1] first, as a saved image would be)."""
    mse = (x.clamp(0, 1) - y).square().mean(dim=(-3, -2, -1))
    return -10 * torch.log10(mse.clamp_min(1e-10))


# VGG16 `features` layout (torchvision indices, so its state-dict keys load unchanged): convolution widths,
# "M" = 2x2 max-pool. LPIPS reads the ReLU after the last convolution of each of the 5 stages.
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_LPIPS_TAPS = (3, 8, 15, 22, 29)  # indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)


class LPIPS(nn.Module):
    """LPIPS-VGG (Zhang et al. 2018): unit-normalised VGG16 activations at 5 depths, squared differences
    weighted per channel by learned non-negative linear layers, averaged over space, summed over depths.

    Weights come from files the user supplies: torchvision's VGG16 state dict (keys `features.N.*`) and the
    LPIPS linear layers (keys `linK.model.1.weight`), in one file or two (.safetensors, or .pth read with
    `weights_only=True`)."""

    def __init__(self, weight_files: Sequence[str | Path]):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for entry in _VGG16:
            if entry == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_channels, entry, 3, padding=1), nn.ReLU()]
                in_channels = entry
        self.features = nn.Sequential(*layers)
        widths = [c for i, c in enumerate(_VGG16) if c != "M" and (i + 1 == len(_VGG16) or _VGG16[i + 1] == "M")]
        self.lins = nn.ModuleList(nn.Conv2d(width, 1, 1, bias=False) for width in widths)
        self.register_buffer("shift", torch.tensor(_LPIPS_SHIFT).view(3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_LPIPS_SCALE).view(3, 1, 1), persistent=False)
        self._load(weight_files)
        self.requires_grad_(False)
        self.eval()

    def _load(self, weight_files: Sequence[str | Path]) -> None:
        state: dict[str, Tensor] = {}
        for path in map(Path, weight_files):
            if not path.is_file():
                raise VideoSceneError(f"LPIPS weights file {path} does not exist; give the VGG16 and LPIPS-linear weight files")
            if path.suffix == ".safetensors":
                state.update(load_safetensors(path, "LPIPS weights"))
            else:
                try:
                    state.update(torch.load(path, map_location="cpu", weights_only=True))
                except Exception as error:  # pickle/zip errors come in many types
                    raise VideoSceneError(f"cannot read LPIPS weights {path} as a tensor file ({type(error).__name__})") from None
        mapped = {key: value for key, value in state.items() if key.startswith("features.")}
        for index in range(len(self.lins)):
            key = f"lin{index}.model.1.weight"
            if key in state:
                mapped[f"lins.{index}.weight"] = state[key]
        expected = set(self.state_dict())
        if set(mapped) != expected:
            missing = sorted(expected - set(mapped))
            raise VideoSceneError(
                f"LPIPS weight files lack {len(missing)} tensors (e.g. {missing[0] if missing else '-'}); "
                "supply torchvision's vgg16 state dict and the LPIPS 'vgg' linear layers"
            )
        try:
            self.load_state_dict(mapped)
        except RuntimeError:
            raise VideoSceneError("LPIPS weight files have tensors of the wrong shape; they must be for VGG16") from None

    def forward(self, x: Float[Tensor, "*batch 3 h w"], y: Float[Tensor, "*batch 3 h w"]) -> Float[Tensor, "*batch"]:
        batch_shape = x.shape[:-3]
        both = torch.cat([x.reshape(-1, *x.shape[-3:]), y.reshape(-1, *y.shape[-3:])])
        h = ((2 * both - 1) - self.shift) / self.scale  # LPIPS expects [-1, 1] inputs, then its scaling layer
        distance = 0
        taps = iter(self.lins)
        for index, layer in enumerate(self.features):
            h = layer(h)
            if index in _LPIPS_TAPS:
                unit = h / (h.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
                fx, fy = unit.chunk(2)
                distance = distance + next(taps)((fx - fy).square()).mean(dim=(-3, -2, -1))
        return distance.reshape(batch_shape)


@dataclass
class PhotometricLossConfig:
    ssim_weight: float = 0.1  # λ in MSE + λ·(1 − SSIM)
    lpips_weight: float = 0.05
    lpips_weights: list[str] = field(default_factory=list)  # empty: no LPIPS term


class PhotometricLoss(nn.Module):
    """MSE + λ·(1 − SSIM) [+ λ_lpips·LPIPS] between rendered and ground-truth views, averaged over views."""

    def __init__(self, config: PhotometricLossConfig):
        super().__init__()
        self.config = config
        self.lpips = LPIPS(config.lpips_weights) if config.lpips_weights and config.lpips_weight > 0 else None
        if self.lpips is None and config.lpips_weight > 0:
            logger.info("no LPIPS weights given: training without the LPIPS term")

    def forward(self, rendered: Float[Tensor, "*batch 3 h w"], target: Float[Tensor, "*batch 3 h w"]) -> dict[str, Tensor]:
        terms = {"mse": (rendered - target).square().mean(), "ssim": ssim(rendered, target).mean()}
        total = terms["mse"] + self.config.ssim_weight * (1 - terms["ssim"])
        if self.lpips is not None:
            terms["lpips"] = self.lpips(rendered, target).mean()
            total = total + self.config.lpips_weight * terms["lpips"]
        terms["total"] = total
        return terms
