"""Rendering the prior's Gaussians at target cameras: the coarse video (pipeline step 1), how far it can be
trusted (the context views' disagreement, DDPNet's second input), and the nearest-context-view baseline."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from videoscene.errors import VideoSceneError
from videoscene.gaussians.rasterizer import render
from videoscene.prior.encoder import GaussianEncoder
from videoscene.types import Cameras, Example, Gaussians, Views

# MVSplat's renderer evaluates SH up to band 3: the band-4 coefficients its preset predicts are never seen,
# so they are never rendered here either (the weights were trained so).
RENDER_SH_DEGREE = 3


def render_coarse(
    gaussians: Gaussians, context: Views, cameras: Cameras, image_shape: tuple[int, int], background: Tensor
) -> Tensor:
    """Render the prior's Gaussians at the target cameras ([B, T] of them): [B, T, 3, H, W]."""
    return render_coarse_with_alpha(gaussians, context, cameras, image_shape, background)[0]


def render_coarse_with_alpha(
    gaussians: Gaussians, context: Views, cameras: Cameras, image_shape: tuple[int, int], background: Tensor
) -> tuple[Float[Tensor, "batch time 3 height width"], Float[Tensor, "batch time height width"]]:
    """The coarse video and its opacity (0 where no Gaussian covers a pixel: the render's holes)."""
    # Cull only what is behind or right at the camera; the prior's Gaussians lie within [near, far] of the
    # context views.
    near = 0.1 * float(context.near.min())
    far = 10.0 * float(context.far.max())
    output = render(
        gaussians,
        cameras.extrinsics,
        cameras.intrinsics,
        image_shape,
        background=background,
        near=near,
        far=far,
        sh_degree=min(gaussians.sh_degree, RENDER_SH_DEGREE),
    )
    return output.color, output.alpha


def view_disagreement(
    gaussians: Gaussians,
    num_views: int,
    context: Views,
    cameras: Cameras,
    image_shape: tuple[int, int],
    coverage_alpha: float = 0.5,
) -> Float[Tensor, "batch target 2 height width"]:
    """Where the coarse render is unreliable, seen from the prior's own output: [spread, coverage] per pixel.

    The prior predicts its Gaussians view by view (view-major along the Gaussian axis). Rendering each context
    view's Gaussians alone at a target camera gives V guesses of the same pixel. Where the views put different
    colours there (a wrong depth, or content only one view saw) the fused render is a blend of disagreeing
    guesses (at the [B, T] target `cameras`). Channel 0 is the spread mean_v |c_v − c̄| (mean over RGB) at
    pixels every view covers, 0 elsewhere; channel 1 is the fraction of views covering the pixel (alpha >
    `coverage_alpha`).
    """
    count = gaussians.means.shape[-2]
    if num_views < 2 or count % num_views:
        raise VideoSceneError(
            f"{count} Gaussians cannot be split into {num_views} context views (need ≥ 2 equal parts)"
        )
    near = 0.1 * float(context.near.min())
    far = 10.0 * float(context.far.max())
    per_view = [
        render(
            gaussians.select((slice(None), part)),  # [B, G, …]: split along G
            cameras.extrinsics,
            cameras.intrinsics,
            image_shape,
            background=torch.zeros(
                gaussians.means.shape[0], 3, dtype=gaussians.means.dtype, device=gaussians.means.device
            ),
            near=near,
            far=far,
            sh_degree=min(gaussians.sh_degree, RENDER_SH_DEGREE),
        )
        for part in torch.arange(count, device=gaussians.means.device).chunk(num_views)
    ]
    colours = torch.stack([output.color for output in per_view])  # [V, B, T, 3, H, W]
    covered = torch.stack([output.alpha for output in per_view]) > coverage_alpha  # [V, B, T, H, W]
    spread = (colours - colours.mean(0)).abs().mean(dim=(0, 3)) * covered.all(0)
    return torch.stack([spread, covered.float().mean(0)], dim=2)


def render_targets(model: GaussianEncoder, example: Example, background: Tensor) -> Tensor:
    """Predict Gaussians from the context views and render them at the target cameras: [B, T, 3, H, W]."""
    gaussians = model(example.context).gaussians
    return render_coarse(
        gaussians, example.context, example.target.cameras, example.target.image_shape, background
    )


def nearest_context_images(example: Example) -> Tensor:
    """Baseline: for each target, the context image whose camera centre is closest."""
    context_centres = example.context.extrinsics[..., :3, 3]  # [B, V, 3]
    target_centres = example.target.extrinsics[..., :3, 3]  # [B, T, 3]
    nearest = torch.cdist(target_centres, context_centres).argmin(-1)  # [B, T]
    return torch.stack([example.context.image[b, nearest[b]] for b in range(nearest.shape[0])])
