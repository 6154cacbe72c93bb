"""The CogVideoX-5B noise schedule and the v-parameterisation helpers, checked against diffusers and by
hand."""

import math

import pytest
import torch

from videoscene.errors import VideoSceneError
from videoscene.video.config import ScheduleConfig
from videoscene.video.schedule import NoiseSchedule, sampling_timesteps


@pytest.fixture(scope="module")
def schedule() -> NoiseSchedule:
    return NoiseSchedule(ScheduleConfig())


def _alpha_bar_by_hand() -> torch.Tensor:
    """Scaled-linear betas, cumulative product, then the zero-terminal-SNR rescale of √ᾱ (Lin et al. 2024)."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    root = torch.cumprod(1 - betas, 0).sqrt()
    root = (root - root[-1]) * root[0] / (root[0] - root[-1])
    return root**2


def test_alpha_bar_matches_the_formula_and_has_zero_terminal_snr(schedule):
    torch.testing.assert_close(schedule.alphas_cumprod, _alpha_bar_by_hand())
    assert schedule.alphas_cumprod[999].item() == 0.0
    # The authors' release: its leap timesteps keep about 42% / 55% signal amplitude.
    assert schedule.alphas_cumprod[549].sqrt().item() == pytest.approx(0.425, abs=2e-3)
    assert schedule.alphas_cumprod[459].sqrt().item() == pytest.approx(0.547, abs=2e-3)


def test_forward_noising_and_v_identities_recover_x0_and_eps(schedule):
    x0, eps = torch.randn(2, 3, 4, 4, 6), torch.randn(2, 3, 4, 4, 6)
    t = torch.tensor([10, 999])
    x_t = schedule.add_noise(x0, eps, t)
    a = schedule.alphas_cumprod[t].float().reshape(-1, 1, 1, 1, 1)
    torch.testing.assert_close(x_t, a.sqrt() * x0 + (1 - a).sqrt() * eps)
    torch.testing.assert_close(x_t, schedule.make_solver().add_noise(x0, eps, t))
    v = schedule.v_target(x0, eps, t)
    torch.testing.assert_close(v, schedule.make_solver().get_velocity(x0, eps, t))
    torch.testing.assert_close(schedule.x0_from_v(x_t, v, t), x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(schedule.eps_from_v(x_t, v, t), eps, atol=1e-5, rtol=1e-5)
    # At the terminal step x_t is pure noise and x̂₀ = −v̂.
    torch.testing.assert_close(x_t[1], eps[1])
    torch.testing.assert_close(schedule.x0_from_v(x_t, v, t)[1], -v[1])


@pytest.mark.parametrize("t, t_prev", [(999, 979), (549, 529), (249, -1)])
def test_ddim_step_equals_closed_form_and_diffusers(schedule, t, t_prev):
    x_t, v = torch.randn(1, 2, 4, 4, 4), torch.randn(1, 2, 4, 4, 4)
    a_t = schedule.alphas_cumprod[t].item()
    a_prev = 1.0 if t_prev < 0 else schedule.alphas_cumprod[t_prev].item()
    x0 = math.sqrt(a_t) * x_t - math.sqrt(1 - a_t) * v
    eps = math.sqrt(a_t) * v + math.sqrt(1 - a_t) * x_t
    by_hand = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps
    torch.testing.assert_close(schedule.ddim_step(x_t, v, t, t_prev), by_hand, atol=1e-5, rtol=1e-5)
    solver = schedule.make_solver("ddim")
    solver.set_timesteps(1000 // (t - t_prev))  # diffusers steps back by T // num_steps
    torch.testing.assert_close(solver.step(v, t, x_t).prev_sample, by_hand, atol=1e-5, rtol=1e-5)


def test_boundary_scalings_and_skip_grid(schedule):
    like = torch.zeros(3, 1)
    c_skip, c_out = schedule.boundary_scalings(torch.tensor([0, 1, 549]), like)
    assert c_skip[0].item() == 1.0 and c_out[0].item() == 0.0
    assert c_skip[1].item() == pytest.approx(0.25 / (100 + 0.25))
    assert c_out[1].item() == pytest.approx(10 / math.sqrt(100 + 0.25))
    assert c_skip[2].item() < 1e-6 and c_out[2].item() == pytest.approx(1.0, abs=1e-6)
    grid = schedule.skip_grid(20)
    assert grid[0].item() == 19 and grid[-1].item() == 999 and len(grid) == 50
    with pytest.raises(VideoSceneError):
        schedule.skip_grid(7)


def test_sampling_timesteps_from_noise_and_from_a_render(schedule):
    assert sampling_timesteps(schedule, 4).tolist() == [999, 749, 499, 249]
    assert sampling_timesteps(schedule, 1).tolist() == [999]
    from_render = sampling_timesteps(schedule, 50, start_timestep=549).tolist()
    assert from_render[0] == 549 and from_render[-1] == 9 and len(from_render) == 28
    assert sampling_timesteps(schedule, 1, start_timestep=549).tolist() == [549]
    with pytest.raises(VideoSceneError):
        sampling_timesteps(schedule, 4, start_timestep=1000)
    with pytest.raises(VideoSceneError):
        schedule.alpha_bar(1000, torch.zeros(1))


def test_only_v_prediction_is_accepted():
    with pytest.raises(VideoSceneError, match="predict v"):
        NoiseSchedule(ScheduleConfig(prediction_type="epsilon"))
