"""First/last-frame conditioning of the CogVideoX interpolation backbone (as in the authors' released
inference; docs/method.md §3).

    ĩ = i + σ·ε,  log σ ~ N(−3, 0.5²)        (pixel space, i ∈ [−1, 1]; one σ per sample for both frames)
    c = [E(ĩ_first), 0, …, 0, E(ĩ_last)]    (each frame VAE-encoded alone → 1 latent frame; zeros between)
    transformer input = [x_t ‖ c] on the channel axis → [B, f, 2C, h, w]

The noise augmentation makes the model tolerate condition frames that are not clean photos (the demo
conditions on rendered frames). Every random draw takes an explicit torch.Generator.
"""

from __future__ import annotations

import torch
from diffusers.utils.torch_utils import randn_tensor
from jaxtyping import Float
from torch import Tensor

from videoscene.errors import VideoSceneError
from videoscene.video.config import ConditioningConfig
from videoscene.video.models import VideoBackbone


def sample_noise_augmentation_sigma(
    batch_size: int,
    config: ConditioningConfig,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Float[Tensor, " batch"]:
    """σ = exp(N(mean, std²)) per sample (median e^−3 ≈ 0.05 in [−1, 1] pixel units)."""
    standard = randn_tensor((batch_size,), generator=generator, device=torch.device(device))
    return (config.noise_aug_log_sigma_mean + config.noise_aug_log_sigma_std * standard).exp()


def augment_condition_frames(
    frames: Float[Tensor, "batch 2 3 height width"],
    sigma: Float[Tensor, " batch"],
    generator: torch.Generator | None = None,
) -> Float[Tensor, "batch 2 3 height width"]:
    """Map [0, 1] frames to [−1, 1] and add σ·ε (the VAE boundary: the result is not clamped, as upstream)."""
    noise = randn_tensor(frames.shape, generator=generator, device=frames.device, dtype=frames.dtype)
    return frames * 2 - 1 + sigma.to(frames).reshape(-1, 1, 1, 1, 1) * noise


def place_condition_latents(
    first: Float[Tensor, "batch channels latent_height latent_width"],
    last: Float[Tensor, "batch channels latent_height latent_width"],
    num_latent_frames: int,
) -> Float[Tensor, "batch latent_frames channels latent_height latent_width"]:
    """[first, zeros × (f−2), last] along the frame axis."""
    if num_latent_frames < 2:
        raise VideoSceneError(
            f"first/last-frame conditioning needs at least 2 latent frames, got {num_latent_frames}"
        )
    zeros = first.new_zeros(first.shape[0], num_latent_frames - 2, *first.shape[1:])
    return torch.cat([first[:, None], zeros, last[:, None]], dim=1)


def encode_condition_frames(
    backbone: VideoBackbone,
    first_frame: Float[Tensor, "batch 3 height width"],
    last_frame: Float[Tensor, "batch 3 height width"],
    num_latent_frames: int,
    generator: torch.Generator | None = None,
    noise_augmentation: bool = True,
) -> Float[Tensor, "batch latent_frames channels latent_height latent_width"]:
    """Condition latents for the transformer from the two input views (in [0, 1])."""
    if first_frame.shape != last_frame.shape or first_frame.ndim != 4 or first_frame.shape[1] != 3:
        raise VideoSceneError(
            "first and last frames must both be [batch, 3, height, width], got "
            f"{tuple(first_frame.shape)} and {tuple(last_frame.shape)}"
        )
    config = backbone.config.conditioning
    batch = first_frame.shape[0]
    frames = torch.stack([first_frame, last_frame], dim=1)
    if noise_augmentation:
        sigma = sample_noise_augmentation_sigma(batch, config, generator, device=frames.device)
        pixels = augment_condition_frames(frames, sigma, generator)
    else:
        pixels = frames * 2 - 1
    # Each frame alone is a 1-frame video (→ 1 latent frame); both frames go through the VAE as one batch.
    latents = backbone.encode_pixels(
        pixels.reshape(batch * 2, 1, *pixels.shape[2:]),
        generator=generator,
        sample_posterior=config.sample_posterior,
    )
    latents = latents.reshape(batch, 2, *latents.shape[2:])
    return place_condition_latents(latents[:, 0], latents[:, 1], num_latent_frames)
