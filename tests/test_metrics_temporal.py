"""Temporal consistency: flow-warping error between consecutive frames."""

import cv2
import numpy as np
import pytest
import torch
from shape_checks import unchecked

from videoscene.errors import VideoSceneError
from videoscene.metrics.temporal import FlowConfig, farneback_flow, warping_error


def panning_video(frames: int = 6, height: int = 48, width: int = 72, step: int = 2) -> torch.Tensor:
    """A smooth random texture seen through a window that moves `step` pixels right per frame."""
    rng = np.random.default_rng(0)
    wide = width + step * frames
    texture = cv2.resize(
        rng.uniform(0, 1, (height // 4, wide // 4, 3)).astype(np.float32),
        (wide, height),
        interpolation=cv2.INTER_CUBIC,
    )
    windows = [texture[:, k * step : k * step + width] for k in range(frames)]
    return torch.from_numpy(np.clip(np.stack(windows), 0, 1)).permute(0, 3, 1, 2).contiguous()


def test_farneback_flow_finds_the_pan():
    video = panning_video(frames=2, step=2)
    grey = [
        cv2.cvtColor((frame.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), cv2.COLOR_RGB2GRAY)
        for frame in video
    ]
    flow = farneback_flow(grey[0], grey[1], FlowConfig())
    # Frame 1 is frame 0 shifted 2 px left: frame0(x) = frame1(x − 2).
    interior = flow[8:-8, 8:-8]
    assert np.median(interior[..., 0]) == pytest.approx(-2.0, abs=0.2)
    assert np.median(interior[..., 1]) == pytest.approx(0.0, abs=0.2)


def test_static_video_scores_zero_and_motion_explained_by_flow_scores_low():
    video = panning_video()
    static = warping_error(video[:1].expand(4, -1, -1, -1))
    assert static.warp_error < 1e-3 and static.visible_fraction > 0.95
    panning = warping_error(video)
    assert panning.warp_error < 5e-3
    assert 0.8 < panning.visible_fraction <= 1.0  # the strip that enters the window is not visible before
    assert panning.pair_errors.shape == (len(video) - 1,)


def test_flicker_and_noise_score_much_worse():
    video = panning_video()
    calm = warping_error(video).warp_error
    flicker = video.clone()
    flicker[::2] = (flicker[::2] + 0.1).clamp(0, 1)  # brightness jumps every other frame
    noisy = (video + 0.05 * torch.randn(video.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert warping_error(flicker).warp_error > 10 * calm
    assert warping_error(noisy).warp_error > 5 * calm


def test_rejects_bad_input():
    with pytest.raises(VideoSceneError, match="frames >= 2"):
        warping_error(torch.rand(1, 3, 16, 16))
    with unchecked(), pytest.raises(VideoSceneError, match="frames >= 2"):
        warping_error(torch.rand(4, 16, 16))
