"""Temporal consistency of a video: the flow-warping error between consecutive frames.

For each pair (I_t, I_{t+1}) the dense optical flow f from I_t to I_{t+1} (OpenCV's Farnebäck, on grey
levels) maps every pixel x of I_t to x + f(x) in I_{t+1}, so Î_t(x) = I_{t+1}(x + f(x)) is frame t+1 warped
back onto frame t. The pair's error is the mean of |I_t − Î_t| over colour channels and over the pixels
that are visible in both frames; the video's error is the mean over pairs (Lai et al. 2018, "Learning
blind video temporal consistency", with mean absolute instead of squared differences so it reads in
intensity units of [0, 1]).

A pixel counts as visible when it lands inside frame t+1 and the forward flow and the backward flow
b (from I_{t+1} to I_t) agree — the occlusion test of Sundaram et al. 2010:
|f(x) + b(x + f(x))|² < α (|f(x)|² + |b(x + f(x))|²) + β, with α = 0.01 and β = 0.5 px².

What it measures: flicker and frame-to-frame changes that no motion explains. A frozen video scores ≈ 0,
so read it beside the 3D-consistency metric (metrics/consistency.py), which a frozen video fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from jaxtyping import Float
from torch import Tensor

from videoscene.errors import VideoSceneError
from videoscene.image_io import to_uint8


@dataclass(frozen=True)
class FlowConfig:
    """Farnebäck flow settings (OpenCV names in comments) and the occlusion test's constants."""

    pyramid_scale: float = 0.5  # pyr_scale
    levels: int = 3
    window: int = 9  # winsize: small, for videos of ~64-720 pixels
    iterations: int = 3
    poly_n: int = 5
    poly_sigma: float = 1.1
    occlusion_alpha: float = 0.01
    occlusion_beta: float = 0.5  # px²


@dataclass
class TemporalConsistency:
    warp_error: (
        float  # mean over consecutive pairs of the mean |I_t − Î_t| over visible pixels (nan: none visible)
    )
    visible_fraction: float  # mean share of pixels that passed the occlusion test
    pair_errors: Float[np.ndarray, " pair"] = field(repr=False, default_factory=lambda: np.zeros(0))


def _grey_uint8(image: Float[Tensor, "3 height width"]) -> np.ndarray:
    rgb = to_uint8(image).permute(1, 2, 0).cpu().numpy()
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def farneback_flow(
    source: np.ndarray, destination: np.ndarray, config: FlowConfig
) -> Float[np.ndarray, "height width 2"]:
    """Flow f with source(x) ≈ destination(x + f(x)), for uint8 grey images."""
    return cv2.calcOpticalFlowFarneback(
        source,
        destination,
        None,
        config.pyramid_scale,
        config.levels,
        config.window,
        config.iterations,
        config.poly_n,
        config.poly_sigma,
        0,
    )


def warp_by_flow(
    image: Float[np.ndarray, "height width channel"], flow: Float[np.ndarray, "height width 2"]
) -> np.ndarray:
    """image sampled at x + flow(x) (bilinear). Flow and the sampling grid share OpenCV's pixel indices."""
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    warped = cv2.remap(
        image, grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return warped.reshape(image.shape)


def visible_mask(forward: np.ndarray, backward: np.ndarray, config: FlowConfig) -> np.ndarray:
    """Pixels of the source frame that land inside the other frame and pass the forward-backward test."""
    height, width = forward.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width), np.arange(height))
    target_x, target_y = grid_x + forward[..., 0], grid_y + forward[..., 1]
    inside = (target_x >= 0) & (target_x <= width - 1) & (target_y >= 0) & (target_y <= height - 1)
    backward_there = warp_by_flow(backward, forward)
    mismatch = np.square(forward + backward_there).sum(-1)
    magnitude = np.square(forward).sum(-1) + np.square(backward_there).sum(-1)
    return inside & (mismatch < config.occlusion_alpha * magnitude + config.occlusion_beta)


def warping_error(
    frames: Float[Tensor, "frame 3 height width"], config: FlowConfig | None = None
) -> TemporalConsistency:
    """Flow-warping error of consecutive frames (module docstring), for frames in [0, 1]."""
    config = config or FlowConfig()
    if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[0] < 2:
        raise VideoSceneError(
            f"temporal consistency needs a video [frames >= 2, 3, H, W], got {list(frames.shape)}"
        )
    grey = [_grey_uint8(frame) for frame in frames]
    colour = frames.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    errors, visible = [], []
    for t in range(len(grey) - 1):
        forward = farneback_flow(grey[t], grey[t + 1], config)
        backward = farneback_flow(grey[t + 1], grey[t], config)
        mask = visible_mask(forward, backward, config)
        warped = warp_by_flow(np.ascontiguousarray(colour[t + 1]), forward)
        difference = np.abs(colour[t] - warped).mean(-1)
        errors.append(float(difference[mask].mean()) if mask.any() else float("nan"))
        visible.append(float(mask.mean()))
    errors = np.array(errors)
    return TemporalConsistency(
        warp_error=float(np.nanmean(errors)) if np.isfinite(errors).any() else float("nan"),
        visible_fraction=float(np.mean(visible)),
        pair_errors=errors,
    )
