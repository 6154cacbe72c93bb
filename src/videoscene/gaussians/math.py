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


def sh_basis_size(degree: int) -> int:
    return (degree + 1) ** 2


def sh_degree_of(d_sh: int) -> int:
    """Degree of a harmonics tensor with `d_sh` coefficients per channel; one-line error if not a square."""
    degree = math.isqrt(d_sh) - 1
    if d_sh < 1 or (degree + 1) ** 2 != d_sh or degree > MAX_SH_DEGREE:
        raise VideoSceneError(
            f"spherical harmonics must have (degree+1)^2 coefficients with degree <= {MAX_SH_DEGREE}, "
            f"got {d_sh}"
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
    harmonics: Float[Tensor, "*#batch d_sh 3"],
    directions: Float[Tensor, "*#batch 3"],
    degree: int | None = None,
) -> Float[Tensor, "*#batch 3"]:
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


def sh_rotation(degree: int, rotation: Float[Tensor, "3 3"]) -> Float[Tensor, "d_sh d_sh"]:
    """The matrix M with basis(R·d) = M·basis(d) for every direction d: coefficients c of a Gaussian whose
    world is rotated by R become M·c (then colour(R·d) = basis(R·d)ᵀ·M·c = basis(d)ᵀ·c, as M is
    orthogonal). Fitted in float64 by least squares on a Fibonacci sphere of directions, where it is
    exact: each band of the basis spans a space that rotations map onto itself."""
    count = 8 * sh_basis_size(degree)
    k = torch.arange(count, dtype=torch.float64) + 0.5
    z = 1 - 2 * k / count
    azimuth = math.pi * (1 + 5**0.5) * k
    radius = (1 - z * z).sqrt()
    directions = torch.stack([radius * azimuth.cos(), radius * azimuth.sin(), z], dim=-1)
    rotation = rotation.to(torch.float64)
    basis, rotated = sh_basis(degree, directions), sh_basis(degree, directions @ rotation.T)
    return torch.linalg.lstsq(basis, rotated).solution.T
