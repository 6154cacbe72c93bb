import json
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from shape_checks import unchecked

from videoscene.errors import VideoSceneError
from videoscene.geometry.cameras import (
    CaptureCameras,
    cameras_from_re10k_vector,
    cameras_to_re10k_vector,
    llff_to_opencv_rotation,
    opencv_to_llff_rotation,
    opencv_to_opengl,
    opengl_to_opencv,
    read_colmap_text,
    read_llff_poses_bounds,
    read_transforms_json,
    write_colmap_text,
    write_llff_poses_bounds,
    write_transforms_json,
)
from videoscene.geometry.rotations import matrix_to_quaternion


def random_extrinsics(count: int, seed: int = 0) -> torch.Tensor:
    extrinsics = torch.eye(4, dtype=torch.float64).repeat(count, 1, 1)
    extrinsics[:, :3, :3] = torch.from_numpy(Rotation.random(count, random_state=seed).as_matrix())
    extrinsics[:, :3, 3] = torch.from_numpy(np.random.default_rng(seed).normal(size=(count, 3)))
    return extrinsics


def capture(count=4, seed=0, shared=True, distortion=None, centred=False, bounds=False) -> CaptureCameras:
    """Random cameras; `shared` gives every frame the same intrinsics and size."""
    rng = np.random.default_rng(seed)
    sizes = torch.tensor([[48, 64]] * count if shared else [[48 + 2 * i, 64 + 4 * i] for i in range(count)])
    focal = rng.uniform(0.8, 1.5, size=(1 if shared else count, 2)).repeat(count if shared else 1, axis=0)
    intrinsics = torch.zeros(count, 3, 3, dtype=torch.float64)
    intrinsics[:, 0, 0] = torch.from_numpy(focal[:, 0])
    intrinsics[:, 1, 1] = (
        intrinsics[:, 0, 0] * sizes[:, 1] / sizes[:, 0] if centred else torch.from_numpy(focal[:, 1])
    )
    principal = (
        np.full((count, 2), 0.5)
        if centred
        else rng.uniform(0.4, 0.6, size=(1 if shared else count, 2)).repeat(count if shared else 1, axis=0)
    )
    intrinsics[:, 0, 2], intrinsics[:, 1, 2] = (
        torch.from_numpy(principal[:, 0]),
        torch.from_numpy(principal[:, 1]),
    )
    intrinsics[:, 2, 2] = 1
    return CaptureCameras(
        extrinsics=random_extrinsics(count, seed),
        intrinsics=intrinsics,
        image_sizes=sizes,
        distortion=torch.zeros(count, 4, dtype=torch.float64)
        if distortion is None
        else torch.tensor([distortion] * count, dtype=torch.float64),
        file_names=[f"images/frame_{i:03d}.png" for i in range(count)],
        bounds=torch.tensor([[0.5, 10.0 + i] for i in range(count)], dtype=torch.float64) if bounds else None,
    )


def assert_same_cameras(actual: CaptureCameras, expected: CaptureCameras, names=True):
    torch.testing.assert_close(actual.extrinsics.double(), expected.extrinsics.double(), atol=1e-9, rtol=0)
    torch.testing.assert_close(actual.intrinsics.double(), expected.intrinsics.double(), atol=1e-12, rtol=0)
    assert torch.equal(actual.image_sizes, expected.image_sizes)
    torch.testing.assert_close(actual.distortion, expected.distortion, atol=0, rtol=0)
    if names:
        assert actual.file_names == expected.file_names


def test_opengl_flip_is_an_involution_and_keeps_points_in_front():
    extrinsics = random_extrinsics(3)
    assert torch.equal(opencv_to_opengl(opengl_to_opencv(extrinsics)), extrinsics)
    # A point 2 units along the OpenGL camera's -z axis must be 2 units along the OpenCV camera's +z axis.
    gl = extrinsics[0]
    point = gl[:3, 3] - 2 * gl[:3, 2]
    cv = opengl_to_opencv(gl)
    camera_point = torch.linalg.inv(cv)[:3, :3] @ point + torch.linalg.inv(cv)[:3, 3]
    torch.testing.assert_close(camera_point, torch.tensor([0, 0, 2.0], dtype=torch.float64))


def test_llff_axes():
    rotation = torch.from_numpy(Rotation.random(5, random_state=1).as_matrix())
    assert torch.equal(opencv_to_llff_rotation(llff_to_opencv_rotation(rotation)), rotation)
    converted = llff_to_opencv_rotation(rotation)
    torch.testing.assert_close(converted[:, :, 1], rotation[:, :, 0])  # OpenCV y (down) = LLFF down
    torch.testing.assert_close(converted[:, :, 2], -rotation[:, :, 2])  # forward = -back
    assert torch.allclose(torch.linalg.det(converted), torch.ones(5, dtype=torch.float64))


def test_re10k_vector_round_trip():
    cameras = capture()
    vector = cameras_to_re10k_vector(cameras.extrinsics.float(), cameras.intrinsics.float())
    assert vector.shape == (4, 18)
    extrinsics, intrinsics = cameras_from_re10k_vector(vector)
    torch.testing.assert_close(extrinsics, cameras.extrinsics.float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(intrinsics, cameras.intrinsics.float())


@pytest.mark.parametrize("shared", [True, False])
def test_nerf_transforms_round_trip(tmp_path, shared):
    cameras = capture(shared=shared)
    write_transforms_json(tmp_path / "transforms.json", cameras, style="nerf")
    meta = json.loads((tmp_path / "transforms.json").read_text())
    assert ("camera_angle_x" in meta) == shared and "k1" not in meta
    assert_same_cameras(read_transforms_json(tmp_path / "transforms.json"), cameras)


def test_instant_ngp_round_trip_keeps_distortion(tmp_path):
    cameras = capture(distortion=[-0.12, 0.03, 0.001, -0.002])
    write_transforms_json(tmp_path / "transforms.json", cameras, style="instant-ngp")
    meta = json.loads((tmp_path / "transforms.json").read_text())
    assert meta["k1"] == -0.12 and meta["p2"] == -0.002
    read = read_transforms_json(tmp_path / "transforms.json")
    assert_same_cameras(read, cameras)
    assert not read.is_pinhole
    with pytest.raises(VideoSceneError, match="distortion"):
        write_transforms_json(tmp_path / "nerf.json", cameras, style="nerf")


def test_nerf_camera_angle_only_reads_size_from_the_image(tmp_path):
    from PIL import Image

    (tmp_path / "test").mkdir()
    Image.new("RGBA", (40, 30)).save(tmp_path / "test" / "r_0.png")
    matrix = torch.eye(4).tolist()
    (tmp_path / "transforms_test.json").write_text(
        json.dumps(
            {"camera_angle_x": 0.69, "frames": [{"file_path": "./test/r_0", "transform_matrix": matrix}]}
        )
    )
    cameras = read_transforms_json(tmp_path / "transforms_test.json")
    focal = 0.5 * 40 / math.tan(0.5 * 0.69)
    torch.testing.assert_close(
        cameras.pixel_intrinsics[0],
        torch.tensor([[focal, 0, 20], [0, focal, 15], [0, 0, 1]], dtype=torch.float64),
    )
    assert cameras.image_sizes.tolist() == [[30, 40]]
    # OpenGL identity camera looks down world -z: its OpenCV z axis is world -z, y axis world -y.
    torch.testing.assert_close(
        cameras.extrinsics[0, :3, :3], torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    )


def test_llff_round_trip_and_axes(tmp_path):
    cameras = capture(centred=True, bounds=True)
    write_llff_poses_bounds(tmp_path / "poses_bounds.npy", cameras)
    array = np.load(tmp_path / "poses_bounds.npy")
    assert array.shape == (4, 17)
    np.testing.assert_allclose(
        array[:, 4:15:5], [[48, 64, cameras.pixel_intrinsics[0, 0, 0].item()]] * 4
    )  # h, w, f column
    read = read_llff_poses_bounds(tmp_path / "poses_bounds.npy", cameras.file_names)
    assert_same_cameras(read, cameras)
    torch.testing.assert_close(read.bounds, cameras.bounds)
    # LLFF's first rotation column is the camera's "down" axis = OpenCV's second column.
    np.testing.assert_allclose(array[:, [0, 5, 10]], cameras.extrinsics[:, :3, 1].numpy())


def test_llff_rejects_what_it_cannot_store(tmp_path):
    with pytest.raises(VideoSceneError, match="centred"):
        write_llff_poses_bounds(tmp_path / "p.npy", capture(centred=False, bounds=True))
    with pytest.raises(VideoSceneError, match="bounds"):
        write_llff_poses_bounds(tmp_path / "p.npy", capture(centred=True))


COLMAP_CAMERAS = """# Camera list
1 SIMPLE_PINHOLE 64 48 50.5 32.1 23.9
2 PINHOLE 64 48 50.5 52.25 31.5 24.5
3 SIMPLE_RADIAL 64 48 48.0 32.0 24.0 -0.05
4 RADIAL 64 48 48.0 32.0 24.0 -0.05 0.01
5 OPENCV 80 60 61.0 62.0 40.5 29.5 -0.1 0.02 0.001 -0.0005
"""


def colmap_images(extrinsics: torch.Tensor) -> str:
    lines = ["# Image list"]
    world_to_camera = torch.linalg.inv(extrinsics)
    quaternions = matrix_to_quaternion(world_to_camera[:, :3, :3])
    for index in range(len(extrinsics)):
        values = [*quaternions[index].tolist(), *world_to_camera[index, :3, 3].tolist()]
        lines.append(f"{index + 1} {' '.join(map(repr, values))} {index + 1} img_{index}.jpg")
        lines.append("10.5 20.5 -1 11.0 21.0 7" if index % 2 else "")  # 2D points, possibly empty
    return "\n".join(lines) + "\n"


def test_colmap_reads_every_model_and_round_trips(tmp_path):
    extrinsics = random_extrinsics(5, seed=3)
    (tmp_path / "cameras.txt").write_text(COLMAP_CAMERAS)
    (tmp_path / "images.txt").write_text(colmap_images(extrinsics))
    cameras = read_colmap_text(tmp_path)
    assert cameras.file_names == [f"img_{i}.jpg" for i in range(5)]
    torch.testing.assert_close(cameras.extrinsics, extrinsics)
    pixel = cameras.pixel_intrinsics
    assert pixel[0, 0, 0] == pixel[0, 1, 1] == 50.5 and pixel[0, 0, 2] == 32.1
    assert pixel[1, 1, 1] == 52.25
    assert cameras.distortion.tolist() == [
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [-0.05, 0, 0, 0],
        [-0.05, 0.01, 0, 0],
        [-0.1, 0.02, 0.001, -0.0005],
    ]
    assert cameras.image_sizes[4].tolist() == [60, 80]

    write_colmap_text(tmp_path / "out", cameras)
    written = (tmp_path / "out" / "cameras.txt").read_text()
    for model in ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV"):
        assert f" {model} " in written
    assert_same_cameras(read_colmap_text(tmp_path / "out"), cameras)


def test_colmap_pose_is_world_to_camera_wxyz(tmp_path):
    # A quarter turn about z (w = cos 45°, z = sin 45°) and t = (1, 2, 3): x_cam = R x_world + t.
    (tmp_path / "cameras.txt").write_text("1 PINHOLE 64 48 50 50 32 24\n")
    half = math.sqrt(0.5)
    (tmp_path / "images.txt").write_text(f"1 {half} 0 0 {half} 1 2 3 1 a.png\n\n")
    extrinsics = read_colmap_text(tmp_path).extrinsics[0]
    rotation = torch.tensor([[0, -1.0, 0], [1.0, 0, 0], [0, 0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(extrinsics[:3, :3], rotation.T)
    torch.testing.assert_close(
        extrinsics[:3, 3], -rotation.T @ torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    )


def test_colmap_shares_identical_cameras(tmp_path):
    cameras = capture(count=3)
    write_colmap_text(tmp_path, cameras)
    assert (
        len(
            [line for line in (tmp_path / "cameras.txt").read_text().splitlines() if not line.startswith("#")]
        )
        == 1
    )
    assert_same_cameras(read_colmap_text(tmp_path), cameras)


def one_line_error(call) -> str:
    with pytest.raises(VideoSceneError) as error:
        call()
    assert "\n" not in str(error.value)
    return str(error.value)


def test_bad_camera_files(tmp_path):
    frame = {"file_path": "a.png", "transform_matrix": torch.eye(4).tolist()}
    meta = {"fl_x": 10.0, "w": 8, "h": 8, "frames": [frame]}

    def transforms(**changes):
        path = tmp_path / "transforms.json"
        path.write_text(json.dumps({**meta, "frames": [{**frame, **changes}]}))
        return lambda: read_transforms_json(path)

    nan = torch.eye(4).tolist()
    nan[0][3] = float("nan")
    assert "NaN" in one_line_error(transforms(transform_matrix=nan))
    scaled = (2 * torch.eye(4)).tolist()
    assert "rigid" in one_line_error(transforms(transform_matrix=scaled))
    assert "4x4" in one_line_error(transforms(transform_matrix=torch.eye(3).tolist()))
    assert "does not exist" in one_line_error(lambda: read_transforms_json(tmp_path / "missing.json"))
    (tmp_path / "cameras.txt").write_text("1 OPENCV_FISHEYE 64 48 50 50 32 24 0.1 0.1 0 0\n")
    (tmp_path / "images.txt").write_text("")
    assert "OPENCV_FISHEYE" in one_line_error(lambda: read_colmap_text(tmp_path))
    np.save(tmp_path / "poses_bounds.npy", np.zeros((3, 15)))
    assert "N x 17" in one_line_error(lambda: read_llff_poses_bounds(tmp_path / "poses_bounds.npy"))
    good = capture()
    with unchecked():
        assert "shape" in one_line_error(
            lambda: CaptureCameras(good.extrinsics, good.intrinsics[:2], good.image_sizes, good.distortion)
        )
