"""The prior's Gaussian adapter (prior/gaussian_head.py) on hand-made raw channels and depths: means on the
unit pixel rays at the given distance, unit quaternions (xyzw in, wxyz out), positive scales in pixel
footprints, opacity = density / gpp, SH damping, MVSplat's camera-to-world SH rotation (checked against
e3nn, the library the released model used), and rigid motion of the cameras."""

import math

import pytest
import torch
from weights_factory import random_rotation

from videoscene.gaussians.math import sh_basis
from videoscene.geometry.rotations import quaternion_to_matrix
from videoscene.prior.config import TINY
from videoscene.prior.cost_volume import DepthPrediction
from videoscene.prior.gaussian_head import (
    SH_FRAME,
    GaussianAdapter,
    pixel_rays,
    quaternion_multiply,
    sh_rotation_matrices,
)

pytestmark = pytest.mark.usefixtures("one_thread")

H, W = 8, 12  # the adapter is per pixel: no size constraint
RAW = 2 + 3 + 4 + 3 * TINY.d_sh


def head_inputs(batch=1, views=2, gpp=1, seed=0):
    """Random raw channels, depths in [1, 20], densities in (0, 1), and turned, shifted cameras."""
    generator = torch.Generator().manual_seed(seed)
    depth = DepthPrediction(
        depth=1 + 19 * torch.rand(batch, views, gpp, H, W, generator=generator),
        density=torch.rand(batch, views, gpp, H, W, generator=generator).clamp(0.01, 0.99),
        raw_gaussians=torch.randn(batch, views, RAW, H, W, generator=generator),
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
    return depth, extrinsics, intrinsics


def run(depth, extrinsics, intrinsics, gpp=1):
    return GaussianAdapter(TINY.replace(gaussians_per_pixel=gpp))(depth, extrinsics, intrinsics)


def to_camera(points: torch.Tensor, extrinsics: torch.Tensor) -> torch.Tensor:
    world_to_camera = torch.linalg.inv(extrinsics)
    return points @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]


def test_the_adapter_has_no_parameters():
    assert list(GaussianAdapter(TINY).parameters()) == [] and GaussianAdapter(TINY).state_dict() == {}


@pytest.mark.parametrize("gpp", [1, 2])
def test_means_lie_on_the_pixel_rays_at_the_given_distance(gpp):
    """Each mean sits at its distance from its camera centre and, moved by at most half a pixel, inside its
    own pixel."""
    depth, extrinsics, intrinsics = head_inputs(batch=2, gpp=gpp)
    gaussians = run(depth, extrinsics, intrinsics, gpp)
    means = gaussians.means.reshape(2, 2, H, W, gpp, 3)  # ordered (view, row, column, gaussian-per-pixel)
    columns, rows = torch.arange(W)[:, None] + 0.5, torch.arange(H)[:, None, None] + 0.5
    for b in range(2):
        for v in range(2):
            camera = to_camera(means[b, v], extrinsics[b, v])  # [h, w, gpp, 3]
            distance = depth.depth[b, v].permute(1, 2, 0)
            torch.testing.assert_close(camera.norm(dim=-1), distance, rtol=1e-4, atol=1e-4)
            projected = camera @ intrinsics[b, v].T
            u = projected[..., 0] / projected[..., 2] * W
            row = projected[..., 1] / projected[..., 2] * H
            assert (u - columns).abs().max() <= 0.5 + 1e-3 and (row - rows).abs().max() <= 0.5 + 1e-3


def test_with_no_offset_the_mean_is_the_camera_centre_plus_the_unit_ray_times_the_distance():
    """mean = c + R · unit(K⁻¹[u, v, 1]) · depth with (u, v) the pixel centre, for a turned and shifted
    camera."""
    depth, extrinsics, intrinsics = head_inputs()
    depth.raw_gaussians[:, :, :2] = 0  # the sub-pixel offset channels: sigmoid(0) − 0.5 = 0
    gaussians = run(depth, extrinsics, intrinsics)
    for v in range(2):
        rays = torch.nn.functional.normalize(pixel_rays(intrinsics[0, v], H, W), dim=0)  # [3, hw]
        expected = (extrinsics[0, v, :3, :3] @ (rays * depth.depth[0, v, 0].flatten())).T + extrinsics[
            0, v, :3, 3
        ]
        torch.testing.assert_close(
            gaussians.means[0, v * H * W : (v + 1) * H * W], expected, atol=1e-5, rtol=1e-5
        )


@pytest.mark.parametrize("gpp", [1, 2])
def test_rotations_scales_opacities_and_harmonics_are_valid(gpp):
    depth, extrinsics, intrinsics = head_inputs(batch=2, gpp=gpp)
    config = TINY.replace(gaussians_per_pixel=gpp)
    gaussians = run(depth, extrinsics, intrinsics, gpp)
    count = 2 * gpp * H * W
    assert gaussians.means.shape == gaussians.scales.shape == (2, count, 3)
    assert gaussians.rotations.shape == (2, count, 4) and gaussians.opacities.shape == (2, count)
    assert gaussians.harmonics.shape == (2, count, TINY.d_sh, 3) and gaussians.sh_degree == TINY.sh_degree
    torch.testing.assert_close(gaussians.rotations.norm(dim=-1), torch.ones(2, count), atol=1e-5, rtol=0)
    # Scales: distance · 0.1 (1/(fx W) + 1/(fy H)) · a multiplier in [s_min, s_max].
    footprint = 0.1 * (1 / (0.9 * W) + 1 / (1.3 * H))
    distance = depth.depth.permute(0, 1, 3, 4, 2).reshape(2, count, 1)
    multiplier = gaussians.scales / (distance * footprint)
    assert (gaussians.scales > 0).all()
    assert (multiplier >= config.gaussian_scale_min - 1e-4).all() and (
        multiplier <= config.gaussian_scale_max + 1e-4
    ).all()
    # Opacity = density / gaussians per pixel: never more than one Gaussian's worth per pixel.
    torch.testing.assert_close(
        gaussians.opacities, depth.density.permute(0, 1, 3, 4, 2).reshape(2, count) / gpp
    )
    assert ((gaussians.opacities > 0) & (gaussians.opacities < 1 / gpp)).all()
    if gpp == 2:  # the two Gaussians of a pixel share everything but their depth
        rotations = gaussians.rotations.reshape(2, -1, 2, 4)
        torch.testing.assert_close(rotations[:, :, 0], rotations[:, :, 1])


def test_higher_sh_bands_are_damped():
    """With the identity camera the SH are the raw channels (RGB-major) times 1 (band 0) and 0.1 · 0.25^l."""
    depth, _, intrinsics = head_inputs()
    gaussians = run(depth, torch.eye(4).repeat(1, 2, 1, 1), intrinsics)
    d_sh = TINY.d_sh
    sh_raw = (
        depth.raw_gaussians[0, :, 9:].reshape(2, 3, d_sh, H, W).permute(0, 3, 4, 2, 1).reshape(-1, d_sh, 3)
    )
    bands = torch.tensor([0] + [1] * 3 + [2] * 5 + [3] * 7)
    damping = torch.where(bands == 0, 1.0, 0.1 * 0.25 ** bands.float())
    torch.testing.assert_close(gaussians.harmonics[0], sh_raw * damping[:, None], atol=1e-6, rtol=1e-5)


def test_moving_the_cameras_moves_the_gaussians_rigidly():
    """The same raw output seen by cameras moved by a rigid transform T: means move by T, rotations turn by
    T's rotation R, scales and opacities stay; colours turn by P R Pᵀ (MVSplat's SH rotation)."""
    depth, extrinsics, intrinsics = head_inputs()
    transform = torch.eye(4)
    transform[:3, :3] = random_rotation(torch.Generator().manual_seed(5))
    transform[:3, 3] = torch.tensor([0.5, -2.0, 1.0])
    a = run(depth, extrinsics, intrinsics)
    b = run(depth, transform @ extrinsics, intrinsics)
    rotation = transform[:3, :3]
    torch.testing.assert_close(b.means, a.means @ rotation.T + transform[:3, 3], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        quaternion_to_matrix(b.rotations), rotation @ quaternion_to_matrix(a.rotations), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(b.scales, a.scales)
    torch.testing.assert_close(b.opacities, a.opacities)
    frame = torch.tensor(SH_FRAME)
    turned = sh_rotation_matrices(frame @ rotation @ frame.T, TINY.sh_degree) @ a.harmonics
    torch.testing.assert_close(b.harmonics, turned, atol=1e-5, rtol=1e-4)


def test_world_quaternion_is_the_camera_rotation_composed_with_the_predicted_one():
    depth, extrinsics, intrinsics = head_inputs()
    in_world = run(depth, extrinsics, intrinsics)
    in_camera = run(depth, torch.eye(4).repeat(1, 2, 1, 1), intrinsics)
    rotations = quaternion_to_matrix(in_world.rotations[0].reshape(2, H * W, 4))
    camera_rotations = quaternion_to_matrix(in_camera.rotations[0].reshape(2, H * W, 4))
    torch.testing.assert_close(
        rotations, extrinsics[0, :, None, :3, :3] @ camera_rotations, atol=1e-5, rtol=0
    )
    # In the camera frame the quaternion is the normalised raw xyzw output (channels 5–8) as wxyz.
    predicted = depth.raw_gaussians[0, :, 5:9].permute(0, 2, 3, 1).reshape(2, H * W, 4)
    torch.testing.assert_close(
        in_camera.rotations[0].reshape(2, H * W, 4),
        torch.nn.functional.normalize(predicted, dim=-1).roll(1, dims=-1),
        atol=1e-6,
        rtol=0,
    )


def test_gradients_reach_the_raw_channels_and_the_depth():
    depth, extrinsics, intrinsics = head_inputs()
    for tensor in (depth.depth, depth.density, depth.raw_gaussians):
        tensor.requires_grad_(True)
    g = run(depth, extrinsics, intrinsics)
    generator = torch.Generator().manual_seed(1)
    loss = sum(
        (torch.randn(t.shape, generator=generator) * t).sum()
        for t in (g.means, g.scales, g.rotations, g.harmonics, g.opacities)
    )
    loss.backward()
    assert depth.depth.grad.abs().min() > 0 and depth.density.grad.abs().min() > 0
    assert (depth.raw_gaussians.grad.abs().amax(dim=(0, 1, 3, 4)) > 0).all()


def test_sh_rotation_matches_e3nn_wigner_matrices():
    """The released model rotates SH with e3nn's Wigner D matrices; in the Inria basis they equal the exact
    rotation by P R Pᵀ (P = SH_FRAME), band by band, up to degree 4."""
    o3 = pytest.importorskip("e3nn.o3")
    generator = torch.Generator().manual_seed(3)
    frame = torch.tensor(SH_FRAME, dtype=torch.float64)
    for _ in range(4):
        rotation = random_rotation(generator, torch.float64)
        alpha, beta, gamma = o3.matrix_to_angles(rotation)
        wigner = torch.block_diag(*[o3.wigner_D(l, alpha, beta, gamma) for l in range(5)]).double()
        ours = sh_rotation_matrices(frame @ rotation @ frame.T, 4)
        torch.testing.assert_close(ours, wigner, atol=1e-5, rtol=0)  # e3nn computes in float32
    assert math.isclose(torch.linalg.det(frame).item(), 1.0)  # a proper rotation


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
