"""Resizing, cropping and undistorting images while keeping their intrinsics right.

Normalised intrinsics (fx/W, fy/H, cx/W, cy/H) measure the image in units of its own width and height with
the top-left *corner* at 0, so a pure resize leaves them unchanged; a crop changes both the scale and the
origin. `crop_to_aspect_and_resize` is what brings any image to the model's resolution.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from videoscene.errors import VideoSceneError


def _check_images(images: Tensor) -> tuple[int, int]:
    if images.ndim < 3 or images.shape[-3] != 3:
        raise VideoSceneError(f"images must have shape [..., 3, H, W], got {list(images.shape)}")
    return images.shape[-2], images.shape[-1]


def gaussian_kernel_1d(sigma: float, radius: int, dtype=torch.float32, device=None) -> Float[Tensor, " taps"]:
    """The normalised 1D Gaussian of standard deviation `sigma` (pixels) on offsets −radius..radius."""
    offsets = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    window = torch.exp(-(offsets**2) / (2 * sigma**2))
    return window / window.sum()


def gaussian_blur(
    images: Float[Tensor, "*batch height width"], sigma: float
) -> Float[Tensor, "*batch height width"]:
    """Separable Gaussian blur over the last two axes (radius ⌈3σ⌉, edges replicated, so a constant image
    stays constant); σ = 0 returns the images unchanged."""
    if sigma < 0:
        raise VideoSceneError(f"blur sigma must be ≥ 0, got {sigma}")
    if sigma == 0:
        return images
    radius = math.ceil(3 * sigma)
    kernel = gaussian_kernel_1d(sigma, radius, images.dtype, images.device)
    flat = images.reshape(-1, 1, *images.shape[-2:])
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return flat.reshape(images.shape)


def render_skip(
    coarse: Float[Tensor, "batch time 3 height width"],
    decoded: Float[Tensor, "batch time 3 height width"],
    decoded_render: Float[Tensor, "batch time 3 height width"],
    opacity: Float[Tensor, "batch time height width"],
    sigma: float,
) -> Float[Tensor, "batch time 3 height width"]:
    """r + Δ with Δ = D(x̂₀) − D(x₀ʳ), the change the denoiser made to the render's latent: the render keeps
    what the VAE round trip would blur. Δ is low-passed (σ pixels) where the render has content, weighted by
    its opacity, and stays whole in its holes: there its finest detail is the VAE's error, not the scene."""
    change = decoded - decoded_render
    if sigma > 0:
        weight = opacity[:, :, None]
        change = weight * gaussian_blur(change, sigma) + (1 - weight) * change
    return (coarse + change).clamp(0, 1)


def resize(
    images: Float[Tensor, "*batch 3 height width"],
    intrinsics: Float[Tensor, "*batch 3 3"],
    size: tuple[int, int],
) -> tuple[Float[Tensor, "*batch 3 out_height out_width"], Float[Tensor, "*batch 3 3"]]:
    """Resize to `size` = (height, width), antialiased when shrinking. A resize maps the image's corners onto
    the new corners, so normalised intrinsics are unchanged (they are returned for a uniform interface)."""
    height, width = _check_images(images)
    if size[0] < 1 or size[1] < 1:
        raise VideoSceneError(f"resize target must be positive, got {size}")
    if (height, width) == tuple(size):
        return images, intrinsics
    batch_shape = images.shape[:-3]
    flat = images.reshape(-1, 3, height, width)
    shrinking = size[0] < height or size[1] < width
    resized = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrinking)
    # The antialiasing kernel overshoots by float rounding (1.0000002 from a white image): keep the input's
    # range.
    resized = resized.clamp(flat.min(), flat.max())
    return resized.reshape(*batch_shape, 3, *size), intrinsics


def crop(
    images: Float[Tensor, "*batch 3 height width"],
    intrinsics: Float[Tensor, "*batch 3 3"],
    top: int,
    left: int,
    size: tuple[int, int],
) -> tuple[Float[Tensor, "*batch 3 out_height out_width"], Float[Tensor, "*batch 3 3"]]:
    """Crop the window of `size` = (height, width) whose top-left pixel is (top, left).

    In pixels the principal point moves by (−left, −top) and the focal length is unchanged; renormalising by
    the new size gives fx' = fx·W/w, cx' = (cx·W − left)/w (likewise for y).
    """
    height, width = _check_images(images)
    out_height, out_width = size
    if (
        top < 0
        or left < 0
        or out_height < 1
        or out_width < 1
        or top + out_height > height
        or left + out_width > width
    ):
        raise VideoSceneError(
            f"crop window top={top} left={left} size={size} does not fit in a {height}x{width} image"
        )
    cropped = images[..., top : top + out_height, left : left + out_width]
    return cropped, _cropped_intrinsics(intrinsics, (height, width), top, left, size)


def _cropped_intrinsics(
    intrinsics: Float[Tensor, "*batch 3 3"],
    image_shape: tuple[int, int],
    top: int,
    left: int,
    size: tuple[int, int],
) -> Float[Tensor, "*batch 3 3"]:
    (height, width), (out_height, out_width) = image_shape, size
    adjusted = intrinsics.clone()
    adjusted[..., 0, 0] = intrinsics[..., 0, 0] * width / out_width
    adjusted[..., 1, 1] = intrinsics[..., 1, 1] * height / out_height
    adjusted[..., 0, 2] = (intrinsics[..., 0, 2] * width - left) / out_width
    adjusted[..., 1, 2] = (intrinsics[..., 1, 2] * height - top) / out_height
    return adjusted


def center_crop(
    images: Float[Tensor, "*batch 3 height width"],
    intrinsics: Float[Tensor, "*batch 3 3"],
    size: tuple[int, int],
) -> tuple[Float[Tensor, "*batch 3 out_height out_width"], Float[Tensor, "*batch 3 3"]]:
    """Crop the central window of `size` = (height, width)."""
    top, left = _centred(_check_images(images), size)
    return crop(images, intrinsics, top, left, size)


def _centred(image_shape: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """(top, left) of the central window of `size`."""
    return (image_shape[0] - size[0]) // 2, (image_shape[1] - size[1]) // 2


def crop_to_aspect_and_resize(
    images: Float[Tensor, "*batch 3 height width"],
    intrinsics: Float[Tensor, "*batch 3 3"],
    size: tuple[int, int],
) -> tuple[Float[Tensor, "*batch 3 out_height out_width"], Float[Tensor, "*batch 3 3"]]:
    """Bring images of any size to `size` = (height, width): centre-crop the largest window with the target
    aspect ratio (an integer-pixel crop, so the intrinsics stay exact), then resize."""
    images, intrinsics = center_crop(images, intrinsics, _aspect_window(_check_images(images), size))
    return resize(images, intrinsics, size)


def crop_to_aspect_and_resize_mask(
    mask: Bool[Tensor, "*batch height width"], size: tuple[int, int]
) -> Bool[Tensor, "*batch out_height out_width"]:
    """A per-pixel mask through the same crop and resize as its images (`crop_to_aspect_and_resize`): each
    output pixel is True when more than half of it, as the image resize weighs it, was True."""
    height, width = mask.shape[-2:]
    as_image = mask.float()[..., None, :, :].expand(*mask.shape[:-2], 3, height, width)
    identity = torch.eye(3).expand(*mask.shape[:-2], 3, 3)
    share, _ = crop_to_aspect_and_resize(as_image, identity, size)
    return share[..., 0, :, :] > 0.5


def crop_to_aspect_and_resize_intrinsics(
    intrinsics: Float[Tensor, "*batch 3 3"], image_shape: tuple[int, int], size: tuple[int, int]
) -> Float[Tensor, "*batch 3 3"]:
    """The intrinsics `crop_to_aspect_and_resize` gives for images of `image_shape` = (height, width), without
    the images (e.g. for extra cameras given at the input's size). A resize keeps normalised intrinsics."""
    window = _aspect_window(image_shape, size)
    return _cropped_intrinsics(intrinsics, image_shape, *_centred(image_shape, window), window)


def _aspect_window(image_shape: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """The largest (height, width) window with the aspect ratio of `size` that fits, in whole pixels."""
    (height, width), (target_height, target_width) = image_shape, size
    if target_height < 1 or target_width < 1:
        raise VideoSceneError(f"target size must be positive, got {size}")
    crop_width = min(width, round(height * target_width / target_height))
    crop_height = min(height, round(crop_width * target_height / target_width))
    return crop_height, crop_width


def fit_within(height: int, width: int, max_size: int) -> tuple[int, int]:
    """The size after shrinking (never enlarging) so that the longer side is at most `max_size`."""
    if max_size < 1:
        raise VideoSceneError(f"maximum image size must be positive, got {max_size}")
    scale = min(1.0, max_size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def undistort(
    image: np.ndarray,
    pixel_intrinsics: Float[Tensor, "3 3"],
    distortion: Float[Tensor, 4],
) -> tuple[np.ndarray, Float[Tensor, "3 3"]]:
    """Remove OpenCV/COLMAP (k1, k2, p1, p2) lens distortion from a uint8 [H, W, C] image.

    Returns the pinhole image (same size) and its pixel intrinsics, chosen by
    `cv2.getOptimalNewCameraMatrix(alpha=0)` so that every output pixel sees the scene (no black borders).
    Our pixel coordinates put the image corner at 0 (pixel centres at +0.5); OpenCV puts the first pixel's
    centre at 0, hence the half-pixel shifts of the principal point.
    """
    import cv2  # here, not at the top: the pipeline resizes with this module and needs no OpenCV

    if image.ndim != 3:
        raise VideoSceneError(f"undistort expects an [H, W, C] image, got shape {list(image.shape)}")
    height, width = image.shape[:2]
    to_opencv = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    camera_matrix = to_opencv @ pixel_intrinsics.double().numpy()
    coefficients = distortion.double().numpy()
    new_matrix, _ = cv2.getOptimalNewCameraMatrix(
        camera_matrix, coefficients, (width, height), 0, (width, height)
    )
    map_x, map_y = cv2.initUndistortRectifyMap(
        camera_matrix, coefficients, None, new_matrix, (width, height), cv2.CV_32FC1
    )
    undistorted = cv2.remap(
        image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    if undistorted.ndim == 2:
        undistorted = undistorted[..., None]
    return undistorted, torch.from_numpy(np.linalg.inv(to_opencv) @ new_matrix)
