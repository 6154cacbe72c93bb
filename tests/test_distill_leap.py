"""The leap flow distillation loss (Eq. 6) and its pieces, on a randomly initialised 1-layer CogVideoX."""

import pytest
import torch
from weights_factory import tiny_video_config

from videoscene.distill.config import LeapConfig
from videoscene.distill.leap import (
    LatentBatch,
    consistency_function,
    draw_leap,
    ema_update,
    leap_distillation_loss,
    leap_distillation_loss_reference,
    one_step_generate,
    previous_timesteps,
    teacher_step,
    timestep_grid,
)
from videoscene.distill.student import start_timestep
from videoscene.distill.train import copy_backbone
from videoscene.metrics.image import ssim
from videoscene.video.models import VideoBackbone
from videoscene.video.schedule import NoiseSchedule

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_teacher() -> VideoBackbone:
    """9 frames at 32×48 → latents [5, 8, 16, 24]; one transformer block."""
    return VideoBackbone.build(tiny_video_config()).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def networks():
    torch.manual_seed(0)
    teacher = tiny_teacher()
    # A prompt far from the null prompt, so that classifier-free guidance changes the teacher step.
    teacher.prompt_embedding.value.data.normal_(0, 1)
    student, target = copy_backbone(teacher), copy_backbone(teacher)
    with torch.no_grad():
        for p in student.transformer.parameters():
            p.add_(0.02 * torch.randn_like(p))
        for p in target.transformer.parameters():
            p.add_(0.01 * torch.randn_like(p))
    student.transformer.requires_grad_(True)
    config = teacher.config
    shape = (3, config.latent_frames, config.latent_channels, config.latent_height, config.latent_width)
    frames = (3, config.num_frames, 3, config.height, config.width)
    batch = LatentBatch(
        torch.randn(shape),
        torch.randn(shape),
        torch.randn(shape),
        render_frames=torch.rand(frames),
        target_frames=torch.rand(frames),
    )
    return teacher, student, target, NoiseSchedule(config.schedule), batch


@pytest.mark.parametrize(
    "config",
    [
        LeapConfig(),
        LeapConfig(no_leap=True, distance="l2"),
        LeapConfig(teacher_guidance_scale=4.0, max_timestep=299),
        LeapConfig(ground_truth_weight=0.5),
        LeapConfig(leap_weight=0.0, ground_truth_weight=1.0, distance="l2"),
        LeapConfig(leap_weight=0.0, ground_truth_weight=1.0, pixel_weight=2.0),
        LeapConfig(leap_weight=0.0, ground_truth_weight=1.0, pixel_weight=2.0, ssim_weight=3.0),
    ],
    ids=[
        "leap-huber",
        "noleap-l2",
        "leap-cfg",
        "leap+ground-truth",
        "ground-truth-only",
        "ground-truth+pixels",
        "ground-truth+pixels+ssim",
    ],
)
def test_batched_loss_matches_per_sample_reference(networks, config):
    teacher, student, target, schedule, batch = networks
    draw = draw_leap(timestep_grid(schedule, config), batch.latents, torch.Generator().manual_seed(3))
    # Include the lowest grid point, which steps to t_n = 0 (the clamp).
    draw.start_timesteps[0] = config.skip - 1
    parameters = [p for p in student.transformer.parameters() if p.requires_grad]

    fast = leap_distillation_loss(student.predict_v, target.predict_v, teacher, schedule, batch, draw, config)
    fast_grads = torch.autograd.grad(fast.loss, parameters)
    slow = leap_distillation_loss_reference(
        student.predict_v, target.predict_v, teacher, schedule, batch, draw, config
    )
    slow_grads = torch.autograd.grad(slow.loss, parameters)

    assert fast.loss.item() > 0
    torch.testing.assert_close(fast.per_sample, slow.per_sample, rtol=1e-4, atol=1e-6)
    largest = max(g.abs().max() for g in fast_grads)
    assert largest > 0
    for a, b in zip(fast_grads, slow_grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5 * largest.item())


def test_the_ground_truth_term_is_the_distance_of_the_one_step_result_to_the_ground_truth(networks):
    teacher, student, target, schedule, batch = networks
    leap, ground_truth = LeapConfig(), LeapConfig(leap_weight=0.0, ground_truth_weight=1.0)
    both = LeapConfig(leap_weight=1.0, ground_truth_weight=2.0)
    draw = draw_leap(timestep_grid(schedule, leap), batch.latents, torch.Generator().manual_seed(5))
    with torch.no_grad():
        losses = {
            name: leap_distillation_loss(
                student.predict_v, target.predict_v, teacher, schedule, batch, draw, config
            ).per_sample
            for name, config in (("leap", leap), ("ground_truth", ground_truth), ("both", both))
        }
        x_t = schedule.add_noise(batch.render_latents, draw.noise, draw.start_timesteps)
        one_step = consistency_function(
            student.predict_v, schedule, x_t, batch.condition_latents, draw.start_timesteps, leap
        )
    huber = ((one_step - batch.latents).square() + leap.huber_c**2).sqrt() - leap.huber_c
    torch.testing.assert_close(losses["ground_truth"], huber.flatten(1).mean(dim=1))
    torch.testing.assert_close(losses["both"], losses["leap"] + 2 * losses["ground_truth"])


def test_the_pixel_term_scores_the_render_skip_video_against_the_ground_truth_frames(networks):
    """λ_px·|r + D(x̂₀) − D(x₀ʳ) − y|₁: the video the pipeline shows with `render_skip`, in pixels; a batch
    without frames is one clear error."""
    from videoscene.errors import VideoSceneError

    teacher, student, target, schedule, batch = networks
    pixels = LeapConfig(leap_weight=0.0, pixel_weight=1.0)
    draw = draw_leap(timestep_grid(schedule, pixels), batch.latents, torch.Generator().manual_seed(6))
    with torch.no_grad():
        loss = leap_distillation_loss(
            student.predict_v, target.predict_v, teacher, schedule, batch, draw, pixels
        ).per_sample
        x_t = schedule.add_noise(batch.render_latents, draw.noise, draw.start_timesteps)
        one_step = consistency_function(
            student.predict_v, schedule, x_t, batch.condition_latents, draw.start_timesteps, pixels
        )
        video = (
            batch.render_frames
            + teacher.decode_latents(one_step)
            - teacher.decode_latents(batch.render_latents)
        )
    torch.testing.assert_close(loss, (video - batch.target_frames).abs().flatten(1).mean(dim=1))
    structure = LeapConfig(leap_weight=0.0, ssim_weight=1.0)
    with torch.no_grad():
        ssim_loss = leap_distillation_loss(
            student.predict_v, target.predict_v, teacher, schedule, batch, draw, structure
        ).per_sample
    torch.testing.assert_close(ssim_loss, 1 - ssim(video, batch.target_frames).mean(dim=1))
    assert (ssim_loss > 0).all()
    bare = LatentBatch(batch.render_latents, batch.latents, batch.condition_latents)
    with pytest.raises(VideoSceneError, match="data.store_frames"):
        leap_distillation_loss(student.predict_v, target.predict_v, teacher, schedule, bare, draw, pixels)


@pytest.mark.parametrize(
    "weights",
    [
        (0.0, 0.0, 0.0, 0.0),
        (-1.0, 1.0, 0.0, 0.0),
        (1.0, -0.5, 0.0, 0.0),
        (0.0, 1.0, -1.0, 0.0),
        (0, 1, 0, -1),
    ],
)
def test_loss_weights_must_be_non_negative_and_not_all_zero(weights):
    from videoscene.errors import VideoSceneError

    with pytest.raises(VideoSceneError, match="leap_weight"):
        LeapConfig(
            **dict(zip(("leap_weight", "ground_truth_weight", "pixel_weight", "ssim_weight"), weights))
        )


def test_teacher_guidance_changes_the_step(networks):
    teacher, _, _, schedule, batch = networks
    t = torch.tensor([499, 499, 499])
    plain = teacher_step(teacher, schedule, batch.latents, batch.condition_latents, t, t - 20, 1.0)
    guided = teacher_step(teacher, schedule, batch.latents, batch.condition_latents, t, t - 20, 4.0)
    assert (plain - guided).abs().max() > 1e-4


def test_teacher_step_is_the_ddim_closed_form_and_matches_diffusers(networks):
    teacher, _, _, schedule, batch = networks
    x = batch.latents[:1]
    condition = batch.condition_latents[:1]
    t, s = 519, 499
    stepped = teacher_step(teacher, schedule, x, condition, torch.tensor([t]), torch.tensor([s]))

    v = teacher.predict_v(x, condition, torch.tensor([t]))
    a_t, a_s = schedule.alphas_cumprod[t].item(), schedule.alphas_cumprod[s].item()
    x0 = a_t**0.5 * x - (1 - a_t) ** 0.5 * v
    eps = a_t**0.5 * v + (1 - a_t) ** 0.5 * x
    torch.testing.assert_close(stepped, a_s**0.5 * x0 + (1 - a_s) ** 0.5 * eps, rtol=1e-5, atol=1e-5)

    # diffusers' CogVideoX DDIM with 50 steps goes from 519 to 519 − 20 = 499 (η = 0).
    solver = schedule.make_solver("ddim")
    solver.set_timesteps(50)
    reference = solver.step(v, t, x, return_dict=False)[0]
    torch.testing.assert_close(stepped, reference, rtol=1e-4, atol=1e-4)


def test_consistency_function_boundary_condition(networks):
    teacher, _, _, schedule, batch = networks
    config = LeapConfig()
    x = batch.latents
    zero = torch.zeros(3, dtype=torch.long)
    # c_skip(0) = 1, c_out(0) = 0: f(x, 0) = x exactly.
    torch.testing.assert_close(
        consistency_function(teacher.predict_v, schedule, x, batch.condition_latents, zero, config), x
    )
    c_skip, c_out = schedule.boundary_scalings(
        torch.tensor([0, 19, 499]), x, config.sigma_data, config.timestep_scaling
    )
    assert c_skip.flatten().tolist()[0] == 1.0 and c_out.flatten().tolist()[0] == 0.0
    assert c_skip.flatten()[1] < 1e-5 and c_out.flatten()[2] > 0.9999
    # At t = 499 the consistency function is (almost) the x̂₀ prediction.
    t = torch.full((3,), 499)
    f = consistency_function(teacher.predict_v, schedule, x, batch.condition_latents, t, config)
    x0 = schedule.x0_from_v(x, teacher.predict_v(x, batch.condition_latents, t), t)
    torch.testing.assert_close(f, x0, rtol=1e-4, atol=1e-4)


def test_timestep_grid_respects_skip_and_leap_limit():
    schedule = NoiseSchedule()
    leap = timestep_grid(schedule, LeapConfig(skip=20, max_timestep=699))
    assert leap.tolist() == list(range(19, 700, 20))
    full = timestep_grid(schedule, LeapConfig(skip=20, max_timestep=699, no_leap=True))
    assert full.tolist() == list(range(19, 1000, 20))
    assert timestep_grid(schedule, LeapConfig(skip=50, max_timestep=300)).tolist() == [
        49,
        99,
        149,
        199,
        249,
        299,
    ]

    like = torch.zeros(4000, 1, 1, 1, 1)  # only its batch size matters
    drawn = draw_leap(leap, like, torch.Generator().manual_seed(0)).start_timesteps
    assert set(drawn.tolist()) == set(leap.tolist())  # every grid point, nothing else
    drawn_full = draw_leap(full, like, torch.Generator().manual_seed(0)).start_timesteps
    assert drawn_full.max() == 999 and set(drawn_full.tolist()) == set(full.tolist())
    assert previous_timesteps(torch.tensor([19, 39, 699]), 20).tolist() == [0, 19, 679]


def test_one_step_generation_leap_versus_pure_noise(networks):
    teacher, _, _, schedule, batch = networks
    noise = torch.randn_like(batch.latents)
    t = torch.tensor([199, 399, 599])
    leap = LeapConfig()
    a = one_step_generate(
        teacher.predict_v, schedule, batch.render_latents, batch.condition_latents, t, noise, leap
    )
    b = one_step_generate(
        teacher.predict_v, schedule, batch.render_latents + 1, batch.condition_latents, t, noise, leap
    )
    assert (a - b).abs().max() > 1e-3  # the leap result depends on the render
    no_leap = LeapConfig(no_leap=True)
    t = start_timestep(None, None, True, schedule.num_train_timesteps, batch.render_latents)
    c = one_step_generate(
        teacher.predict_v, schedule, batch.render_latents, batch.condition_latents, t, noise, no_leap
    )
    d = one_step_generate(
        teacher.predict_v, schedule, batch.render_latents + 1, batch.condition_latents, t, noise, no_leap
    )
    torch.testing.assert_close(c, d)  # pure noise at T−1 (ᾱ = 0): the render is not seen
    expected = -teacher.predict_v(noise, batch.condition_latents, torch.full((3,), 999))  # x̂₀ = −v̂ at ᾱ = 0
    torch.testing.assert_close(c, expected, rtol=1e-4, atol=1e-5)


def test_ema_update_maths():
    online = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(7))]
    target = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(7))]
    expected = [0.95 * t.detach().clone() + 0.05 * o.detach() for t, o in zip(target, online)]
    ema_update(target, online, 0.95)
    for t, e in zip(target, expected):
        torch.testing.assert_close(t.detach(), e)
    ema_update(target, online, 0.0)  # μ = 0 copies θ
    for t, o in zip(target, online):
        torch.testing.assert_close(t.detach(), o.detach())
