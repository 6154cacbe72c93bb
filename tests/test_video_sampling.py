"""Multi-step sampling: diffusers' scheduler steps agree with the closed form; seeds; starting from a
render."""

import pytest
import torch

from videoscene.errors import VideoSceneError
from videoscene.video.sampling import SamplingConfig, sample_latents, sample_video
from videoscene.video.schedule import NoiseSchedule

LATENT_SHAPE = (1, 3, 8, 8, 12)


def test_one_ddim_step_from_a_render_is_the_closed_form_x0(video_backbone):
    """1 step from x₀ʳ noised to t: exactly x̂₀ = √ᾱ_t·x_t − √(1−ᾱ_t)·v̂ (the released inference)."""
    condition, render = torch.randn(LATENT_SHAPE), torch.randn(LATENT_SHAPE)
    t = 549
    sampled = sample_latents(
        video_backbone,
        condition,
        SamplingConfig(num_steps=1, start_timestep=t),
        torch.Generator().manual_seed(0),
        render,
    )
    noise = torch.randn(LATENT_SHAPE, generator=torch.Generator().manual_seed(0))
    alpha_bar = NoiseSchedule().alphas_cumprod[t].item()
    x_t = alpha_bar**0.5 * render + (1 - alpha_bar) ** 0.5 * noise
    with torch.no_grad():
        v = video_backbone.predict_v(x_t, condition, t)
    torch.testing.assert_close(
        sampled, alpha_bar**0.5 * x_t - (1 - alpha_bar) ** 0.5 * v, atol=1e-5, rtol=1e-5
    )


def test_two_ddim_steps_from_noise_follow_the_closed_form(video_backbone):
    condition = torch.randn(LATENT_SHAPE)
    sampled = sample_latents(
        video_backbone, condition, SamplingConfig(num_steps=2), torch.Generator().manual_seed(5)
    )
    schedule = NoiseSchedule()
    x = torch.randn(LATENT_SHAPE, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        for t, t_prev in [(999, 499), (499, -1)]:
            x = schedule.ddim_step(x, video_backbone.predict_v(x, condition, t), t, t_prev)
    torch.testing.assert_close(sampled, x, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("solver", ["ddim", "dpm"])
def test_same_seed_same_video_different_seed_different(video_backbone, solver):
    first, last = torch.rand(1, 3, 32, 48), torch.rand(1, 3, 32, 48)
    config = SamplingConfig(num_steps=4, solver=solver)
    a = sample_video(video_backbone, first, last, config, seed=7)
    b = sample_video(video_backbone, first, last, config, seed=7)
    c = sample_video(video_backbone, first, last, config, seed=8)
    assert a.shape == (1, 9, 3, 32, 48)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a - c).abs().max() > 1e-3


def test_starting_from_a_render_keeps_more_of_it_than_starting_from_noise(video_backbone):
    condition, render = torch.randn(LATENT_SHAPE), torch.randn(LATENT_SHAPE)
    generator = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    from_render = sample_latents(
        video_backbone, condition, SamplingConfig(num_steps=4, start_timestep=300), generator(), render
    )
    from_noise = sample_latents(video_backbone, condition, SamplingConfig(num_steps=4), generator())
    distance_render = (from_render - render).pow(2).mean()
    distance_noise = (from_noise - render).pow(2).mean()
    assert distance_render < 0.5 * distance_noise


def test_guidance_runs_both_branches_and_changes_the_result(video_backbone):
    condition = torch.randn(LATENT_SHAPE)
    plain = sample_latents(
        video_backbone, condition, SamplingConfig(num_steps=2), torch.Generator().manual_seed(0)
    )
    guided = sample_latents(
        video_backbone,
        condition,
        SamplingConfig(num_steps=2, guidance_scale=3.0, guidance_drop_text=True, guidance_drop_image=True),
        torch.Generator().manual_seed(0),
    )
    assert guided.shape == plain.shape and not torch.allclose(guided, plain)
    with pytest.raises(VideoSceneError, match="unconditional"):
        sample_latents(
            video_backbone,
            condition,
            SamplingConfig(
                num_steps=2, guidance_scale=3.0, guidance_drop_text=False, guidance_drop_image=False
            ),
        )


def test_bad_sampling_requests_are_refused(video_backbone):
    condition = torch.randn(LATENT_SHAPE)
    with pytest.raises(VideoSceneError, match="start"):
        sample_latents(video_backbone, condition, SamplingConfig(num_steps=4, start_timestep=500))
    with pytest.raises(VideoSceneError, match="4k\\+1"):  # the tiny VAE's 2× time
        sample_video(
            video_backbone,
            torch.rand(1, 3, 32, 48),
            torch.rand(1, 3, 32, 48),
            SamplingConfig(num_steps=1),
            num_frames=11,
        )
