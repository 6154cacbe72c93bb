"""`videoscene data convert` on tiny scenes written in every input format by our own writers."""

import math

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from videoscene.cli import main
from videoscene.data.re10k import decode_image
from videoscene.geometry.cameras import (
    CaptureCameras,
    cameras_from_re10k_vector,
    write_colmap_text,
    write_llff_poses_bounds,
    write_transforms_json,
)
from videoscene.geometry.epipolar import project

HEIGHT, WIDTH = 96, 128
COUNT = 4
STRIP = 6  # transparent columns of the RGBA test images
# Points placed across the field of view so that lens distortion moves their images by pixels.
POINTS = torch.tensor([[-1.6, 0.0, 0.9], [1.7, 0.1, -0.8], [0.0, 0.2, 0.0]], dtype=torch.float64)


def orbit_cameras(distortion=(0.0, 0.0, 0.0, 0.0), centred=False) -> CaptureCameras:
    """COUNT OpenCV cameras on an arc at radius 4, looking at the origin, world z up."""
    extrinsics = []
    for azimuth in np.radians(np.linspace(80, 100, COUNT)):
        center = torch.tensor([4 * math.cos(azimuth), 4 * math.sin(azimuth), 0.5], dtype=torch.float64)
        forward = -center / center.norm()
        right = torch.linalg.cross(forward, torch.tensor([0, 0, 1.0], dtype=torch.float64))
        right = right / right.norm()
        matrix = torch.eye(4, dtype=torch.float64)
        matrix[:3, :3] = torch.stack([right, torch.linalg.cross(forward, right), forward], dim=-1)
        matrix[:3, 3] = center
        extrinsics.append(matrix)
    intrinsics = torch.tensor(
        [[0.6, 0, 0.5 if centred else 0.52], [0, 0.6 * WIDTH / HEIGHT, 0.5 if centred else 0.47], [0, 0, 1]],
        dtype=torch.float64,
    )
    return CaptureCameras(
        extrinsics=torch.stack(extrinsics),
        intrinsics=intrinsics.expand(COUNT, 3, 3).clone(),
        image_sizes=torch.tensor([[HEIGHT, WIDTH]] * COUNT),
        distortion=torch.tensor([distortion] * COUNT, dtype=torch.float64),
        file_names=[f"frame_{i:02d}.png" for i in range(COUNT)],
        bounds=torch.tensor([[1.0, 8.0]] * COUNT, dtype=torch.float64),
    )


def dot_positions(cameras: CaptureCameras, index: int) -> np.ndarray:
    """Where the (possibly distorted) camera images POINTS, in our pixel coordinates (centres at +0.5)."""
    pixel_k = cameras.pixel_intrinsics[index].numpy() - np.array([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]])
    world_to_camera = np.linalg.inv(cameras.extrinsics[index].numpy())
    rotation_vector, _ = cv2.Rodrigues(world_to_camera[:3, :3])
    projected, _ = cv2.projectPoints(
        POINTS.numpy(), rotation_vector, world_to_camera[:3, 3], pixel_k, cameras.distortion[index].numpy()
    )
    return projected.reshape(-1, 2) + 0.5


def dot_image(positions: np.ndarray, height=HEIGHT, width=WIDTH, sigma=1.5) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width] + 0.5
    value = sum(np.exp(-((x - px) ** 2 + (y - py) ** 2) / (2 * sigma**2)) for px, py in positions)
    gray = np.round(np.clip(value, 0, 1) * 255).astype(np.uint8)
    return np.stack([gray, 255 - gray, np.full_like(gray, 80)], axis=-1)


def found_dot(image: np.ndarray, near: np.ndarray, radius: int = 5) -> np.ndarray:
    """Intensity-weighted centroid of the dot in the red channel within `radius` px of `near`."""
    y, x = np.mgrid[0 : image.shape[0], 0 : image.shape[1]] + 0.5
    window = (np.abs(x - near[0]) <= radius) & (np.abs(y - near[1]) <= radius)
    weights = np.clip(image[..., 0] / 255.0 - 0.05, 0, None) * window
    return np.array([(weights * x).sum(), (weights * y).sum()]) / weights.sum()


def write_images(folder, cameras: CaptureCameras, size=(HEIGHT, WIDTH), rgba=False) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for index, name in enumerate(cameras.file_names):
        image = cv2.resize(dot_image(dot_positions(cameras, index)), size[::-1], interpolation=cv2.INTER_AREA)
        if rgba:  # opaque but for a fully transparent strip at the right edge
            alpha = np.full(image.shape[:2], 255, np.uint8)
            alpha[:, -STRIP:] = 0
            image = np.concatenate([image, alpha[..., None]], axis=-1)
        Image.fromarray(image).save(folder / name)
        images.append(image)
    return images


def convert(*args) -> int:
    return main(["data", "convert", *map(str, args)])


def load_converted(out) -> dict:
    chunk = torch.load(out / "test" / "000000.torch", weights_only=True)
    assert isinstance(chunk, list) and len(chunk) == 1
    scene = chunk[0]
    assert set(scene) >= {"key", "url", "timestamps", "cameras", "images"}
    assert scene["cameras"].shape == (COUNT, 18) and scene["cameras"].dtype == torch.float32
    assert all(image.dtype == torch.uint8 and image.ndim == 1 for image in scene["images"])
    return scene


def stored_images(scene) -> list[np.ndarray]:
    return [
        (decode_image(data).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        for data in scene["images"]
    ]


def assert_dots_where_cameras_say(scene, tolerance_px: float) -> None:
    extrinsics, intrinsics = cameras_from_re10k_vector(scene["cameras"])
    for image, c2w, k in zip(stored_images(scene), extrinsics, intrinsics):
        expected, _ = project(POINTS.float(), c2w, k, image.shape[:2])
        for near in expected.numpy():
            np.testing.assert_allclose(found_dot(image, near), near, atol=tolerance_px)


def test_nerf_conversion_keeps_cameras_and_pixels_and_composites_on_white(tmp_path):
    cameras = orbit_cameras()
    cameras.file_names = [f"./test/r_{i}" for i in range(COUNT)]  # NeRF-synthetic omits the extension
    sources = write_images(tmp_path / "scene" / "test", orbit_cameras(), rgba=True)
    for index in range(COUNT):
        (tmp_path / "scene" / "test" / f"frame_{index:02d}.png").rename(
            tmp_path / "scene" / "test" / f"r_{index}.png"
        )
    write_transforms_json(tmp_path / "scene" / "transforms_test.json", cameras, style="nerf")
    assert convert("--format", "nerf", "--input", tmp_path / "scene", "--out", tmp_path / "out") == 0
    scene = load_converted(tmp_path / "out")
    assert scene["key"] == "scene" and scene["timestamps"].tolist() == list(range(COUNT))
    assert all(bytes(image[:8].tolist()) == b"\x89PNG\r\n\x1a\n" for image in scene["images"])
    extrinsics, intrinsics = cameras_from_re10k_vector(scene["cameras"])
    torch.testing.assert_close(extrinsics, cameras.extrinsics.float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(intrinsics, cameras.intrinsics.float())
    for stored, source in zip(stored_images(scene), sources):
        np.testing.assert_array_equal(stored[:, :-STRIP], source[:, :-STRIP, :3])
        assert (stored[:, -STRIP:] == 255).all()
    assert_dots_where_cameras_say(scene, tolerance_px=0.1)

    assert (
        convert(
            "--format",
            "nerf",
            "--input",
            tmp_path / "scene",
            "--out",
            tmp_path / "black",
            "--black-background",
        )
        == 0
    )
    assert (stored_images(load_converted(tmp_path / "black"))[0][:, -STRIP:] == 0).all()


@pytest.mark.parametrize("input_format", ["instant-ngp", "colmap"])
def test_lens_distortion_is_removed(tmp_path, input_format):
    cameras = orbit_cameras(distortion=(-0.3, 0.08, 0.002, -0.001))
    shift = np.linalg.norm(dot_positions(cameras, 0) - dot_positions(orbit_cameras(), 0), axis=-1)
    assert shift.max() > 1.5  # the lens moves the dots by pixels, so undistortion is really tested
    if input_format == "instant-ngp":
        write_images(tmp_path / "scene" / "images", cameras)
        cameras.file_names = [f"images/{name}" for name in cameras.file_names]
        write_transforms_json(tmp_path / "scene" / "transforms.json", cameras, style="instant-ngp")
    else:
        write_images(tmp_path / "scene" / "images", cameras)
        write_colmap_text(tmp_path / "scene" / "sparse" / "0", cameras)
    assert convert("--format", input_format, "--input", tmp_path / "scene", "--out", tmp_path / "out") == 0
    scene = load_converted(tmp_path / "out")
    assert stored_images(scene)[0].shape == (HEIGHT, WIDTH, 3)
    assert_dots_where_cameras_say(scene, tolerance_px=0.25)


def test_colmap_pinhole_keeps_cameras_and_pixels(tmp_path):
    cameras = orbit_cameras()
    sources = write_images(tmp_path / "scene" / "images", cameras)
    write_colmap_text(tmp_path / "scene" / "sparse" / "0", cameras)
    assert (
        convert(
            "--format", "colmap", "--input", tmp_path / "scene", "--out", tmp_path / "out", "--key", "room-1"
        )
        == 0
    )
    scene = load_converted(tmp_path / "out")
    assert scene["key"] == "room-1"
    extrinsics, intrinsics = cameras_from_re10k_vector(scene["cameras"])
    torch.testing.assert_close(extrinsics, cameras.extrinsics.float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(intrinsics, cameras.intrinsics.float())
    for stored, source in zip(stored_images(scene), sources):
        np.testing.assert_array_equal(stored, source)


def test_llff_reads_downsampled_images_and_max_size_shrinks(tmp_path):
    cameras = orbit_cameras(centred=True)
    write_images(tmp_path / "fern" / "images_2", cameras, size=(HEIGHT // 2, WIDTH // 2))
    write_llff_poses_bounds(tmp_path / "fern" / "poses_bounds.npy", cameras)
    assert (
        convert(
            "--format",
            "llff",
            "--input",
            tmp_path / "fern",
            "--out",
            tmp_path / "out",
            "--max-size",
            40,
            "--image-format",
            "jpeg",
        )
        == 0
    )
    scene = load_converted(tmp_path / "out")
    assert bytes(scene["images"][0][:2].tolist()) == b"\xff\xd8"  # JPEG
    assert stored_images(scene)[0].shape == (30, 40, 3)
    extrinsics, intrinsics = cameras_from_re10k_vector(scene["cameras"])
    torch.testing.assert_close(extrinsics, cameras.extrinsics.float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(intrinsics, cameras.intrinsics.float())
