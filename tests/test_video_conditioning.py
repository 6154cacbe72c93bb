"""First/last-frame conditioning: noise augmentation, per-frame encoding, [first, zeros…, last] layout."""

from dataclasses import replace

import pytest
import torch
from shape_checks import unchecked

from videoscene.errors import VideoSceneError
from videoscene.video.conditioning import (
    augment_condition_frames,
    encode_condition_frames,
    place_condition_latents,
    sample_noise_augmentation_sigma,
)
from videoscene.video.config import ConditioningConfig
from videoscene.video.models import VideoBackbone


def test_noise_augmentation_sigma_is_log_normal_around_e_minus_3():
    sigma = sample_noise_augmentation_sigma(20000, ConditioningConfig(), torch.Generator().manual_seed(0))
    log_sigma = sigma.log()
    assert log_sigma.mean().item() == pytest.approx(-3.0, abs=0.02)
    assert log_sigma.std().item() == pytest.approx(0.5, abs=0.02)
    again = sample_noise_augmentation_sigma(20000, ConditioningConfig(), torch.Generator().manual_seed(0))
    torch.testing.assert_close(sigma, again)


def test_augmentation_works_in_signed_pixel_space_with_one_sigma_per_sample():
    frames = torch.full((2, 2, 3, 8, 8), 0.75)
    sigma = torch.tensor([0.0, 0.1])
    out = augment_condition_frames(frames, sigma, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[0], torch.full_like(out[0], 0.5))  # σ = 0: just the map to [−1, 1]
    deviation = out[1] - 0.5
    assert deviation.std().item() == pytest.approx(0.1, rel=0.15)


def test_layout_first_and_last_latent_frames_with_zeros_between():
    first, last = torch.randn(2, 8, 4, 6), torch.randn(2, 8, 4, 6)
    condition = place_condition_latents(first, last, 5)
    assert condition.shape == (2, 5, 8, 4, 6)
    torch.testing.assert_close(condition[:, 0], first)
    torch.testing.assert_close(condition[:, -1], last)
    assert condition[:, 1:-1].abs().sum() == 0
    with pytest.raises(VideoSceneError):
        place_condition_latents(first, last, 1)


def test_each_frame_is_encoded_alone_and_placed_at_the_ends(video_backbone):
    first, last = torch.rand(1, 3, 32, 48), torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        condition = encode_condition_frames(video_backbone, first, last, 3, noise_augmentation=False)
        alone_first = video_backbone.encode_video(first[:, None], sample_posterior=False)
        alone_last = video_backbone.encode_video(last[:, None], sample_posterior=False)
        # Deterministic encoding (posterior mean) to compare against encoding each frame by itself.
        mean_condition = encode_condition_frames(
            _with_posterior_mean(video_backbone), first, last, 3, noise_augmentation=False
        )
    assert condition.shape == (1, 3, 8, 16, 24)
    assert condition[:, 1].abs().sum() == 0
    torch.testing.assert_close(mean_condition[:, 0], alone_first[:, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mean_condition[:, 2], alone_last[:, 0], atol=1e-5, rtol=1e-5)


def test_conditioning_is_seeded_and_noise_changes_it(video_backbone):
    first, last = torch.rand(1, 3, 32, 48), torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        a = encode_condition_frames(
            video_backbone, first, last, 3, generator=torch.Generator().manual_seed(1)
        )
        b = encode_condition_frames(
            video_backbone, first, last, 3, generator=torch.Generator().manual_seed(1)
        )
        c = encode_condition_frames(
            video_backbone, first, last, 3, generator=torch.Generator().manual_seed(2)
        )
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    with unchecked(), pytest.raises(VideoSceneError, match="first and last"):
        encode_condition_frames(video_backbone, first, last[..., :24], 3)


def _with_posterior_mean(backbone: VideoBackbone) -> VideoBackbone:
    """The same weights, configured to encode condition frames with the posterior mean."""
    config = replace(backbone.config, conditioning=ConditioningConfig(sample_posterior=False))
    return VideoBackbone(config, backbone.vae, backbone.transformer, backbone.prompt_embedding)
