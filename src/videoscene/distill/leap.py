"""3D-aware leap flow distillation: the loss of the paper's Eq. 6 (§3.3; docs/method.md §4).

For a clip with render latent x₀ʳ, ground-truth latent x₀ and first/last condition latents c:

    t_{n+1} ~ U(grid ∩ [0, T′])                           grid = {k−1, 2k−1, …}, the teacher's 50-step grid
    x_{t_{n+1}} = √ᾱ_{t_{n+1}}·x₀ʳ + √(1−ᾱ_{t_{n+1}})·ε      the leap: the *render* is noised, not the data
    x̂_{t_n}  = Ψ_φ(x_{t_{n+1}}, t_{n+1} → t_n)             one teacher DDIM step, t_n = max(t_{n+1} − k, 0)
    f(x, t)   = c_skip(t)·x + c_out(t)·x̂₀(x, t)            consistency function, f(x, 0) = x
    L_D       = d( f_θ(x_{t_{n+1}}, t_{n+1}),  f_θ⁻(x̂_{t_n}, t_n) )   (Eq. 6; θ⁻ = EMA of θ, no gradient)

with d the pseudo-Huber distance √((a−b)² + c²) − c (or L2), averaged over elements. All three networks see
the same condition latents c. Beside Eq. 6, an optional ground-truth term (not in the paper) pulls the
one-step result towards the clip's ground-truth latent:

    L = λ_D·L_D + λ_gt·d( f_θ(x_{t_{n+1}}, t_{n+1}),  x₀ ) + λ_px·|v − y|₁ + λ_ssim·(1 − SSIM(v, y)),
    v = r + D(x̂₀) − D(x₀ʳ),  x̂₀ = f_θ(…)

where the last two terms score, in pixels, the video v the pipeline shows with its render skip (r: the
coarse render, y: the ground-truth frames, D: the frozen VAE decoder, gradients through it; SSIM per frame).

The ablation `no_leap` replaces x₀ʳ by x₀ and the grid by all of [0, T]:
standard consistency distillation, sampled from pure noise afterwards.

Networks are passed as *denoisers*: callables (x_t, c, t) → v̂ (e.g. `VideoBackbone.predict_v`, or the module
accelerate wrapped). Every random draw is made by the caller (`draw_leap`), so the batched loss and its
per-sample reference twin see identical inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from videoscene.distill.config import LeapConfig
from videoscene.errors import VideoSceneError
from videoscene.metrics.image import ssim
from videoscene.video.models import VideoBackbone
from videoscene.video.schedule import NoiseSchedule

Latents = Float[Tensor, "batch latent_frames channels latent_height latent_width"]
Denoiser = Callable[[Tensor, Tensor, Tensor], Tensor]  # (x_t, condition latents, t [B]) → v̂


@dataclass
class LatentBatch:
    """One batch of cached clips, all [B, f, C, h, w] (D: [B, f, 2, h, w])."""

    render_latents: Latents  # x₀ʳ: the VAE latent of the prior's coarse render
    latents: Latents  # x₀: the VAE latent of the ground-truth clip
    condition_latents: Latents  # c: [E(first), 0, …, 0, E(last)]
    view_disagreement: Tensor | None = None  # D: DDPNet's optional second input (policy.ddpnet.policy_inputs)
    render_frames: Tensor | None = None  # r: the coarse render, [B, F, 3, H, W] in [0, 1] (the pixel term)
    target_frames: Tensor | None = None  # y: the ground-truth frames, likewise

    def __post_init__(self) -> None:
        shapes = {
            tuple(self.render_latents.shape),
            tuple(self.latents.shape),
            tuple(self.condition_latents.shape),
        }
        if len(shapes) != 1 or self.latents.ndim != 5:
            raise VideoSceneError(
                "render, ground-truth and condition latents must share one [B, f, C, h, w] shape, got "
                f"{shapes}"
            )

    def to(self, device: torch.device | str) -> LatentBatch:
        return LatentBatch(*(None if value is None else value.to(device) for value in self._fields()))

    def index(self, item) -> LatentBatch:
        return LatentBatch(*(None if value is None else value[item] for value in self._fields()))

    def _fields(self) -> tuple[Tensor | None, ...]:
        return (
            self.render_latents,
            self.latents,
            self.condition_latents,
            self.view_disagreement,
            self.render_frames,
            self.target_frames,
        )


@dataclass
class LeapDraw:
    """The random part of one loss evaluation: the start timestep t_{n+1} and the noise ε per sample."""

    start_timesteps: Int[Tensor, " batch"]
    noise: Latents


@dataclass
class LeapLoss:
    loss: Float[Tensor, ""]  # mean of per_sample
    per_sample: Float[Tensor, " batch"]


# -- timesteps -----------------------------------------------------------------------------------------------
def timestep_grid(schedule: NoiseSchedule, config: LeapConfig) -> Int[Tensor, " n"]:
    """Start timesteps t_{n+1} the loss may draw: the skip-k grid up to T′ (leap) or the whole grid (no
    leap)."""
    grid = schedule.skip_grid(config.skip)
    return grid if config.no_leap else grid[grid <= config.max_timestep]


def previous_timesteps(start_timesteps: Int[Tensor, " batch"], skip: int) -> Int[Tensor, " batch"]:
    """t_n = t_{n+1} − k, clamped at 0 as in LCM: the lowest grid point steps to the clean end."""
    return (start_timesteps - skip).clamp(min=0)


def draw_leap(grid: Int[Tensor, " n"], like: Latents, generator: torch.Generator) -> LeapDraw:
    """t_{n+1} uniform on `grid` and ε ~ N(0, I), both from `generator` (a CPU generator: reproducible
    anywhere)."""
    batch = like.shape[0]
    index = torch.randint(len(grid), (batch,), generator=generator)
    noise = torch.randn(like.shape, generator=generator, dtype=torch.float32)
    return LeapDraw(grid[index].to(like.device), noise.to(like.device))


# -- building blocks -----------------------------------------------------------------------------------------
def consistency_function(
    denoiser: Denoiser,
    schedule: NoiseSchedule,
    x_t: Latents,
    condition_latents: Latents,
    timesteps: Int[Tensor, " batch"],
    config: LeapConfig,
) -> Latents:
    """f(x_t, t) = c_skip(t)·x_t + c_out(t)·x̂₀(x_t, t) with x̂₀ = √ᾱ·x_t − √(1−ᾱ)·v̂ (LCM's scalings)."""
    v = denoiser(x_t, condition_latents, timesteps)
    x0 = schedule.x0_from_v(x_t, v, timesteps)
    c_skip, c_out = schedule.boundary_scalings(timesteps, x_t, config.sigma_data, config.timestep_scaling)
    return c_skip * x_t + c_out * x0


@torch.no_grad()
def teacher_step(
    teacher: VideoBackbone,
    schedule: NoiseSchedule,
    x_t: Latents,
    condition_latents: Latents,
    timesteps: Int[Tensor, " batch"],
    previous: Int[Tensor, " batch"],
    guidance_scale: float = 1.0,
) -> Latents:
    """x̂_{t_n} = Ψ_φ(x_{t_{n+1}}): one deterministic DDIM step of the frozen teacher, optionally with
    classifier-free guidance v̂ = v̂_u + w·(v̂_c − v̂_u) (null text, same image condition)."""
    if guidance_scale == 1.0:
        v = teacher.predict_v(x_t, condition_latents, timesteps)
    else:
        # Both branches in one batch; each sample keeps its own timestep.
        batch = x_t.shape[0]
        text = torch.cat([teacher.prompt_embedding.null(batch), teacher.prompt_embedding(batch)])
        v_u, v_c = teacher.predict_v(
            torch.cat([x_t, x_t]),
            torch.cat([condition_latents, condition_latents]),
            timesteps.repeat(2),
            text,
        ).chunk(2)
        v = v_u + guidance_scale * (v_c - v_u)
    return schedule.ddim_step(x_t, v, timesteps, previous)


def noised_start(schedule: NoiseSchedule, batch: LatentBatch, draw: LeapDraw, no_leap: bool) -> Latents:
    """x_{t_{n+1}}: the render latent noised to t_{n+1} (leap), or the ground-truth latent (standard CD)."""
    source = batch.latents if no_leap else batch.render_latents
    return schedule.add_noise(source, draw.noise, draw.start_timesteps)


def distance(prediction: Latents, target: Latents, config: LeapConfig) -> Float[Tensor, " batch"]:
    """d(a, b) per sample: mean over elements of √((a−b)² + c²) − c (pseudo-Huber) or (a−b)² (L2)."""
    difference = (prediction.float() - target.float()).flatten(1)
    if config.distance == "l2":
        return difference.square().mean(dim=1)
    c = config.huber_c
    return ((difference.square() + c * c).sqrt() - c).mean(dim=1)


# -- the loss (Eq. 6) ----------------------------------------------------------------------------------------
def leap_distillation_loss(
    student: Denoiser,
    target: Denoiser,
    teacher: VideoBackbone,
    schedule: NoiseSchedule,
    batch: LatentBatch,
    draw: LeapDraw,
    config: LeapConfig,
) -> LeapLoss:
    """λ_D·L_D(θ, θ⁻; Φ) + λ_gt·d(f_θ, x₀) for a batch, all samples through each network at once. Gradients
    reach only `student`."""
    t_next = draw.start_timesteps
    t_prev = previous_timesteps(t_next, config.skip)
    x_next = noised_start(schedule, batch, draw, config.no_leap)

    # Student f_θ(x_{t_{n+1}}, t_{n+1}).
    prediction = consistency_function(student, schedule, x_next, batch.condition_latents, t_next, config)

    per_sample = torch.zeros(prediction.shape[0], device=prediction.device)
    if config.leap_weight > 0:
        # Teacher step and EMA target f_θ⁻(x̂_{t_n}, t_n), both without gradient.
        with torch.no_grad():
            x_prev = teacher_step(
                teacher,
                schedule,
                x_next,
                batch.condition_latents,
                t_next,
                t_prev,
                config.teacher_guidance_scale,
            )
            target_value = consistency_function(
                target, schedule, x_prev, batch.condition_latents, t_prev, config
            )
        per_sample = per_sample + config.leap_weight * distance(prediction, target_value, config)
    if config.ground_truth_weight > 0:
        per_sample = per_sample + config.ground_truth_weight * distance(prediction, batch.latents, config)
    if config.scores_pixels:
        video = render_skip_video(teacher, prediction, batch)
        per_sample = per_sample + config.pixel_weight * (video - batch.target_frames).abs().flatten(1).mean(1)
        if config.ssim_weight > 0:
            per_sample = per_sample + config.ssim_weight * (1 - ssim(video, batch.target_frames).mean(1))
    return LeapLoss(per_sample.mean(), per_sample)


def render_skip_video(teacher: VideoBackbone, prediction: Latents, batch: LatentBatch) -> Tensor:
    """r + D(x̂₀) − D(x₀ʳ): the video the pipeline shows with its render skip, differentiable in x̂₀ (the VAE
    is frozen; D(x₀ʳ) carries no gradient)."""
    if batch.render_frames is None or batch.target_frames is None:
        raise VideoSceneError(
            "leap.pixel_weight and leap.ssim_weight need the render and ground-truth frames in the cache; "
            "set data.store_frames to true"
        )
    with torch.no_grad():
        render_round_trip = teacher.decode_latents(batch.render_latents)
    return batch.render_frames + teacher.decode_latents(prediction) - render_round_trip


def leap_distillation_loss_reference(
    student: Denoiser,
    target: Denoiser,
    teacher: VideoBackbone,
    schedule: NoiseSchedule,
    batch: LatentBatch,
    draw: LeapDraw,
    config: LeapConfig,
) -> LeapLoss:
    """The same loss one sample at a time, written out step by step (the twin of `leap_distillation_loss`)."""
    losses = []
    for i in range(batch.latents.shape[0]):
        t_next = draw.start_timesteps[i : i + 1]
        t_prev = torch.clamp(t_next - config.skip, min=0)
        source = batch.latents[i : i + 1] if config.no_leap else batch.render_latents[i : i + 1]
        condition = batch.condition_latents[i : i + 1]
        alpha_bar_next = schedule.alphas_cumprod[t_next.item()].item()
        alpha_bar_prev = schedule.alphas_cumprod[t_prev.item()].item()
        x_next = alpha_bar_next**0.5 * source + (1 - alpha_bar_next) ** 0.5 * draw.noise[i : i + 1]

        def f(denoiser: Denoiser, x: Tensor, t: Tensor, alpha_bar: float) -> Tensor:
            x0 = alpha_bar**0.5 * x - (1 - alpha_bar) ** 0.5 * denoiser(x, condition, t)
            scaled_t = t.item() * config.timestep_scaling
            c_skip = config.sigma_data**2 / (scaled_t**2 + config.sigma_data**2)
            c_out = scaled_t / (scaled_t**2 + config.sigma_data**2) ** 0.5
            return c_skip * x + c_out * x0

        prediction = f(student, x_next, t_next, alpha_bar_next)
        with torch.no_grad():
            w = config.teacher_guidance_scale
            v = teacher.predict_v(x_next, condition, t_next)
            if w != 1:
                v_u = teacher.predict_v(
                    x_next, condition, t_next, prompt_embeds=teacher.prompt_embedding.null(1)
                )
                v = v_u + w * (v - v_u)
            x0_teacher = alpha_bar_next**0.5 * x_next - (1 - alpha_bar_next) ** 0.5 * v
            eps_teacher = alpha_bar_next**0.5 * v + (1 - alpha_bar_next) ** 0.5 * x_next
            x_prev = alpha_bar_prev**0.5 * x0_teacher + (1 - alpha_bar_prev) ** 0.5 * eps_teacher
            target_value = f(target, x_prev, t_prev, alpha_bar_prev)

        def d(a: Tensor, b: Tensor) -> Tensor:
            if config.distance == "l2":
                return (a - b).square().mean()
            c = config.huber_c
            return (((a - b).square() + c * c).sqrt() - c).mean()

        ground_truth = batch.latents[i : i + 1]
        loss = config.leap_weight * d(prediction, target_value) + config.ground_truth_weight * d(
            prediction, ground_truth
        )
        if config.scores_pixels:
            with torch.no_grad():
                render_round_trip = teacher.decode_latents(batch.render_latents[i : i + 1])
            video = batch.render_frames[i : i + 1] + teacher.decode_latents(prediction) - render_round_trip
            frames = batch.target_frames[i : i + 1]
            loss = loss + config.pixel_weight * (video - frames).abs().mean()
            frame_ssim = [ssim(video[0, f], frames[0, f]) for f in range(frames.shape[1])]
            loss = loss + config.ssim_weight * (1 - torch.stack(frame_ssim).mean())
        losses.append(loss)
    per_sample = torch.stack(losses)
    return LeapLoss(per_sample.mean(), per_sample)


# -- inference and rewards -----------------------------------------------------------------------------------
def one_step_generate(
    student: Denoiser,
    schedule: NoiseSchedule,
    render_latents: Latents,
    condition_latents: Latents,
    timesteps: Int[Tensor, " batch"] | int,
    noise: Latents,
    config: LeapConfig,
) -> Latents:
    """The student's one-step result f_θ(x_tʳ, t) from the render latent noised to t (the paper's inference).

    `timesteps` is where the step starts, as `distill.student.start_timestep` decides it (T−1 without the
    leap); the ablation never sees the render, only noise.
    """
    batch = render_latents.shape[0]
    timesteps = torch.as_tensor(timesteps, device=render_latents.device).long().reshape(-1).expand(batch)
    source = torch.zeros_like(render_latents) if config.no_leap else render_latents
    x_t = schedule.add_noise(source, noise, timesteps)
    return consistency_function(student, schedule, x_t, condition_latents, timesteps, config)


def latent_mse(prediction: Latents, reference: Latents) -> Float[Tensor, " batch"]:
    """Per-sample mean squared error over (f, C, h, w): −reward of DDPNet, and the oracle's table."""
    return (prediction.float() - reference.float()).square().flatten(1).mean(dim=1)


# -- EMA target ----------------------------------------------------------------------------------------------
@torch.no_grad()
def ema_update(target: Iterable[nn.Parameter], online: Iterable[nn.Parameter], decay: float) -> None:
    """θ⁻ ← μ·θ⁻ + (1−μ)·θ, in place, parameter by parameter."""
    for target_parameter, online_parameter in zip(target, online, strict=True):
        target_parameter.lerp_(online_parameter.to(target_parameter.dtype), 1 - decay)
