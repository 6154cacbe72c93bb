"""Fréchet distance between Gaussians fitted to network features (FID/FVD), and FVD's I3D loader.

FVD needs a pretrained I3D video classifier that cannot be downloaded here: pass the TorchScript detector
used by StyleGAN-V's FVD (`i3d_torchscript.pt`) by path; without it, FVD is skipped by the caller.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
from jaxtyping import Float
from torch import Tensor

from videoscene.errors import LoadError, VideoSceneError


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½) (Dowson & Landau 1982)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise VideoSceneError(f"feature statistics disagree in shape: {mu1.shape} vs {mu2.shape}")
    covariance_mean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covariance_mean).all():
        # A singular product (too few samples for the feature size): regularise as FID implementations do.
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covariance_mean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covariance_mean = covariance_mean.real
    return float(
        ((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covariance_mean)
    )


def feature_statistics(features: Float[np.ndarray, "sample feature"]) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise VideoSceneError(
            f"need at least 2 feature vectors [N, D] for a Fréchet distance, got {features.shape}"
        )
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance_of_features(real: np.ndarray, generated: np.ndarray) -> float:
    return frechet_distance(*feature_statistics(real), *feature_statistics(generated))


class I3DFeatures:
    """The I3D detector of StyleGAN-V's FVD, loaded from a user-supplied TorchScript file."""

    def __init__(self, detector_path: str | os.PathLike, device: str | torch.device = "cpu"):
        path = Path(detector_path)
        if not path.is_file():
            raise VideoSceneError(
                f"I3D detector {path} not found; pass the path of i3d_torchscript.pt (it is never downloaded)"
            )
        # TorchScript runs the code stored in the file: give only a detector you trust (docs/conventions.md)
        try:
            self.detector = torch.jit.load(str(path), map_location=device).eval()
        except (
            Exception
        ) as error:  # torch.jit raises RuntimeError, ValueError, zip errors … for a foreign file
            raise LoadError(
                f"I3D detector {path} is not a TorchScript file ({type(error).__name__}); pass "
                "i3d_torchscript.pt"
            ) from None
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(
        self, videos: Float[Tensor, "batch frame 3 height width"]
    ) -> Float[np.ndarray, "batch feature"]:
        """Videos in [0, 1]; the detector resizes to 224×224 and rescales to [-1, 1] itself."""
        clips = (videos.to(self.device) * 255).permute(0, 2, 1, 3, 4)  # [B, 3, F, H, W] in [0, 255]
        return self.detector(clips, rescale=True, resize=True, return_features=True).cpu().numpy()


def frechet_video_distance(
    real: Float[Tensor, "batch frame 3 height width"],
    generated: Float[Tensor, "batch frame 3 height width"],
    detector: I3DFeatures,
) -> float:
    return frechet_distance_of_features(detector(real), detector(generated))
