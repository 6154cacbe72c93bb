"""Rotations as unit quaternions, wxyz (scalar first, the 3DGS/gsplat order), and back: what cameras and
Gaussians share."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor


def quaternion_to_matrix(quaternions: Float[Tensor, "*batch 4"]) -> Float[Tensor, "*batch 3 3"]:
    """Rotation matrix of a wxyz quaternion. The quaternion need not be unit: it is normalised first
    (as in gsplat), so a network may output raw 4-vectors."""
    w, x, y, z = F.normalize(quaternions, dim=-1).unbind(-1)
    matrix = torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )
    return matrix.unflatten(-1, (3, 3))


def matrix_to_quaternion(matrix: Float[Tensor, "*batch 3 3"]) -> Float[Tensor, "*batch 4"]:
    """Unit wxyz quaternion with w >= 0 of a rotation matrix.

    Shepperd's method: of the four algebraically equivalent formulas, each element uses the one whose
    divisor (4·|largest component|) is largest, so the result is accurate for every rotation."""
    m = matrix
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # 4·w², 4·x², 4·y², 4·z² (each = 1 + signed sum of the diagonal).
    squares = torch.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1
    )
    # Row i: the quaternion scaled by 4·q_i, written with the off-diagonal sums/differences.
    candidates = torch.stack(
        [
            torch.stack([squares[..., 0], m21 - m12, m02 - m20, m10 - m01], dim=-1),
            torch.stack([m21 - m12, squares[..., 1], m10 + m01, m02 + m20], dim=-1),
            torch.stack([m02 - m20, m10 + m01, squares[..., 2], m12 + m21], dim=-1),
            torch.stack([m10 - m01, m20 + m02, m21 + m12, squares[..., 3]], dim=-1),
        ],
        dim=-2,
    )
    best = squares.argmax(dim=-1, keepdim=True)
    chosen = torch.gather(candidates, -2, best[..., None].expand(*best.shape, 4)).squeeze(-2)
    quaternion = F.normalize(chosen, dim=-1)
    return torch.where(quaternion[..., :1] < 0, -quaternion, quaternion)
