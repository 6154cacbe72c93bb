"""Photometric losses for training the prior on rendered target views: MSE + λ·(1 − SSIM), plus an
optional λ_lpips·LPIPS when the user supplies LPIPS weights by path (nothing is ever downloaded).

SSIM and LPIPS are the evaluation metrics' own (`videoscene.metrics`), so a validation score during
training and an evaluation score are the same number.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from jaxtyping import Float
from torch import Tensor, nn

from videoscene.metrics.image import ssim
from videoscene.metrics.lpips import LPIPS

logger = logging.getLogger(__name__)


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

    def forward(
        self, rendered: Float[Tensor, "*batch 3 h w"], target: Float[Tensor, "*batch 3 h w"]
    ) -> dict[str, Tensor]:
        terms = {"mse": (rendered - target).square().mean(), "ssim": ssim(rendered, target).mean()}
        total = terms["mse"] + self.config.ssim_weight * (1 - terms["ssim"])
        if self.lpips is not None:
            terms["lpips"] = self.lpips(rendered, target).mean()
            total = total + self.config.lpips_weight * terms["lpips"]
        terms["total"] = total
        return terms
