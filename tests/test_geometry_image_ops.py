import math

import cv2
import numpy as np
import pytest
import torch
from shape_checks import unchecked

from videoscene.errors import VideoSceneError
from videoscene.geometry.cameras import denormalize_intrinsics
from videoscene.geometry.epipolar import project
from videoscene.geometry.image_ops import (
    center_crop,
    crop,
    crop_to_aspect_and_resize,
    crop_to_aspect_and_resize_intrinsics,
    crop_to_aspect_and_resize_mask,
    fit_within,
    gaussian_blur,
    resize,
    undistort,
)

HEIGHT, WIDTH = 60, 90
EXTRINSICS = torch.eye(4, dtype=torch.float64)
INTRINSICS = torch.tensor([[0.9, 0, 0.47], [0, 1.3, 0.53], [0, 0, 1]], dtype=torch.float64)
POINT = torch.tensor([[0.12, -0.08, 2.0]], dtype=torch.float64)  # in front of the identity camera


def blob_image(center_xy: np.ndarray, height: int, width: int, sigma: float = 2.0) -> np.ndarray:
    """A Gaussian dot centred at `center_xy` in our pixel coordinates (pixel centres at +0.5)."""
    y, x = np.mgrid[0:height, 0:width] + 0.5
    return np.exp(-((x - center_xy[0]) ** 2 + (y - center_xy[1]) ** 2) / (2 * sigma**2))


def blob_center(image: np.ndarray) -> np.ndarray:
    y, x = np.mgrid[0 : image.shape[0], 0 : image.shape[1]] + 0.5
    weights = np.clip(image - 0.05, 0, None)  # ignore the faint tails cut by the borders
    return np.array([(weights * x).sum(), (weights * y).sum()]) / weights.sum()


def dot_through(operation):
    """Draw the projection of POINT, apply `operation` to image and intrinsics, and return where the dot is
    found versus where the returned intrinsics say it should be."""
    pixels, _ = project(POINT, EXTRINSICS, INTRINSICS, (HEIGHT, WIDTH))
    image = torch.from_numpy(blob_image(pixels[0].numpy(), HEIGHT, WIDTH)).expand(3, -1, -1)
    out_image, out_intrinsics = operation(image[None], INTRINSICS[None])
    expected, _ = project(POINT, EXTRINSICS, out_intrinsics[0], tuple(out_image.shape[-2:]))
    return blob_center(out_image[0, 0].numpy()), expected[0].numpy()


@pytest.mark.parametrize(
    "operation",
    [
        lambda image, k: resize(image, k, (40, 50)),
        lambda image, k: resize(image, k, (120, 180)),
        lambda image, k: crop(image, k, 7, 11, (40, 60)),
        lambda image, k: center_crop(image, k, (48, 48)),
        lambda image, k: crop_to_aspect_and_resize(image, k, (32, 32)),
        lambda image, k: crop_to_aspect_and_resize(image, k, (30, 90)),
    ],
    ids=["shrink", "enlarge", "crop", "center_crop", "square", "wide"],
)
def test_the_dot_stays_where_the_new_intrinsics_project_the_point(operation):
    found, expected = dot_through(operation)
    np.testing.assert_allclose(found, expected, atol=0.08)


def test_crop_shifts_the_principal_point_in_pixels():
    image = torch.rand(2, 3, HEIGHT, WIDTH)
    cropped, intrinsics = crop(image, INTRINSICS.expand(2, 3, 3), 5, 9, (30, 40))
    assert torch.equal(cropped, image[..., 5:35, 9:49])
    before = denormalize_intrinsics(INTRINSICS, WIDTH, HEIGHT)
    after = denormalize_intrinsics(intrinsics[1], 40, 30)
    torch.testing.assert_close(after[:2, :2], before[:2, :2])
    torch.testing.assert_close(after[:2, 2], before[:2, 2] - torch.tensor([9.0, 5.0], dtype=torch.float64))


def test_crop_to_aspect_output_size_and_bad_windows():
    image, intrinsics = crop_to_aspect_and_resize(
        torch.rand(4, 3, HEIGHT, WIDTH), INTRINSICS.expand(4, 3, 3), (16, 24)
    )
    assert image.shape == (4, 3, 16, 24) and intrinsics.shape == (4, 3, 3)
    with pytest.raises(VideoSceneError, match="does not fit"):
        crop(torch.rand(3, HEIGHT, WIDTH), INTRINSICS, 50, 0, (20, 20))
    with unchecked(), pytest.raises(VideoSceneError, match="3, H, W"):
        resize(torch.rand(HEIGHT, WIDTH), INTRINSICS, (10, 10))
    assert fit_within(400, 300, 100) == (100, 75) and fit_within(40, 30, 100) == (40, 30)


def test_a_mask_follows_the_crop_and_resize_of_its_images():
    """96x128 -> 64x96: the centre crop keeps rows 5..89 (85 of 96) and all columns, then shrinks by 4/3."""
    mask = torch.zeros(2, 96, 128, dtype=torch.bool)
    mask[0, :, :64] = True  # the left half stays the left half
    mask[1, :5] = True  # rows that the crop removes
    resized = crop_to_aspect_and_resize_mask(mask, (64, 96))
    assert resized.shape == (2, 64, 96) and resized.dtype == torch.bool
    assert resized[0, :, :48].all() and not resized[0, :, 48:].any()
    assert not resized[1].any()
    # A model pixel is True when more than half of it was: the same as thresholding the resized image.
    pattern = torch.rand(96, 128, generator=torch.Generator().manual_seed(0)) > 0.7
    image, _ = crop_to_aspect_and_resize(pattern.float().expand(3, -1, -1), torch.eye(3), (64, 96))
    torch.testing.assert_close(crop_to_aspect_and_resize_mask(pattern, (64, 96)), image[0] > 0.5)


@pytest.mark.parametrize("size", [(16, 24), (32, 32), (30, 90), (120, 60)])
def test_crop_to_aspect_intrinsics_without_the_images(size):
    """The intrinsics alone, for cameras given at the input's size, are those that come with the images."""
    _, with_images = crop_to_aspect_and_resize(
        torch.rand(2, 3, HEIGHT, WIDTH), INTRINSICS.expand(2, 3, 3), size
    )
    torch.testing.assert_close(
        crop_to_aspect_and_resize_intrinsics(INTRINSICS.expand(2, 3, 3), (HEIGHT, WIDTH), size),
        with_images,
        rtol=0,
        atol=0,
    )


def test_undistort_moves_the_dot_to_its_pinhole_position():
    point = torch.tensor([[0.9, -0.5, 2.0]], dtype=torch.float64)  # far off-axis, where the lens bends most
    pixel_intrinsics = denormalize_intrinsics(INTRINSICS, WIDTH, HEIGHT)
    distortion = torch.tensor([-0.25, 0.08, 0.002, -0.003], dtype=torch.float64)
    # Where the distorted lens images the point (OpenCV pixel centres are at 0, ours at 0.5).
    opencv_k = pixel_intrinsics.numpy() - np.array([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]])
    distorted, _ = cv2.projectPoints(point.numpy(), np.zeros(3), np.zeros(3), opencv_k, distortion.numpy())
    distorted_xy = distorted.reshape(2) + 0.5
    pinhole_xy = project(point, EXTRINSICS, INTRINSICS, (HEIGHT, WIDTH))[0][0].numpy()
    assert np.linalg.norm(distorted_xy - pinhole_xy) > 1.0  # the lens really moves the dot
    image = (
        (blob_image(distorted_xy, HEIGHT, WIDTH)[..., None] * 255).round().astype(np.uint8).repeat(3, axis=2)
    )
    undistorted, new_pixel_intrinsics = undistort(image, pixel_intrinsics, distortion)
    assert undistorted.shape == image.shape
    expected = project(
        point, EXTRINSICS, new_pixel_intrinsics / torch.tensor([[WIDTH], [HEIGHT], [1.0]]), (HEIGHT, WIDTH)
    )[0][0]
    np.testing.assert_allclose(blob_center(undistorted[..., 0] / 255.0), expected.numpy(), atol=0.15)


def _blur_reference(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Each output pixel as the explicit weighted sum over its (2r+1)² neighbours, edges replicated."""
    radius = math.ceil(3 * sigma)
    offsets = range(-radius, radius + 1)
    weights = {d: math.exp(-(d * d) / (2 * sigma * sigma)) for d in offsets}
    total = sum(weights.values())
    height, width = images.shape[-2:]
    out = torch.zeros_like(images)
    for i in range(height):
        for j in range(width):
            for di in offsets:
                for dj in offsets:
                    source = images[..., min(max(i + di, 0), height - 1), min(max(j + dj, 0), width - 1)]
                    out[..., i, j] = out[..., i, j] + weights[di] * weights[dj] / total**2 * source
    return out


@pytest.mark.parametrize("sigma", [0.6, 1.5])
def test_gaussian_blur_matches_the_explicit_sum_forward_and_backward(sigma):
    images = torch.rand(2, 3, 7, 9, dtype=torch.float64, requires_grad=True)
    fast, slow = gaussian_blur(images, sigma), _blur_reference(images, sigma)
    torch.testing.assert_close(fast, slow)
    probe = torch.rand_like(fast)
    (fast_grad,) = torch.autograd.grad((fast * probe).sum(), images)
    (slow_grad,) = torch.autograd.grad((slow * probe).sum(), images)
    torch.testing.assert_close(fast_grad, slow_grad)


def test_gaussian_blur_keeps_constants_and_zero_sigma_and_refuses_a_negative_one():
    constant = torch.full((3, 8, 8), 0.3)
    torch.testing.assert_close(gaussian_blur(constant, 2.0), constant)
    images = torch.rand(3, 8, 8)
    assert gaussian_blur(images, 0.0) is images
    assert gaussian_blur(images, 1.0).std() < images.std()
    with pytest.raises(VideoSceneError, match="sigma"):
        gaussian_blur(images, -1.0)
