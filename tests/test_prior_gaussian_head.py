"""The prior's Gaussian head (prior/gaussian_head.py) on hand-made depth: means on the pixel rays at the given
z-depth, unit quaternions, positive scales in pixel footprints, opacity = density / gpp, SH of the right size
and damping, and the exact move from the camera frame to the world for a turned and shifted camera."""

import pytest
import torch
from weights_factory import random_rotation

from videoscene.gaussians.math import sh_basis
from videoscene.geometry.rotations import quaternion_to_matrix
from videoscene.prior.config import TINY
from videoscene.prior.cost_volume import DepthPrediction, pixel_rays
from videoscene.prior.gaussian_head import GaussianHead, quaternion_multiply, sh_rotation_matrices

pytestmark = pytest.mark.usefixtures("one_thread")

H, W = 8, 12  # the head is per pixel: no size constraint


def head_inputs(batch=1, views=2, gpp=1, seed=0):
    """Random images and features, depths in [1, 20], densities in (0, 1), and turned, shifted cameras."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, views, 3, H, W, generator=generator)
    depth = DepthPrediction(
        depth=1 + 19 * torch.rand(batch, views, gpp, H, W, generator=generator),
        density=torch.rand(batch, views, gpp, H, W, generator=generator).clamp(0.01, 0.99),
        refined_features=torch.randn(batch * views, TINY.depth_unet_feat_dim, H, W, generator=generator),
        projected_features=torch.randn(batch * views, TINY.fullres_feature_dim, H, W, generator=generator),
        coarse_disparity=torch.zeros(batch, views, H // 4, W // 4),
        confidence=torch.zeros(batch, views, H // 4, W // 4),
    )
    extrinsics = torch.eye(4).repeat(batch, views, 1, 1)
    for b in range(batch):
        for v in range(views):
            extrinsics[b, v, :3, :3] = random_rotation(generator)
            extrinsics[b, v, :3, 3] = torch.randn(3, generator=generator)
    intrinsics = torch.tensor([[0.9, 0.0, 0.45], [0.0, 1.3, 0.55], [0.0, 0.0, 1.0]]).repeat(
        batch, views, 1, 1
    )
    return images, depth, extrinsics, intrinsics


def make_head(gpp=1, seed=0) -> GaussianHead:
    torch.manual_seed(seed)
    return GaussianHead(TINY.replace(gaussians_per_pixel=gpp)).eval()


def run(head, images, depth, extrinsics, intrinsics, raw_out=None):
    """The head's Gaussians; `raw_out` (a list) receives its raw per-pixel output [b·v, channels, h, w]."""
    hook = (
        head.net.register_forward_hook(lambda module, args, output: raw_out.append(output))
        if raw_out is not None
        else None
    )
    try:
        with torch.no_grad():
            return head(images, depth, extrinsics, intrinsics)
    finally:
        if hook is not None:
            hook.remove()


def to_camera(points: torch.Tensor, extrinsics: torch.Tensor) -> torch.Tensor:
    world_to_camera = torch.linalg.inv(extrinsics)
    return points @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]


@pytest.mark.parametrize("gpp", [1, 2])
def test_means_lie_on_the_pixel_rays_at_the_given_z_depth(gpp):
    """Each mean sits at its z-depth in its camera and, moved by at most half a pixel, inside its own
    pixel."""
    images, depth, extrinsics, intrinsics = head_inputs(batch=2, gpp=gpp)
    gaussians = run(make_head(gpp), images, depth, extrinsics, intrinsics)
    means = gaussians.means.reshape(2, 2, gpp, H, W, 3)  # ordered (view, gaussian-per-pixel, row, column)
    columns, rows = torch.arange(W) + 0.5, torch.arange(H)[:, None] + 0.5
    for b in range(2):
        for v in range(2):
            camera = to_camera(means[b, v], extrinsics[b, v])  # [gpp, h, w, 3]
            torch.testing.assert_close(camera[..., 2], depth.depth[b, v], rtol=1e-4, atol=1e-4)
            projected = camera @ intrinsics[b, v].T
            u = projected[..., 0] / projected[..., 2] * W
            row = projected[..., 1] / projected[..., 2] * H
            assert (u - columns).abs().max() <= 0.5 + 1e-3 and (row - rows).abs().max() <= 0.5 + 1e-3


def test_with_no_offset_the_mean_is_the_camera_centre_plus_the_rotated_ray_times_z():
    """mean = c + R · K⁻¹[u, v, 1] · z with (u, v) the pixel centre, for a turned and shifted camera."""
    head = make_head()
    with torch.no_grad():
        head.net[-1].weight[:2] = 0  # the sub-pixel offset channels: sigmoid(0) − 0.5 = 0
        head.net[-1].bias[:2] = 0
    images, depth, extrinsics, intrinsics = head_inputs()
    gaussians = run(head, images, depth, extrinsics, intrinsics)
    for v in range(2):
        rays = pixel_rays(intrinsics[0, v], H, W)  # [3, hw], z = 1
        expected = (extrinsics[0, v, :3, :3] @ (rays * depth.depth[0, v, 0].flatten())).T + extrinsics[
            0, v, :3, 3
        ]
        torch.testing.assert_close(
            gaussians.means[0, v * H * W : (v + 1) * H * W], expected, atol=1e-5, rtol=1e-5
        )


@pytest.mark.parametrize("gpp", [1, 2])
def test_rotations_scales_opacities_and_harmonics_are_valid(gpp):
    images, depth, extrinsics, intrinsics = head_inputs(batch=2, gpp=gpp)
    config = TINY.replace(gaussians_per_pixel=gpp)
    gaussians = run(make_head(gpp), images, depth, extrinsics, intrinsics)
    count = 2 * gpp * H * W
    assert gaussians.means.shape == gaussians.scales.shape == (2, count, 3)
    assert gaussians.rotations.shape == (2, count, 4) and gaussians.opacities.shape == (2, count)
    assert (
        gaussians.harmonics.shape == (2, count, (TINY.sh_degree + 1) ** 2, 3)
        and gaussians.sh_degree == TINY.sh_degree
    )
    torch.testing.assert_close(gaussians.rotations.norm(dim=-1), torch.ones(2, count), atol=1e-5, rtol=0)
    # Scales: z · pixel footprint · a multiplier in [s_min, s_max].
    footprint = 0.5 * (1 / (0.9 * W) + 1 / (1.3 * H))
    multiplier = gaussians.scales / (depth.depth.reshape(2, count, 1) * footprint)
    assert (gaussians.scales > 0).all()
    assert (multiplier >= config.gaussian_scale_min - 1e-5).all() and (
        multiplier <= config.gaussian_scale_max + 1e-5
    ).all()
    # Opacity = density / gaussians per pixel: in (0, 1), and never more than one Gaussian's worth per pixel.
    torch.testing.assert_close(gaussians.opacities, depth.density.reshape(2, count) / gpp)
    assert ((gaussians.opacities > 0) & (gaussians.opacities < 1 / gpp)).all()


def test_higher_sh_bands_are_damped():
    """With the identity camera the SH are the raw channels times 1 (band 0) and 0.1 · 0.25^l (band l ≥ 1)."""
    images, depth, _, intrinsics = head_inputs()
    raw = []
    gaussians = run(make_head(), images, depth, torch.eye(4).repeat(1, 2, 1, 1), intrinsics, raw)
    d_sh = (TINY.sh_degree + 1) ** 2
    sh_raw = (
        raw[0].reshape(2, -1, H, W)[:, 9:].permute(0, 2, 3, 1).reshape(2 * H * W, d_sh, 3)
    )  # after 2 + 3 + 4 channels
    bands = torch.tensor([0] + [1] * 3 + [2] * 5 + [3] * 7)
    damping = torch.where(bands == 0, 1.0, 0.1 * 0.25 ** bands.float())
    torch.testing.assert_close(gaussians.harmonics[0], sh_raw * damping[:, None], atol=1e-6, rtol=1e-5)


def test_moving_the_cameras_moves_the_gaussians_rigidly():
    """The same raw output seen by cameras moved by a rigid transform T: means move by T, rotations turn by
    T's rotation, colours turn with them (same colour along the turned direction); scales and opacities
    stay."""
    head = make_head()
    images, depth, extrinsics, intrinsics = head_inputs()
    transform = torch.eye(4)
    transform[:3, :3] = random_rotation(torch.Generator().manual_seed(5))
    transform[:3, 3] = torch.tensor([0.5, -2.0, 1.0])
    a = run(head, images, depth, extrinsics, intrinsics)
    b = run(head, images, depth, transform @ extrinsics, intrinsics)
    rotation = transform[:3, :3]
    torch.testing.assert_close(b.means, a.means @ rotation.T + transform[:3, 3], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        quaternion_to_matrix(b.rotations), rotation @ quaternion_to_matrix(a.rotations), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(b.scales, a.scales)
    torch.testing.assert_close(b.opacities, a.opacities)
    directions = torch.nn.functional.normalize(
        torch.randn(20, 3, generator=torch.Generator().manual_seed(6)), dim=-1
    )
    colour_a = torch.einsum("nd,gdc->gnc", sh_basis(TINY.sh_degree, directions), a.harmonics[0])
    colour_b = torch.einsum("nd,gdc->gnc", sh_basis(TINY.sh_degree, directions @ rotation.T), b.harmonics[0])
    torch.testing.assert_close(colour_b, colour_a, atol=1e-4, rtol=1e-4)


def test_world_quaternion_is_the_camera_rotation_composed_with_the_predicted_one():
    images, depth, extrinsics, intrinsics = head_inputs()
    raw = []
    head = make_head()
    in_world = run(head, images, depth, extrinsics, intrinsics, raw)
    in_camera = run(head, images, depth, torch.eye(4).repeat(1, 2, 1, 1), intrinsics)
    rotations = quaternion_to_matrix(in_world.rotations[0].reshape(2, H * W, 4))
    camera_rotations = quaternion_to_matrix(in_camera.rotations[0].reshape(2, H * W, 4))
    torch.testing.assert_close(
        rotations, extrinsics[0, :, None, :3, :3] @ camera_rotations, atol=1e-5, rtol=0
    )
    # In the camera frame the quaternion is the normalised raw output (channels 5–8).
    predicted = raw[0][:, 5:9].permute(0, 2, 3, 1).reshape(2, H * W, 4)
    torch.testing.assert_close(
        in_camera.rotations[0].reshape(2, H * W, 4),
        torch.nn.functional.normalize(predicted, dim=-1),
        atol=1e-6,
        rtol=0,
    )


def test_gradients_reach_the_head_and_the_depth():
    head = GaussianHead(TINY).train()
    images, depth, extrinsics, intrinsics = head_inputs()
    depth.depth.requires_grad_(True)
    depth.density.requires_grad_(True)
    g = head(images, depth, extrinsics, intrinsics)
    generator = torch.Generator().manual_seed(1)
    loss = sum(
        (torch.randn(t.shape, generator=generator) * t).sum()
        for t in (g.means, g.scales, g.rotations, g.harmonics, g.opacities)
    )
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    assert depth.depth.grad.abs().min() > 0 and depth.density.grad.abs().min() > 0


def test_sh_rotation_is_exact_and_composes():
    generator = torch.Generator().manual_seed(0)
    for degree in (3, 4):
        d_sh = (degree + 1) ** 2
        rotation = random_rotation(generator, torch.float64)
        coefficients = torch.randn(d_sh, 3, generator=generator, dtype=torch.float64)
        directions = torch.randn(50, 3, generator=generator, dtype=torch.float64)
        world = sh_rotation_matrices(rotation, degree) @ coefficients
        # colour seen along world direction d == colour of the camera-frame SH along Rᵀ d
        expected = sh_basis(degree, directions @ rotation) @ coefficients
        torch.testing.assert_close(sh_basis(degree, directions) @ world, expected, atol=1e-9, rtol=0)
        other = random_rotation(generator, torch.float64)
        torch.testing.assert_close(
            sh_rotation_matrices(rotation @ other, degree),
            sh_rotation_matrices(rotation, degree) @ sh_rotation_matrices(other, degree),
            atol=1e-9,
            rtol=0,
        )
        torch.testing.assert_close(
            sh_rotation_matrices(torch.eye(3, dtype=torch.float64), degree),
            torch.eye(d_sh, dtype=torch.float64),
            atol=1e-10,
            rtol=0,
        )


def test_quaternion_multiply_matches_matrix_product():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(10, 4, generator=generator), torch.randn(10, 4, generator=generator)
    a, b = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(
        quaternion_to_matrix(quaternion_multiply(a, b)),
        quaternion_to_matrix(a) @ quaternion_to_matrix(b),
        atol=1e-5,
        rtol=0,
    )
