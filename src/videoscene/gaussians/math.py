"""Small maths shared by the rasterizers and the Gaussian heads: quaternions (wxyz, as gsplat and the
Inria PLY layout), real spherical harmonics in the Inria 3DGS basis, and RGB <-> DC coefficient helpers.

Spherical harmonics: the Inria basis is the real basis *with* the Condon-Shortley phase, i.e. for order
m > 0 it is sqrt(2)·Re(Y_l^m) and for m < 0 sqrt(2)·Im(Y_l^|m|), where Y_l^m is the complex harmonic as
written in physics texts (including (-1)^m). Coefficients of band l, order m sit at index l² + l + m.
Degree 4 is not in the Inria code; we extend the same convention (it matches gsplat's degree-4 basis).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from videoscene.errors import VideoSceneError

MAX_SH_DEGREE = 4
SH_C0 = 0.5 * math.sqrt(1 / math.pi)  # the constant band-0 basis value, 0.28209479...


def quaternion_to_matrix(quaternions: Float[Tensor, "*batch 4"]) -> Float[Tensor, "*batch 3 3"]:
    """Rotation matrix of a wxyz quaternion. The quaternion need not be unit: it is normalised first
    (as in gsplat), so a network may output raw 4-vectors."""
    w, x, y, z = F.normalize(quaternions, dim=-1).unbind(-1)
    matrix = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )  # fmt: skip
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


def sh_basis_size(degree: int) -> int:
    return (degree + 1) ** 2


def sh_degree_of(d_sh: int) -> int:
    """Degree of a harmonics tensor with `d_sh` coefficients per channel; one-line error if not a square."""
    degree = math.isqrt(d_sh) - 1
    if d_sh < 1 or (degree + 1) ** 2 != d_sh or degree > MAX_SH_DEGREE:
        raise VideoSceneError(
            f"spherical harmonics must have (degree+1)^2 coefficients with degree <= {MAX_SH_DEGREE}, got {d_sh}"
        )
    return degree


def sh_basis(degree: int, directions: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch d_sh"]:
    """Real SH basis (Inria convention, see the module docstring) at the given directions, which are
    normalised here. Returns (degree+1)² values ordered by band l, then order m = -l..l."""
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise VideoSceneError(f"SH degree must be between 0 and {MAX_SH_DEGREE}, got {degree}")
    x, y, z = F.normalize(directions, dim=-1).unbind(-1)
    bands = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        c1 = math.sqrt(3 / (4 * math.pi))
        bands += [-c1 * y, c1 * z, -c1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        c2 = 0.5 * math.sqrt(15 / math.pi)
        c20 = 0.25 * math.sqrt(5 / math.pi)
        bands += [c2 * x * y, -c2 * y * z, c20 * (2 * zz - xx - yy), -c2 * x * z, 0.5 * c2 * (xx - yy)]
    if degree >= 3:
        c33 = 0.25 * math.sqrt(35 / (2 * math.pi))
        c32 = 0.5 * math.sqrt(105 / math.pi)
        c31 = 0.25 * math.sqrt(21 / (2 * math.pi))
        c30 = 0.25 * math.sqrt(7 / math.pi)
        bands += [
            -c33 * y * (3 * xx - yy),
            c32 * x * y * z,
            -c31 * y * (4 * zz - xx - yy),
            c30 * z * (2 * zz - 3 * xx - 3 * yy),
            -c31 * x * (4 * zz - xx - yy),
            0.5 * c32 * z * (xx - yy),
            -c33 * x * (xx - 3 * yy),
        ]
    if degree >= 4:
        c44 = 0.75 * math.sqrt(35 / math.pi)
        c43 = 0.75 * math.sqrt(35 / (2 * math.pi))
        c42 = 0.75 * math.sqrt(5 / math.pi)
        c41 = 0.75 * math.sqrt(5 / (2 * math.pi))
        c40 = (3 / 16) * math.sqrt(1 / math.pi)
        r2 = xx + yy + zz  # = 1, kept so the polynomials are the textbook homogeneous ones
        bands += [
            c44 * x * y * (xx - yy),
            -c43 * y * z * (3 * xx - yy),
            c42 * x * y * (7 * zz - r2),
            -c41 * y * z * (7 * zz - 3 * r2),
            c40 * (35 * zz * zz - 30 * zz * r2 + 3 * r2 * r2),
            -c41 * x * z * (7 * zz - 3 * r2),
            0.5 * c42 * (xx - yy) * (7 * zz - r2),
            -c43 * x * z * (xx - 3 * yy),
            0.25 * c44 * (xx * (xx - 3 * yy) - yy * (3 * xx - yy)),
        ]
    return torch.stack(bands, dim=-1)


def eval_sh(
    harmonics: Float[Tensor, "*batch d_sh 3"],
    directions: Float[Tensor, "*batch 3"],
    degree: int | None = None,
) -> Float[Tensor, "*batch 3"]:
    """Colour of SH coefficients seen along `directions` (camera centre -> Gaussian mean), using the
    first `degree` bands (all by default): Σ_k basis_k · coeff_k + 0.5, clamped at 0 (Inria/gsplat).
    Leading axes broadcast between `harmonics` and `directions`."""
    available = sh_degree_of(harmonics.shape[-2])
    degree = available if degree is None else degree
    if degree > available:
        raise VideoSceneError(f"asked for SH degree {degree} but the Gaussians only have degree {available}")
    basis = sh_basis(degree, directions)
    coefficients = harmonics[..., : sh_basis_size(degree), :]
    # einsum broadcasts the leading axes, so harmonics [B, 1, N, K, 3] serve every view without a copy.
    return (torch.einsum("...k,...kc->...c", basis, coefficients) + 0.5).clamp_min(0.0)


def rgb_to_sh0(rgb: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 3"]:
    """DC coefficient whose colour (degree 0) is `rgb`."""
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 3"]:
    """Colour of a DC coefficient (before the clamp at 0)."""
    return sh0 * SH_C0 + 0.5
