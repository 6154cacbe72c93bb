"""Camera conventions and conversions. Internal convention (docs/conventions.md): OpenCV axes
(x right, y down, z forward), camera-to-world 4x4 extrinsics, intrinsics normalised by image size
(fx/W, fy/H, cx/W, cy/H)."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from videoscene.errors import VideoSceneError


def check_rigid(extrinsics: Float[Tensor, "*batch 4 4"], name: str = "extrinsics", atol: float = 1e-3) -> None:
    """Raise one clear line unless every matrix is a finite rigid transform [R t; 0 1] with R ∈ SO(3)."""
    if extrinsics.shape[-2:] != (4, 4):
        raise VideoSceneError(f"{name} must have shape [..., 4, 4], got {list(extrinsics.shape)}")
    if not torch.isfinite(extrinsics).all():
        raise VideoSceneError(f"{name} contains NaN or inf; fix the camera file")
    m = extrinsics.double()
    rotation = m[..., :3, :3]
    identity = torch.eye(3, dtype=m.dtype)
    orthonormal = (rotation @ rotation.transpose(-1, -2) - identity).abs().amax(dim=(-1, -2)) < atol
    proper = (torch.linalg.det(rotation) - 1).abs() < atol
    bottom = (m[..., 3, :] - torch.tensor([0, 0, 0, 1], dtype=m.dtype)).abs().amax(dim=-1) < atol
    if not (orthonormal & proper & bottom).all():
        raise VideoSceneError(
            f"{name} are not rigid transforms (rotation part must be orthonormal with det +1, last row 0 0 0 1); "
            "check the axis convention and units of the camera file"
        )


def cameras_from_re10k_vector(
    vector: Float[Tensor, "*batch 18"],
) -> tuple[Float[Tensor, "*batch 4 4"], Float[Tensor, "*batch 3 3"]]:
    """RealEstate10K's 18 numbers [fx fy cx cy (normalised), 0, 0, world-to-camera 3x4 row-major]
    -> (camera-to-world 4x4, normalised intrinsics)."""
    if vector.shape[-1] != 18:
        raise VideoSceneError(f"RealEstate10K cameras must have 18 numbers per frame, got shape {list(vector.shape)}")
    if not torch.isfinite(vector).all():
        raise VideoSceneError("RealEstate10K cameras contain NaN or inf")
    vector = vector.float()
    fx, fy, cx, cy = vector[..., 0], vector[..., 1], vector[..., 2], vector[..., 3]
    intrinsics = torch.zeros(*vector.shape[:-1], 3, 3, dtype=vector.dtype)
    intrinsics[..., 0, 0], intrinsics[..., 1, 1] = fx, fy
    intrinsics[..., 0, 2], intrinsics[..., 1, 2] = cx, cy
    intrinsics[..., 2, 2] = 1
    world_to_camera = torch.zeros(*vector.shape[:-1], 4, 4, dtype=torch.float64)
    world_to_camera[..., :3, :] = vector[..., 6:].double().unflatten(-1, (3, 4))
    world_to_camera[..., 3, 3] = 1
    check_rigid(world_to_camera, "RealEstate10K world-to-camera matrices")
    return torch.linalg.inv(world_to_camera).float(), intrinsics


def cameras_to_re10k_vector(
    extrinsics: Float[Tensor, "*batch 4 4"], intrinsics: Float[Tensor, "*batch 3 3"]
) -> Float[Tensor, "*batch 18"]:
    """Inverse of `cameras_from_re10k_vector`."""
    check_rigid(extrinsics)
    world_to_camera = torch.linalg.inv(extrinsics.double()).float()
    head = torch.stack(
        [intrinsics[..., 0, 0], intrinsics[..., 1, 1], intrinsics[..., 0, 2], intrinsics[..., 1, 2]], dim=-1
    ).float()
    zeros = torch.zeros(*head.shape[:-1], 2)
    return torch.cat([head, zeros, world_to_camera[..., :3, :].flatten(-2)], dim=-1)


def normalize_intrinsics(pixel_intrinsics: Float[Tensor, "*batch 3 3"], width: int, height: int) -> Float[Tensor, "*batch 3 3"]:
    scale = torch.tensor([1 / width, 1 / height, 1.0], dtype=pixel_intrinsics.dtype)
    return pixel_intrinsics * scale[:, None]


def denormalize_intrinsics(intrinsics: Float[Tensor, "*batch 3 3"], width: int, height: int) -> Float[Tensor, "*batch 3 3"]:
    scale = torch.tensor([width, height, 1.0], dtype=intrinsics.dtype)
    return intrinsics * scale[:, None]
