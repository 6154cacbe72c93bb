"""Rendering the prior at target cameras (prior/render.py): the nearest-context-view baseline, the coarse
render's shape, background and culling, and render_targets on a real (random) encoder. view_disagreement has
its tests in test_policy_inputs.py."""

import math

import pytest
import torch
from weights_factory import HEIGHT, WIDTH, make_context

from videoscene.prior.config import TINY
from videoscene.prior.encoder import GaussianEncoder
from videoscene.prior.render import nearest_context_images, render_coarse, render_targets
from videoscene.types import Example, Gaussians, Views

pytestmark = pytest.mark.usefixtures("one_thread")


def views_at(centres: torch.Tensor, height=8, width=12, near=1.0, far=10.0) -> Views:
    """Cameras [B, V] at the given centres [B, V, 3], each turned by its own angle about y (the baseline must
    look at positions only), with images that name their view: image[b, v] is filled with 10·b + v."""
    b, v = centres.shape[:2]
    extrinsics = torch.eye(4).repeat(b, v, 1, 1)
    for i in range(b):
        for j in range(v):
            angle = 0.7 * j - 0.3 * i
            extrinsics[i, j, :3, :3] = torch.tensor(
                [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]]
            )
    extrinsics[..., :3, 3] = centres
    image = (
        (10 * torch.arange(b)[:, None] + torch.arange(v)[None])
        .float()[..., None, None, None]
        .expand(b, v, 3, height, width)
    )
    intrinsics = torch.tensor([[1.0, 0, 0.5], [0, 1.5, 0.5], [0, 0, 1]]).repeat(b, v, 1, 1)
    return Views(image.clone(), extrinsics, intrinsics, torch.full((b, v), near), torch.full((b, v), far))


def test_nearest_context_image_is_the_one_with_the_closest_camera_centre():
    x = torch.tensor
    context = views_at(
        torch.stack(
            [
                x([[0.0, 0, 0], [1.0, 0, 0], [5.0, 0, 0]]),
                x([[0.0, 0, 0], [0.0, 3.0, 0], [0.0, 0, -4.0]]),
            ]
        )
    )
    target = views_at(
        torch.stack(
            [
                x([[-1.0, 0, 0], [0.4, 0, 0], [0.6, 0, 0], [2.9, 0, 0], [3.1, 0, 0], [9.0, 0, 0]]),
                x(
                    [
                        [0.0, 1.4, 0],
                        [0.0, 1.6, 0],
                        [0.0, 0, -2.1],
                        [0.0, 2.0, -3.0],
                        [0.0, 0, 0.5],
                        [0.0, 10.0, 0],
                    ]
                ),
            ]
        )
    )
    images = nearest_context_images(Example(context, target))
    assert images.shape == (2, 6, 3, 8, 12)
    expected = torch.tensor([[0, 0, 1, 1, 2, 2], [10, 11, 12, 12, 10, 11]]).float()
    torch.testing.assert_close(images[:, :, 0, 0, 0], expected)
    for b in range(2):
        for t in range(6):
            nearest = int(expected[b, t]) - 10 * b
            assert torch.equal(images[b, t], context.image[b, nearest])
    # A target standing exactly at a context camera gets that camera's own image.
    assert torch.equal(nearest_context_images(Example(context, context)), context.image)


def wall(depth: float, colour: float, count: int = 300, seed: int = 0) -> Gaussians:
    """Opaque Gaussians of one grey level covering a wall at z = `depth` in front of cameras near the
    origin."""
    generator = torch.Generator().manual_seed(seed)
    xy = (
        (torch.rand(count, 2, generator=generator) - 0.5) * torch.tensor([1.3, 1.0]) * depth
    )  # the view at that depth, and more
    means = torch.cat([xy, torch.full((count, 1), depth)], -1)
    harmonics = torch.zeros(count, 1, 3)
    harmonics[:, 0] = (colour - 0.5) / 0.28209479177387814  # SH band 0: colour = c₀·Y₀ + 0.5
    return Gaussians(
        means[None],
        torch.full((1, count, 3), 0.06 * depth),
        torch.tensor([1.0, 0, 0, 0]).repeat(1, count, 1),
        harmonics[None],
        torch.full((1, count), 0.99),
    )


def straight_views(count: int, height=16, width=24) -> Views:
    """`count` cameras at z = 0 stepping along x, looking down +z, near 1 and far 10."""
    views = views_at(torch.zeros(1, count, 3), height, width)
    views.extrinsics[..., :3, :3] = torch.eye(3)
    views.extrinsics[..., 0, 3] = torch.linspace(-0.2, 0.2, count)
    return views


def test_render_coarse_draws_the_gaussians_over_the_background():
    context, target = straight_views(2), straight_views(3)
    background = torch.tensor([[0.0, 0.5, 1.0]])
    color = render_coarse(wall(4.0, 0.3), context, target.cameras, (16, 24), background)
    assert color.shape == (1, 3, 3, 16, 24)
    assert ((color - 0.3).abs() < 0.02).float().mean() > 0.95  # the grey wall covers (almost) every pixel
    # Turned around, the targets see nothing but the background.
    target.extrinsics[..., :3, :3] = torch.diag(torch.tensor([-1.0, 1.0, -1.0]))
    behind = render_coarse(wall(4.0, 0.3), context, target.cameras, (16, 24), background)
    torch.testing.assert_close(behind, background[:, None, :, None, None].expand(1, 3, 3, 16, 24))


@pytest.mark.parametrize("depth", [0.3, 40.0])
def test_render_coarse_culls_only_what_is_right_at_the_camera(depth):
    """Context near 1, far 10: a wall at 0.3 (0.1·near < 0.3 < near) or at 40 (far < 40 < 10·far) is still
    drawn."""
    context, target = straight_views(2), straight_views(1)
    target.extrinsics[..., 0, 3] = 0.0  # facing the wall's centre
    color = render_coarse(wall(depth, 0.8), context, target.cameras, (16, 24), torch.zeros(1, 3))
    assert ((color - 0.8).abs() < 0.05).float().mean() > 0.9


def test_render_coarse_uses_a_background_per_batch_element():
    context, target = straight_views(2), straight_views(2)
    target.extrinsics[..., :3, :3] = torch.diag(torch.tensor([-1.0, 1.0, -1.0]))  # looking away from the wall
    context, target = (
        Views(*(torch.cat([t, t]) for t in (v.image, v.extrinsics, v.intrinsics, v.near, v.far)))
        for v in (context, target)
    )
    one = wall(4.0, 0.3)
    gaussians = Gaussians(
        *(torch.cat([t, t]) for t in (one.means, one.scales, one.rotations, one.harmonics, one.opacities))
    )
    background = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    color = render_coarse(gaussians, context, target.cameras, (8, 12), background)
    torch.testing.assert_close(color, background[:, None, :, None, None].expand(2, 2, 3, 8, 12))


@pytest.fixture(scope="module")
def encoder() -> GaussianEncoder:
    torch.manual_seed(0)
    return GaussianEncoder(TINY).eval()


def test_render_targets_renders_the_encoders_gaussians_at_the_target_cameras(encoder):
    context = make_context(batch=1)
    targets = context.extrinsics.clone()
    targets[..., 0, 3] += 0.1
    target = Views(
        torch.zeros(1, 2, 3, HEIGHT // 2, WIDTH // 2), targets, context.intrinsics, context.near, context.far
    )
    background = torch.tensor([[0.2, 0.4, 0.6]])
    with torch.no_grad():
        color = render_targets(encoder, Example(context, target), background)
        gaussians = encoder(context).gaussians
    assert color.shape == (1, 2, 3, HEIGHT // 2, WIDTH // 2)  # the target images' size, not the context's
    assert torch.isfinite(color).all() and color.std() > 0.01
    # Looking away from the scene, the same targets see the background only.
    away = targets.clone()
    away[..., :3, :3] = away[..., :3, :3] @ torch.diag(torch.tensor([-1.0, 1.0, -1.0]))
    turned = Views(target.image, away, target.intrinsics, target.near, target.far)
    with torch.no_grad():
        blank = render_targets(encoder, Example(context, turned), background)
    torch.testing.assert_close(blank, background[:, None, :, None, None].expand_as(blank))
    # At the context cameras the render is built from the context's own Gaussians: the same as rendering them
    # directly.
    with torch.no_grad():
        at_context = render_targets(
            encoder,
            Example(
                context,
                Views(context.image, context.extrinsics, context.intrinsics, context.near, context.far),
            ),
            background,
        )
        direct = render_coarse(gaussians, context, context.cameras, (HEIGHT, WIDTH), background)
    torch.testing.assert_close(at_context, direct)
