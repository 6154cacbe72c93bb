"""LPIPS-VGG (Zhang et al. 2018) for evaluation, from network weights the user supplies by path.

LPIPS needs a pretrained VGG16 and the LPIPS linear heads; neither can be downloaded here. The network
itself (a plain-torch VGG16 feature stack with torchvision's state-dict layout, unit-normalised activations
at relu1_2 … relu5_3, non-negative per-channel heads, spatial mean, sum over depths) lives in
`videoscene.prior.losses.LPIPS`, which the prior also trains with. Weight files: torchvision's `vgg16`
state dict (keys `features.N.weight/bias`) and the LPIPS "vgg" heads (keys `linK.model.1.weight`), in one
file or two, `.safetensors` or `.pth` (read with `torch.load(weights_only=True)`).

Without weight files evaluation skips LPIPS (the metric is left out of the report), it never fails.
"""

from __future__ import annotations

import logging
import os
from typing import Sequence

import torch

from videoscene.prior.losses import LPIPS

logger = logging.getLogger(__name__)

__all__ = ["LPIPS", "load_lpips"]


def load_lpips(weight_files: Sequence[str | os.PathLike] | None, device: str | torch.device = "cpu") -> LPIPS | None:
    """The LPIPS network from the given weight files, or None (LPIPS skipped) when none are given.

    Files that are given but missing or malformed raise a one-line VideoSceneError: asking for LPIPS and
    silently not getting it would be worse than failing."""
    if not weight_files:
        logger.info("no LPIPS weight files given: LPIPS is skipped")
        return None
    return LPIPS(list(weight_files)).to(device)
