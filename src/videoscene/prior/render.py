"""Rendering the prior's Gaussians at target cameras: the coarse video (pipeline step 1), and the
nearest-context-view baseline it is measured against."""

from __future__ import annotations

import torch
from torch import Tensor

from videoscene.gaussians.rasterizer import render
from videoscene.prior.encoder import GaussianEncoder
from videoscene.types import Example, Gaussians, Views


def render_coarse(gaussians: Gaussians, context: Views, target: Views, image_shape: tuple[int, int], background: Tensor) -> Tensor:
    """Render the prior's Gaussians at the target cameras: [B, T, 3, H, W] (only `target`'s cameras are used)."""
    # Cull only what is behind or right at the camera; the prior's Gaussians lie within [near, far] of the context views.
    near = 0.1 * float(context.near.min())
    far = 10.0 * float(context.far.max())
    return render(gaussians, target.extrinsics, target.intrinsics, image_shape, background=background, near=near, far=far).color


def render_targets(model: GaussianEncoder, example: Example, background: Tensor) -> Tensor:
    """Predict Gaussians from the context views and render them at the target cameras: [B, T, 3, H, W]."""
    gaussians = model(example.context).gaussians
    return render_coarse(gaussians, example.context, example.target, tuple(example.target.image.shape[-2:]), background)


def nearest_context_images(example: Example) -> Tensor:
    """Baseline: for each target, the context image whose camera centre is closest."""
    context_centres = example.context.extrinsics[..., :3, 3]  # [B, V, 3]
    target_centres = example.target.extrinsics[..., :3, 3]  # [B, T, 3]
    nearest = torch.cdist(target_centres, context_centres).argmin(-1)  # [B, T]
    return torch.stack([example.context.image[b, nearest[b]] for b in range(nearest.shape[0])])
