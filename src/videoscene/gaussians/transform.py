"""Moving 3D Gaussians and their cameras to another world frame (a rigid motion), e.g. the y-up frame that
splat viewers expect: our world is camera 0 in OpenCV axes (y down, z forward), so scenes open upside down
in viewers that assume y up."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from videoscene.gaussians.math import sh_rotation
from videoscene.geometry.rotations import matrix_to_quaternion, quaternion_to_matrix
from videoscene.types import Cameras, Gaussians

# OpenCV axes → y up, z backward (OpenGL's camera axes): a half turn about x.
Y_UP = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))


def transform_gaussians(gaussians: Gaussians, transform: Float[Tensor, "4 4"]) -> Gaussians:
    """The same Gaussians in the frame x' = R·x + t: means moved, orientations R·R_g (quaternions wxyz),
    view-dependent colour rotated with the scene (`sh_rotation`); scales and opacities unchanged."""
    rotation, translation = transform[:3, :3].to(gaussians.means), transform[:3, 3].to(gaussians.means)
    orientation = rotation @ quaternion_to_matrix(gaussians.rotations)
    sh = sh_rotation(gaussians.sh_degree, rotation).to(gaussians.harmonics)
    return Gaussians(
        means=gaussians.means @ rotation.T + translation,
        scales=gaussians.scales,
        rotations=matrix_to_quaternion(orientation),
        harmonics=torch.einsum("jk,...kc->...jc", sh, gaussians.harmonics),
        opacities=gaussians.opacities,
    )


def transform_cameras(cameras: Cameras, transform: Float[Tensor, "4 4"]) -> Cameras:
    """Camera-to-world extrinsics in the frame x' = R·x + t; intrinsics unchanged."""
    return Cameras(transform.to(cameras.extrinsics) @ cameras.extrinsics, cameras.intrinsics)
