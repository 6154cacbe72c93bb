import cv2
import numpy as np
import torch
from scipy.spatial.transform import Rotation

from videoscene.geometry.epipolar import (
    fundamental_matrix,
    pixel_centers,
    project,
    relative_pose,
    sampson_distance,
    unproject,
    unproject_depth_map,
)

SIZE = (60, 80)  # height, width


def look_at(center: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """OpenCV camera-to-world looking from `center` at `target`, world z up."""
    forward = (target - center) / (target - center).norm()
    right = torch.linalg.cross(forward, torch.tensor([0, 0, 1.0], dtype=center.dtype))
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    extrinsics = torch.eye(4, dtype=center.dtype)
    extrinsics[:3, :3] = torch.stack([right, down, forward], dim=-1)
    extrinsics[:3, 3] = center
    return extrinsics


def two_cameras():
    origin = torch.zeros(3, dtype=torch.float64)
    extrinsics_a = look_at(torch.tensor([4.0, 0.0, 1.0], dtype=torch.float64), origin)
    extrinsics_b = look_at(torch.tensor([3.0, 2.5, 1.5], dtype=torch.float64), origin)
    intrinsics_a = torch.tensor([[1.1, 0, 0.52], [0, 1.4, 0.47], [0, 0, 1]], dtype=torch.float64)
    intrinsics_b = torch.tensor([[0.9, 0, 0.5], [0, 1.2, 0.55], [0, 0, 1]], dtype=torch.float64)
    return extrinsics_a, intrinsics_a, extrinsics_b, intrinsics_b


def random_points(count=50, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).uniform(-0.7, 0.7, size=(count, 3)))


def test_point_on_the_optical_axis_projects_to_the_principal_point():
    extrinsics, intrinsics, _, _ = two_cameras()
    point = extrinsics[:3, 3] + 2.5 * extrinsics[:3, 2]
    pixels, depth = project(point[None], extrinsics, intrinsics, SIZE)
    torch.testing.assert_close(pixels[0], torch.tensor([0.52 * 80, 0.47 * 60], dtype=torch.float64))
    torch.testing.assert_close(depth[0], torch.tensor(2.5, dtype=torch.float64))


def test_unproject_inverts_project():
    extrinsics, intrinsics, _, _ = two_cameras()
    points = random_points()
    pixels, depth = project(points, extrinsics, intrinsics, SIZE)
    torch.testing.assert_close(unproject(pixels, depth, extrinsics, intrinsics, SIZE), points)
    depth_map = torch.rand(*SIZE, dtype=torch.float64) + 1
    world = unproject_depth_map(depth_map, extrinsics, intrinsics)
    reprojected, redepth = project(world.flatten(0, 1), extrinsics, intrinsics, SIZE)
    torch.testing.assert_close(reprojected, pixel_centers(*SIZE, torch.float64).flatten(0, 1))
    torch.testing.assert_close(redepth, depth_map.flatten())


def test_relative_pose_maps_camera_a_points_to_camera_b():
    extrinsics_a, _, extrinsics_b, _ = two_cameras()
    pose = relative_pose(extrinsics_a, extrinsics_b)
    point_a = torch.tensor([0.1, -0.2, 3.0], dtype=torch.float64)
    world = extrinsics_a[:3, :3] @ point_a + extrinsics_a[:3, 3]
    point_b = torch.linalg.inv(extrinsics_b)[:3, :3] @ world + torch.linalg.inv(extrinsics_b)[:3, 3]
    torch.testing.assert_close(pose[:3, :3] @ point_a + pose[:3, 3], point_b)


def test_fundamental_matrix_satisfies_the_epipolar_constraint_and_matches_opencv():
    extrinsics_a, intrinsics_a, extrinsics_b, intrinsics_b = two_cameras()
    size_b = (90, 100)
    fundamental = fundamental_matrix(extrinsics_a, intrinsics_a, SIZE, extrinsics_b, intrinsics_b, size_b)
    points = random_points()
    pixels_a, _ = project(points, extrinsics_a, intrinsics_a, SIZE)
    pixels_b, _ = project(points, extrinsics_b, intrinsics_b, size_b)
    homogeneous_a = torch.cat([pixels_a, torch.ones(len(points), 1, dtype=torch.float64)], dim=-1)
    homogeneous_b = torch.cat([pixels_b, torch.ones(len(points), 1, dtype=torch.float64)], dim=-1)
    residual = ((homogeneous_b @ fundamental) * homogeneous_a).sum(-1)
    assert residual.abs().max() < 1e-10
    assert sampson_distance(fundamental, pixels_a, pixels_b).max() < 1e-8
    # An independent estimate from the exact correspondences (8-point) agrees up to scale and sign.
    estimate, _ = cv2.findFundamentalMat(pixels_a.numpy(), pixels_b.numpy(), cv2.FM_8POINT)
    estimate = torch.from_numpy(estimate / np.linalg.norm(estimate))
    assert min((estimate - fundamental).abs().max(), (estimate + fundamental).abs().max()) < 1e-6


def test_sampson_distance_for_rectified_stereo_is_the_row_offset_over_root_two():
    # Sideways translation, same intrinsics: epipolar lines are image rows, and both images' gradients have
    # unit size, so a vertical offset d gives a Sampson distance of exactly d / sqrt(2).
    extrinsics_a = torch.eye(4, dtype=torch.float64)
    extrinsics_b = torch.eye(4, dtype=torch.float64)
    extrinsics_b[0, 3] = 0.3
    intrinsics = torch.tensor([[1.0, 0, 0.5], [0, 1.0, 0.5], [0, 0, 1]], dtype=torch.float64)
    fundamental = fundamental_matrix(extrinsics_a, intrinsics, SIZE, extrinsics_b, intrinsics, SIZE)
    points_a = torch.tensor([[10.0, 20.0], [40.0, 33.0], [70.0, 5.0]], dtype=torch.float64)
    offsets = torch.tensor([[-5.0, 0.0], [3.0, 2.0], [0.0, -0.5]], dtype=torch.float64)
    distance = sampson_distance(fundamental, points_a, points_a + offsets)
    torch.testing.assert_close(distance, offsets[:, 1].abs() / 2**0.5)


def test_sampson_distance_grows_linearly_off_the_epipolar_line_and_not_along_it():
    extrinsics_a, intrinsics_a, extrinsics_b, intrinsics_b = two_cameras()
    fundamental = fundamental_matrix(extrinsics_a, intrinsics_a, SIZE, extrinsics_b, intrinsics_b, SIZE)
    pixels_a, _ = project(random_points(), extrinsics_a, intrinsics_a, SIZE)
    pixels_b, _ = project(random_points(), extrinsics_b, intrinsics_b, SIZE)
    line = torch.cat([pixels_a, torch.ones(len(pixels_a), 1, dtype=torch.float64)], -1) @ fundamental.T
    normal = line[:, :2] / line[:, :2].norm(dim=-1, keepdim=True)
    along = torch.stack([-normal[:, 1], normal[:, 0]], dim=-1)
    assert sampson_distance(fundamental, pixels_a, pixels_b + 3 * along).max() < 1e-8
    small = sampson_distance(fundamental, pixels_a, pixels_b + 0.5 * normal)
    large = sampson_distance(fundamental, pixels_a, pixels_b + 1.0 * normal)
    assert (small > 0.05).all() and (small <= 0.5 + 1e-9).all()  # the shift is shared between both images
    torch.testing.assert_close(large, 2 * small, rtol=1e-3, atol=0)
    # Swapping the images and transposing F is the same measurement.
    torch.testing.assert_close(sampson_distance(fundamental.T, pixels_b + normal, pixels_a), large)


def test_float32_inputs_are_precise():
    extrinsics_a, intrinsics_a, extrinsics_b, intrinsics_b = (t.float() for t in two_cameras())
    rotation = torch.from_numpy(Rotation.from_euler("z", 1e-3).as_matrix()).float()
    extrinsics_b[:3, :3] = rotation @ extrinsics_b[:3, :3]
    fundamental = fundamental_matrix(extrinsics_a, intrinsics_a, SIZE, extrinsics_b, intrinsics_b, SIZE)
    assert fundamental.dtype == torch.float32
    points = random_points().float()
    pixels_a, _ = project(points, extrinsics_a, intrinsics_a, SIZE)
    pixels_b, _ = project(points, extrinsics_b, intrinsics_b, SIZE)
    assert sampson_distance(fundamental, pixels_a, pixels_b).max() < 1e-3
