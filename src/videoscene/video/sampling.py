"""Multi-step sampling of the first/last-frame video model with diffusers' CogVideoX schedulers.

Two starts (docs/results.md compares both):
- from pure noise at t = 999 (trailing spacing; ᾱ_999 = 0, so the start carries no signal), or
- from a video (the coarse render) VAE-encoded and forward-noised to a chosen t, then denoised over
  timesteps ≤ t (SDEdit-style: the paper's "teacher from the render" baseline; with 1 step this is exactly
  the released inference, x̂₀ from one transformer call, docs/method.md §6).

Classifier-free guidance (off by default: the paper samples without it) mixes
v̂ = v̂_u + w·(v̂_c − v̂_u); the unconditional branch replaces the text by the null (all-zero) prompt
and/or the condition latents by zeros. It only helps a model trained with those conditions dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import torch
from diffusers import CogVideoXDPMScheduler
from diffusers.utils.torch_utils import randn_tensor
from jaxtyping import Float
from torch import Tensor

from videoscene.errors import VideoSceneError
from videoscene.video.conditioning import encode_condition_frames
from videoscene.video.models import VideoBackbone
from videoscene.video.schedule import NoiseSchedule, sampling_timesteps

logger = logging.getLogger(__name__)

Latents = Float[Tensor, "batch latent_frames channels latent_height latent_width"]


@dataclass(frozen=True)
class SamplingConfig:
    num_steps: int = 50
    solver: Literal["ddim", "dpm"] = "ddim"
    # None: start from pure noise. An int t: start from the given video noised to t.
    start_timestep: int | None = None
    guidance_scale: float = 1.0  # 1 = no guidance (one transformer pass per step)
    guidance_drop_text: bool = True
    guidance_drop_image: bool = False


def _guided_v(
    backbone: VideoBackbone, x_t: Latents, condition: Latents, t: int, config: SamplingConfig
) -> Latents:
    """v̂ at (x_t, t), with classifier-free guidance when guidance_scale ≠ 1 (both branches in one batch)."""
    batch = x_t.shape[0]
    if config.guidance_scale == 1.0:
        return backbone.predict_v(x_t, condition, t)
    if not (config.guidance_drop_text or config.guidance_drop_image):
        raise VideoSceneError(
            "guidance_scale ≠ 1 needs an unconditional branch: drop the text, the image latents, or both"
        )
    text = backbone.prompt_embedding(batch)
    text_u = backbone.prompt_embedding.null(batch) if config.guidance_drop_text else text
    condition_u = torch.zeros_like(condition) if config.guidance_drop_image else condition
    v_u, v_c = backbone.predict_v(
        torch.cat([x_t, x_t]), torch.cat([condition_u, condition]), t, prompt_embeds=torch.cat([text_u, text])
    ).chunk(2)
    return v_u + config.guidance_scale * (v_c - v_u)


@torch.no_grad()
def sample_latents(
    backbone: VideoBackbone,
    condition_latents: Latents,
    config: SamplingConfig,
    generator: torch.Generator | None = None,
    start_latents: Latents | None = None,
) -> Latents:
    """Denoise from noise, or from `start_latents` (clean x₀ʳ) noised to `config.start_timestep`."""
    schedule = NoiseSchedule(backbone.config.schedule)
    if (start_latents is None) != (config.start_timestep is None):
        raise VideoSceneError("a start timestep needs a start video and vice versa (give both or neither)")
    if start_latents is not None and start_latents.shape != condition_latents.shape:
        raise VideoSceneError(
            f"start latents {tuple(start_latents.shape)} and condition latents "
            f"{tuple(condition_latents.shape)} differ"
        )
    timesteps = sampling_timesteps(schedule, config.num_steps, config.start_timestep).tolist()
    solver = schedule.make_solver(config.solver)
    solver.set_timesteps(config.num_steps)  # fixes the stride T // num_steps its `step` goes back by

    noise = randn_tensor(
        condition_latents.shape, generator=generator, device=condition_latents.device, dtype=torch.float32
    )
    if start_latents is None:
        latents = noise * solver.init_noise_sigma
    else:
        latents = schedule.add_noise(start_latents.float(), noise, timesteps[0])

    previous_x0 = None  # DPM-Solver++(2M) keeps the last x̂₀
    for index, t in enumerate(timesteps):
        v = _guided_v(backbone, latents, condition_latents, t, config)
        if isinstance(solver, CogVideoXDPMScheduler):
            t_back = timesteps[index - 1] if index > 0 else None
            latents, previous_x0 = solver.step(
                v, previous_x0, t, t_back, latents, generator=generator, return_dict=False
            )
        else:
            latents = solver.step(v, t, latents, return_dict=False)[0]
    logger.debug("sampled %d steps (%s) from t=%d", len(timesteps), config.solver, timesteps[0])
    return latents


@torch.no_grad()
def sample_video(
    backbone: VideoBackbone,
    first_frame: Float[Tensor, "batch 3 height width"],
    last_frame: Float[Tensor, "batch 3 height width"],
    config: SamplingConfig,
    seed: int = 0,
    num_frames: int | None = None,
    start_video: Float[Tensor, "batch frames 3 height width"] | None = None,
) -> Float[Tensor, "batch frames 3 height width"]:
    """A video between two frames (in [0, 1]): from noise, or from `start_video` (e.g. the coarse render)."""
    # 1. Check inputs
    if start_video is not None:
        num_frames = start_video.shape[1]
        if start_video.shape[-2:] != first_frame.shape[-2:]:
            raise VideoSceneError(
                f"start video is {tuple(start_video.shape[-2:])}, the frames {tuple(first_frame.shape[-2:])}"
            )
    num_frames = num_frames or backbone.config.num_frames
    step = 2 * backbone.config.vae.temporal_compression_ratio
    if (num_frames - 1) % step:
        raise VideoSceneError(
            f"num_frames={num_frames} must be {step}k+1 ({step + 1}, {2 * step + 1}, ...) to decode back to "
            "itself"
        )
    latent_frames = (num_frames - 1) // backbone.config.vae.temporal_compression_ratio + 1
    device = backbone.device
    generator = torch.Generator(device=device).manual_seed(seed)

    # 2. Encode the two views into the condition latents [first, 0, …, 0, last]
    condition = encode_condition_frames(
        backbone, first_frame.to(device), last_frame.to(device), latent_frames, generator=generator
    )

    # 3. Encode the start video, if any
    start_latents = (
        None if start_video is None else backbone.encode_video(start_video.to(device), generator=generator)
    )

    # 4. Denoise
    latents = sample_latents(backbone, condition, config, generator=generator, start_latents=start_latents)

    # 5. Decode
    return backbone.decode_latents(latents)
