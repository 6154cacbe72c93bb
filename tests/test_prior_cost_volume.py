"""The prior's plane-sweep cost volume and depth (prior/cost_volume.py): candidate planes, pixel rays, the
sweep finding a known plane, what scores zero, depth and density inside their ranges, attention within a scene
only."""

import math

import pytest
import torch
from weights_factory import HEIGHT, WIDTH, make_context

from videoscene.prior.config import TINY
from videoscene.prior.cost_volume import DepthPredictor, disparity_candidates, plane_sweep_correlation
from videoscene.prior.gaussian_head import pixel_rays
from videoscene.prior.unet import CrossViewAttention

pytestmark = pytest.mark.usefixtures("one_thread")


def test_candidates_are_uniform_in_disparity_from_far_to_near():
    near = torch.tensor([[1.0, 2.0]])
    far = torch.tensor([[20.0, 5.0]])
    candidates = disparity_candidates(near, far, 5)
    assert candidates.shape == (1, 2, 5)
    torch.testing.assert_close(candidates[..., 0], 1 / far)  # index 0 is the far plane
    torch.testing.assert_close(candidates[..., -1], 1 / near)
    steps = candidates.diff(dim=-1)
    torch.testing.assert_close(steps, ((1 / near - 1 / far) / 4)[..., None].expand(1, 2, 4))


def test_pixel_rays_go_through_pixel_centres_with_z_one():
    h, w = 4, 6
    fx, fy, cx, cy = 0.8, 1.1, 0.45, 0.55
    intrinsics = torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]], dtype=torch.float64)
    rays = pixel_rays(intrinsics, h, w)
    assert rays.shape == (3, h * w)
    y, x = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    expected = torch.stack(
        [
            ((x.flatten() + 0.5) / w - cx) / fx,
            ((y.flatten() + 0.5) / h - cy) / fy,
            torch.ones(h * w, dtype=torch.float64),
        ]
    )
    torch.testing.assert_close(rays, expected)
    assert rays[:, 2 * w + 5].tolist() == pytest.approx(
        [((5.5 / 6) - cx) / fx, ((2.5 / 4) - cy) / fy, 1.0]
    )  # row 2, column 5
    # Batched, and with a skewed K: projecting the rays gives back the normalised pixel centres.
    skewed = intrinsics.clone()
    skewed[0, 1] = 0.05
    batch = torch.stack([intrinsics, skewed]).expand(3, 2, 3, 3)
    rays = pixel_rays(batch, h, w)
    assert rays.shape == (3, 2, 3, h * w)
    centres = torch.stack(
        [(x.flatten() + 0.5) / w, (y.flatten() + 0.5) / h, torch.ones(h * w, dtype=torch.float64)]
    )
    torch.testing.assert_close(batch @ rays, centres.expand(3, 2, 3, h * w))


def painted_plane(
    extrinsics: torch.Tensor, intrinsics: torch.Tensor, depth: float, h: int, w: int
) -> torch.Tensor:
    """Features [1, V, 32, h, w] that are a function of the world point on the plane z = `depth` each pixel
    sees."""
    frequencies = torch.randn(16, 2, generator=torch.Generator().manual_seed(0)) * 3  # below Nyquist
    features = []
    for v in range(extrinsics.shape[1]):
        rays = extrinsics[0, v, :3, :3] @ pixel_rays(intrinsics[0, v], h, w)  # world directions
        centre = extrinsics[0, v, :3, 3]
        points = (rays * ((depth - centre[2]) / rays[2])).T + centre  # [hw, 3] on the plane
        phase = (
            points[:, :2] @ frequencies.T
        )  # (cos, sin) pairs: constant norm, so the dot product peaks at alignment
        features.append(torch.cat([phase.cos(), phase.sin()], dim=-1).T.reshape(32, h, w))
    return torch.stack(features)[None]


def test_plane_sweep_peaks_at_the_true_depth():
    """Features painted on a plane z = 4 seen by two cameras a pure translation apart: the correlation peaks
    at disparity 1/4."""
    h, w, depth = 24, 32, 4.0
    extrinsics = torch.eye(4).repeat(1, 2, 1, 1)
    extrinsics[0, 1, 0, 3] = 0.6
    intrinsics = torch.tensor([[0.8, 0, 0.5], [0, 1.1, 0.5], [0, 0, 1]]).repeat(1, 2, 1, 1)
    features = painted_plane(extrinsics, intrinsics, depth, h, w)
    near, far = torch.full((1, 2), 1.0), torch.full((1, 2), 20.0)
    candidates = disparity_candidates(near, far, 64)
    correlation = plane_sweep_correlation(features, extrinsics, intrinsics, candidates)
    assert correlation.shape == (1, 2, 64, h, w)
    step = (1 / near - 1 / far)[0, 0] / 63
    # Camera 1 is to the right: it sees the right half of view 0, and view 0 sees its left half.
    for view, columns in ((0, slice(w // 2, None)), (1, slice(None, w // 2))):
        best = candidates[0, view][correlation[0, view].argmax(0)][:, columns]
        assert ((best - 1 / depth).abs() <= step).float().mean() > 0.9


def test_plane_sweep_finds_a_plane_seen_by_a_turned_camera():
    """The same with the second camera also turned 0.1 rad towards the first (a rotation and a
    translation)."""
    h, w, depth = 24, 32, 5.0
    extrinsics = torch.eye(4).repeat(1, 2, 1, 1)
    angle = -0.1
    extrinsics[0, 1, :3, :3] = torch.tensor(
        [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]]
    )
    extrinsics[0, 1, 0, 3] = 0.8
    intrinsics = torch.tensor([[0.8, 0, 0.5], [0, 1.1, 0.5], [0, 0, 1]]).repeat(1, 2, 1, 1)
    features = painted_plane(extrinsics, intrinsics, depth, h, w)
    candidates = disparity_candidates(torch.full((1, 2), 1.0), torch.full((1, 2), 20.0), 64)
    correlation = plane_sweep_correlation(features, extrinsics, intrinsics, candidates)
    step = (1.0 - 1 / 20.0) / 63  # about 0.3 pixels of parallax
    seen = correlation[0, 0][:, :, w // 2 :]  # the pixels of view 0 that view 1 also sees (its right half)
    # Over all of them, the best plane is the true one.
    assert (candidates[0, 0][seen.mean(dim=(1, 2)).argmax()] - 1 / depth).abs() <= step
    # Pixel by pixel within two steps: the warped rows now fall between pixel rows, so the bilinear sampling
    # of the features is off by more than under a pure sideways translation.
    best = candidates[0, 0][seen.argmax(0)]
    assert ((best - 1 / depth).abs() <= 2 * step).float().mean() > 0.95


def test_points_outside_the_other_camera_score_zero():
    h, w = 8, 12
    features = torch.randn(1, 2, 16, h, w)
    intrinsics = torch.tensor([[0.8, 0, 0.5], [0, 1.1, 0.5], [0, 0, 1]]).repeat(1, 2, 1, 1)
    candidates = disparity_candidates(torch.full((1, 2), 1.0), torch.full((1, 2), 20.0), 8)
    aside = torch.eye(4).repeat(1, 2, 1, 1)
    aside[0, 1, 0, 3] = 100.0  # every plane point lies far outside the other image
    assert plane_sweep_correlation(features, aside, intrinsics, candidates).abs().max() == 0
    # The same cameras a small step apart do see each other's features.
    near = torch.eye(4).repeat(1, 2, 1, 1)
    near[0, 1, 0, 3] = 0.1
    assert plane_sweep_correlation(features, near, intrinsics, candidates).abs().max() > 0.1


@pytest.fixture(scope="module")
def predictor() -> DepthPredictor:
    torch.manual_seed(0)
    return DepthPredictor(TINY).eval()


def predictor_inputs(context):
    b, v = context.image.shape[:2]
    generator = torch.Generator().manual_seed(2)
    shape = (b, v, TINY.d_feature, HEIGHT // 4, WIDTH // 4)
    trans, cnn = torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
    return context.image, trans, cnn, context.extrinsics, context.intrinsics, context.near, context.far


def test_depth_and_density_lie_in_their_ranges(predictor):
    context = make_context(batch=2, views=3)
    context.near[1] = torch.tensor([0.5, 2.0, 1.0])  # a depth range of its own per view
    context.far[1] = torch.tensor([4.0, 50.0, 10.0])
    with torch.no_grad():
        prediction = predictor(*predictor_inputs(context))
    b, v, gpp = 2, 3, TINY.gaussians_per_pixel
    assert prediction.depth.shape == prediction.density.shape == (b, v, gpp, HEIGHT, WIDTH)
    assert prediction.coarse_disparity.shape == prediction.confidence.shape == (b, v, HEIGHT // 4, WIDTH // 4)
    assert prediction.raw_gaussians.shape == (b, v, 2 + 3 + 4 + 3 * TINY.d_sh, HEIGHT, WIDTH)
    near, far = context.near[..., None, None, None], context.far[..., None, None, None]
    assert (prediction.depth >= near * (1 - 1e-5)).all() and (prediction.depth <= far * (1 + 1e-5)).all()
    assert ((prediction.density > 0) & (prediction.density < 1)).all()
    disparity = prediction.coarse_disparity
    assert (disparity >= 1 / context.far[..., None, None] - 1e-6).all() and (
        disparity <= 1 / context.near[..., None, None] + 1e-6
    ).all()
    assert (prediction.confidence >= 1 / TINY.num_depth_candidates - 1e-6).all() and (
        prediction.confidence <= 1
    ).all()


def test_depth_is_clamped_to_near_far_even_for_huge_corrections(predictor):
    context = make_context(batch=1, views=2)
    big = DepthPredictor(TINY).eval()
    big.load_state_dict(predictor.state_dict())
    with torch.no_grad():
        big.to_disparity[-1].weight.mul_(1e4)  # corrections far beyond the [1/far, 1/near] disparity range
        prediction = big(*predictor_inputs(context))
    depth = prediction.depth
    assert depth.min() >= 1.0 * (1 - 1e-5) and depth.max() <= 20.0 * (1 + 1e-5)
    # Both ends are reached: the clamp, not the network, keeps the depth in range.
    assert torch.isclose(depth, torch.tensor(1.0)).any() and torch.isclose(depth, torch.tensor(20.0)).any()


def test_cross_view_attention_mixes_the_views_of_a_scene_only():
    torch.manual_seed(0)
    attention = CrossViewAttention(16, head_channels=8).eval()
    torch.nn.init.ones_(attention.norm.weight)  # zero-initialised, so that the block starts as the identity
    x = torch.randn(2 * 2, 16, 4, 6)  # 2 scenes × 2 views, view index fastest
    edited = x.clone()
    edited[1] = torch.randn(16, 4, 6)  # scene 0, view 1
    with torch.no_grad():
        before, after = attention(x, views=2), attention(edited, views=2)
        alone = attention(x, views=1)
    assert not torch.allclose(after[0], before[0])  # view 0 of the same scene sees the change
    torch.testing.assert_close(after[2:], before[2:])  # the other scene does not
    assert not torch.allclose(alone[0], before[0])  # with views=1 view 0 attends to itself only
