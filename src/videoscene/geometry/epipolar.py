"""Projection and two-view (epipolar) geometry in the internal convention: OpenCV camera-to-world
extrinsics, normalised intrinsics, pixel coordinates with the image's top-left corner at (0, 0)
(pixel centres at +0.5). Precision-sensitive maths runs in float64 and returns the input dtype."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from videoscene.geometry.cameras import denormalize_intrinsics


def project(
    points: Float[Tensor, "*batch point 3"],
    extrinsics: Float[Tensor, "*batch 4 4"],
    intrinsics: Float[Tensor, "*batch 3 3"],
    image_size: tuple[int, int],
) -> tuple[Float[Tensor, "*batch point 2"], Float[Tensor, "*batch point"]]:
    """World points -> (pixel coordinates for an image of `image_size` = (height, width), depth along +z)."""
    height, width = image_size
    world_to_camera = torch.linalg.inv(extrinsics.double())
    camera_points = (
        points.double() @ world_to_camera[..., :3, :3].transpose(-1, -2) + world_to_camera[..., None, :3, 3]
    )
    depth = camera_points[..., 2]
    homogeneous = camera_points @ denormalize_intrinsics(intrinsics.double(), width, height).transpose(-1, -2)
    pixels = homogeneous[..., :2] / homogeneous[..., 2:]
    return pixels.to(points.dtype), depth.to(points.dtype)


def pixel_centers(
    height: int, width: int, dtype: torch.dtype = torch.float32
) -> Float[Tensor, "height width 2"]:
    """(x, y) pixel coordinates of every pixel centre."""
    y, x = torch.meshgrid(
        torch.arange(height, dtype=dtype) + 0.5, torch.arange(width, dtype=dtype) + 0.5, indexing="ij"
    )
    return torch.stack([x, y], dim=-1)


def unproject(
    pixels: Float[Tensor, "*batch point 2"],
    depth: Float[Tensor, "*batch point"],
    extrinsics: Float[Tensor, "*batch 4 4"],
    intrinsics: Float[Tensor, "*batch 3 3"],
    image_size: tuple[int, int],
) -> Float[Tensor, "*batch point 3"]:
    """Pixels with their depth (along +z, not along the ray) -> world points; inverse of `project`."""
    height, width = image_size
    homogeneous = torch.cat([pixels.double(), torch.ones_like(pixels[..., :1], dtype=torch.float64)], dim=-1)
    k_inverse = torch.linalg.inv(denormalize_intrinsics(intrinsics.double(), width, height))
    camera_points = (homogeneous @ k_inverse.transpose(-1, -2)) * depth.double()[..., None]
    c2w = extrinsics.double()
    world = camera_points @ c2w[..., :3, :3].transpose(-1, -2) + c2w[..., None, :3, 3]
    return world.to(pixels.dtype)


def unproject_depth_map(
    depth: Float[Tensor, "*batch height width"],
    extrinsics: Float[Tensor, "*batch 4 4"],
    intrinsics: Float[Tensor, "*batch 3 3"],
) -> Float[Tensor, "*batch height width 3"]:
    """A depth map (z-depth per pixel) -> the world point seen at every pixel centre."""
    height, width = depth.shape[-2:]
    pixels = pixel_centers(height, width, depth.dtype).flatten(0, 1).expand(*depth.shape[:-2], -1, -1)
    world = unproject(pixels, depth.flatten(-2), extrinsics, intrinsics, (height, width))
    return world.unflatten(-2, (height, width))


def relative_pose(
    extrinsics_a: Float[Tensor, "*batch 4 4"], extrinsics_b: Float[Tensor, "*batch 4 4"]
) -> Float[Tensor, "*batch 4 4"]:
    """The rigid transform T_ba taking points from camera a's frame to camera b's: x_b = R x_a + t."""
    return (torch.linalg.inv(extrinsics_b.double()) @ extrinsics_a.double()).to(extrinsics_a.dtype)


def skew(vector: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 3 3"]:
    """[v]_x, so that [v]_x w = v × w."""
    x, y, z = vector.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).unflatten(-1, (3, 3))


def essential_matrix(
    extrinsics_a: Float[Tensor, "*batch 4 4"], extrinsics_b: Float[Tensor, "*batch 4 4"]
) -> Float[Tensor, "*batch 3 3"]:
    """E = [t]_x R for x_b = R x_a + t, so that x̂_bᵀ E x̂_a = 0 for normalised image points x̂ = K⁻¹x."""
    pose = relative_pose(extrinsics_a.double(), extrinsics_b.double())
    return (skew(pose[..., :3, 3]) @ pose[..., :3, :3]).to(extrinsics_a.dtype)


def fundamental_matrix(
    extrinsics_a: Float[Tensor, "*batch 4 4"],
    intrinsics_a: Float[Tensor, "*batch 3 3"],
    size_a: tuple[int, int],
    extrinsics_b: Float[Tensor, "*batch 4 4"],
    intrinsics_b: Float[Tensor, "*batch 3 3"],
    size_b: tuple[int, int],
) -> Float[Tensor, "*batch 3 3"]:
    """F = K_b⁻ᵀ E K_a⁻¹ in pixel units for images of size (height, width), so that x_bᵀ F x_a = 0 for
    corresponding pixels. Scaled to unit Frobenius norm (F is defined up to scale)."""
    k_a = denormalize_intrinsics(intrinsics_a.double(), size_a[1], size_a[0])
    k_b = denormalize_intrinsics(intrinsics_b.double(), size_b[1], size_b[0])
    essential = essential_matrix(extrinsics_a.double(), extrinsics_b.double())
    fundamental = torch.linalg.inv(k_b).transpose(-1, -2) @ essential @ torch.linalg.inv(k_a)
    fundamental = fundamental / fundamental.flatten(-2).norm(dim=-1)[..., None, None]
    return fundamental.to(extrinsics_a.dtype)


def sampson_distance(
    fundamental: Float[Tensor, "*batch 3 3"],
    points_a: Float[Tensor, "*batch point 2"],
    points_b: Float[Tensor, "*batch point 2"],
) -> Float[Tensor, "*batch point"]:
    """First-order geometric distance (pixels) of correspondences from the epipolar constraint:
    sqrt of the Sampson error (x_bᵀFx_a)² / ((Fx_a)₁² + (Fx_a)₂² + (Fᵀx_b)₁² + (Fᵀx_b)₂²) (Hartley & Zisserman
    eq. 11.9), i.e. the smallest joint displacement of both points that puts them on each other's epipolar
    lines."""
    f = fundamental.double()
    x_a = torch.cat([points_a.double(), torch.ones_like(points_a[..., :1], dtype=torch.float64)], dim=-1)
    x_b = torch.cat([points_b.double(), torch.ones_like(points_b[..., :1], dtype=torch.float64)], dim=-1)
    line_b = x_a @ f.transpose(-1, -2)  # F x_a: epipolar lines in image b
    line_a = x_b @ f  # Fᵀ x_b: epipolar lines in image a
    residual = (x_b * line_b).sum(-1)
    gradient = line_b[..., 0] ** 2 + line_b[..., 1] ** 2 + line_a[..., 0] ** 2 + line_a[..., 1] ** 2
    return (residual.abs() / gradient.sqrt().clamp_min(1e-300)).to(points_a.dtype)
