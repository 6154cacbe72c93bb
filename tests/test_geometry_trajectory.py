import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from videoscene.errors import VideoSceneError
from videoscene.geometry.cameras import check_rigid
from videoscene.geometry.trajectory import (
    camera_path,
    extended_cameras,
    interpolate_cameras,
    interpolate_keyframes,
    two_view_path,
)


def camera(rotvec, center) -> torch.Tensor:
    extrinsics = torch.eye(4, dtype=torch.float64)
    extrinsics[:3, :3] = torch.from_numpy(Rotation.from_rotvec(rotvec).as_matrix())
    extrinsics[:3, 3] = torch.tensor(center, dtype=torch.float64)
    return extrinsics


def angle_between(rotation_a: torch.Tensor, rotation_b: torch.Tensor) -> float:
    return float(Rotation.from_matrix((rotation_a.T @ rotation_b).numpy()).magnitude())


A = camera([0.1, -0.2, 0.3], [1.0, 2.0, 3.0])
B = camera([0.9, 0.4, -0.5], [-1.0, 0.5, 2.0])
K_A = torch.tensor([[1.0, 0, 0.5], [0, 1.5, 0.5], [0, 0, 1]], dtype=torch.float64)
K_B = torch.tensor([[1.2, 0, 0.4], [0, 1.7, 0.6], [0, 0, 1]], dtype=torch.float64)


@pytest.mark.parametrize("easing", ["linear", "cosine"])
def test_endpoints_are_exact_and_rotations_valid(easing):
    extrinsics, intrinsics = interpolate_cameras(A, B, K_A, K_B, 9, easing)
    assert extrinsics.shape == (9, 4, 4) and intrinsics.shape == (9, 3, 3)
    assert torch.equal(extrinsics[0], A) and torch.equal(extrinsics[-1], B)
    assert torch.equal(intrinsics[0], K_A) and torch.equal(intrinsics[-1], K_B)
    check_rigid(extrinsics, atol=1e-9)


def test_midpoint_is_the_geodesic_midpoint_and_speed_is_constant():
    extrinsics, intrinsics = interpolate_cameras(A, B, K_A, K_B, 9)
    total = angle_between(A[:3, :3], B[:3, :3])
    middle = extrinsics[4, :3, :3]
    assert angle_between(A[:3, :3], middle) == pytest.approx(total / 2, abs=1e-9)
    assert angle_between(middle, B[:3, :3]) == pytest.approx(total / 2, abs=1e-9)
    steps = [angle_between(extrinsics[i, :3, :3], extrinsics[i + 1, :3, :3]) for i in range(8)]
    np.testing.assert_allclose(steps, total / 8, atol=1e-9)
    torch.testing.assert_close(extrinsics[4, :3, 3], (A[:3, 3] + B[:3, 3]) / 2)
    torch.testing.assert_close(intrinsics[4], (K_A + K_B) / 2)


def test_cosine_easing_starts_slowly_and_meets_linear_in_the_middle():
    linear, _ = interpolate_cameras(A, B, K_A, K_B, 9, "linear")
    eased, _ = interpolate_cameras(A, B, K_A, K_B, 9, "cosine")
    torch.testing.assert_close(eased[4], linear[4])
    # The first eased step covers (1 - cos(π/8)) / 2 ≈ 0.038 of the way instead of 1/8.
    first_step_eased, first_step_linear = (
        (path[1, :3, 3] - path[0, :3, 3]).norm() for path in (eased, linear)
    )
    assert first_step_eased < 0.4 * first_step_linear


def test_camera_path_passes_through_every_keyframe_at_its_time():
    C = camera([-0.3, 0.2, 0.1], [0.0, 0.0, 1.0])
    keys = torch.stack([A, B, C])
    key_intrinsics = torch.stack([K_A, K_B, K_A])
    extrinsics, intrinsics, times = camera_path(keys, key_intrinsics, torch.tensor([0.0, 4.0, 10.0]), 11)
    torch.testing.assert_close(times, torch.arange(11, dtype=torch.float64))
    for key, index in zip(range(3), (0, 4, 10)):
        torch.testing.assert_close(extrinsics[index], keys[key], atol=1e-12, rtol=0)
        torch.testing.assert_close(intrinsics[index], key_intrinsics[key], atol=1e-12, rtol=0)
    # Between B (t=4) and C (t=10), t=7 is the geodesic midpoint of that segment.
    assert angle_between(B[:3, :3], extrinsics[7, :3, :3]) == pytest.approx(
        angle_between(B[:3, :3], C[:3, :3]) / 2
    )
    check_rigid(extrinsics, atol=1e-9)


def test_bad_paths():
    with pytest.raises(VideoSceneError, match="increasing"):
        camera_path(torch.stack([A, B]), torch.stack([K_A, K_B]), torch.tensor([1.0, 1.0]), 5)
    with pytest.raises(VideoSceneError, match="at least 2"):
        interpolate_cameras(A, B, K_A, K_B, 1)
    with pytest.raises(VideoSceneError, match="easing"):
        interpolate_cameras(A, B, K_A, K_B, 5, "bounce")
    not_rigid = A.clone()
    not_rigid[:3, :3] *= 2
    with pytest.raises(VideoSceneError, match="rigid"):
        interpolate_cameras(not_rigid, B, K_A, K_B, 5)


@pytest.mark.parametrize("num_frames", [9, 17, 25, 49])
def test_extended_path_continues_the_geodesic_beyond_both_views(num_frames):
    extrinsics, intrinsics = extended_cameras(A, B, K_A, K_B, num_frames)
    m = (num_frames - 1) // 4
    assert extrinsics.shape == (num_frames, 4, 4)
    # The views are frames m and 3m, bit-exact; between them the path is the interpolated one.
    assert torch.equal(extrinsics[m], A) and torch.equal(extrinsics[3 * m], B)
    assert torch.equal(intrinsics[m], K_A) and torch.equal(intrinsics[3 * m], K_B)
    inner, inner_intrinsics = interpolate_cameras(A, B, K_A, K_B, 2 * m + 1)
    torch.testing.assert_close(extrinsics[m : 3 * m + 1], inner, atol=1e-12, rtol=0)
    torch.testing.assert_close(intrinsics[m : 3 * m + 1], inner_intrinsics, atol=1e-12, rtol=0)
    check_rigid(extrinsics, atol=1e-9)
    # Beyond the views: the same angular and linear speed, on the same great circle and line ...
    total = angle_between(A[:3, :3], B[:3, :3])
    steps = [angle_between(extrinsics[i, :3, :3], extrinsics[i + 1, :3, :3]) for i in range(num_frames - 1)]
    np.testing.assert_allclose(steps, total / (2 * m), atol=1e-9)
    assert angle_between(extrinsics[0, :3, :3], B[:3, :3]) == pytest.approx(1.5 * total, abs=1e-9)
    torch.testing.assert_close(extrinsics[0, :3, 3], A[:3, 3] - 0.5 * (B[:3, 3] - A[:3, 3]))
    torch.testing.assert_close(extrinsics[-1, :3, 3], B[:3, 3] + 0.5 * (B[:3, 3] - A[:3, 3]))
    # ... while a change of intrinsics stops at the views.
    assert torch.equal(intrinsics[0], K_A) and torch.equal(intrinsics[-1], K_B)


def test_two_view_path_agrees_with_the_keyframe_slerp_inside_the_views():
    times = torch.tensor([0.0, 0.1, 0.35, 0.8, 1.0], dtype=torch.float64)
    ours = two_view_path(A, B, K_A, K_B, times)
    slerp = interpolate_keyframes(
        torch.stack([A, B]), torch.stack([K_A, K_B]), torch.tensor([0.0, 1.0], dtype=torch.float64), times
    )
    for a, b in zip(ours, slerp):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_bad_extended_paths():
    with pytest.raises(VideoSceneError, match="extend must be"):
        extended_cameras(A, B, K_A, K_B, 9, extend=-0.1)
    with pytest.raises(VideoSceneError, match="at least 2"):
        extended_cameras(A, B, K_A, K_B, 1)
    with pytest.raises(VideoSceneError, match="finite"):
        two_view_path(A, B, K_A, K_B, torch.tensor([0.0, float("nan")], dtype=torch.float64))
