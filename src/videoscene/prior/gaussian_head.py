"""From the depth predictor's raw per-pixel channels to world-space 3D Gaussians (MVSplat §3.3), as MVSplat's
released encoder computes them.

Raw channels per pixel: 2 sub-pixel offset, 3 scale, 4 rotation (xyzw), 3·d_sh colour (RGB-major); every
one of the pixel's `gaussians_per_pixel` depths shares them.
- mean = camera centre + R_c2w · unit(K⁻¹ [u, v, 1]) · depth, with (u, v) the pixel centre moved by the
  offset (at most half a pixel): the depth is a distance along the unit ray (the plane sweep treats the
  same number as z-depth; the released weights were trained so);
- scale = depth · 0.1 (1/(fx W) + 1/(fy H)) · (s_min + (s_max − s_min)·sigmoid(raw));
- rotation: the predicted camera-frame quaternion, composed with the camera's rotation: q_world = q_c2w ⊗
  q_cam;
- colour: SH coefficients with band l ≥ 1 damped by 0.1·0.25^l (so training starts view-independent),
  then rotated camera -> world. The released model rotates them with Wigner matrices in another real-SH
  basis (e3nn's), which in the Inria basis used here is the exact rotation by P R_c2w Pᵀ for the fixed
  axis permutation `SH_FRAME` rather than by R_c2w; this module reproduces that (tests check it against
  e3nn);
- opacity = density / gaussians_per_pixel.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from videoscene.gaussians.math import sh_basis
from videoscene.geometry.rotations import matrix_to_quaternion
from videoscene.prior.config import EncoderConfig
from videoscene.prior.cost_volume import DepthPrediction
from videoscene.types import Gaussians

# D_e3nn(R) = M_inria(SH_FRAME · R · SH_FRAMEᵀ) for every band (see the module docstring).
SH_FRAME = ((0.0, 0.0, -1.0), (-1.0, 0.0, 0.0), (0.0, 1.0, 0.0))


def quaternion_multiply(
    a: Float[Tensor, "*#batch 4"], b: Float[Tensor, "*#batch 4"]
) -> Float[Tensor, "*#batch 4"]:
    """Hamilton product a ⊗ b of wxyz quaternions (the rotation b followed by a)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


@functools.cache
def _sh_fit(degree: int) -> tuple[Tensor, Tensor, Tensor]:
    """Sample directions S (Fibonacci sphere), pinv(Y(S)) and the band-diagonal mask, in float64."""
    d_sh = (degree + 1) ** 2
    count = 4 * d_sh
    i = torch.arange(count, dtype=torch.float64) + 0.5
    polar = torch.arccos(1 - 2 * i / count)
    azimuth = math.pi * (1 + 5**0.5) * i
    directions = torch.stack([polar.sin() * azimuth.cos(), polar.sin() * azimuth.sin(), polar.cos()], dim=-1)
    band = torch.cat([torch.full((2 * l + 1,), l) for l in range(degree + 1)])
    return directions, torch.linalg.pinv(sh_basis(degree, directions)), band[:, None] == band[None, :]


def sh_rotation_matrices(
    rotation: Float[Tensor, "*batch 3 3"], degree: int
) -> Float[Tensor, "*batch d_sh d_sh"]:
    """M(R) such that coefficients `a` seen in a frame rotated by R (world = R · local) become `M @ a` in
    world coordinates: Σ_k (M a)_k Y_k(d) = Σ_k a_k Y_k(Rᵀ d) for every direction d.

    Each SH band is closed under rotation, so Y(Rᵀ d) = Y(d) M exactly; M is recovered by least squares
    over fixed sample directions S: M = pinv(Y(S)) · Y(S R) (rows of S R are Rᵀ s). The fit is exact up to
    float64 rounding, works for any degree the basis supports, and is differentiable in R.
    """
    directions, pinv, band_mask = (t.to(rotation.device) for t in _sh_fit(degree))
    rotated = directions @ rotation.double()  # rows Rᵀ s: [..., count, 3]
    matrices = pinv @ sh_basis(degree, rotated)
    return (matrices * band_mask).to(rotation.dtype)


def pixel_rays(
    intrinsics: Float[Tensor, "*batch 3 3"], height: int, width: int
) -> Float[Tensor, "*batch 3 hw"]:
    """Camera-space rays with z = 1 through pixel centres ((x + 0.5)/W, (y + 0.5)/H) of normalised
    intrinsics."""
    ys = (torch.arange(height, device=intrinsics.device, dtype=intrinsics.dtype) + 0.5) / height
    xs = (torch.arange(width, device=intrinsics.device, dtype=intrinsics.dtype) + 0.5) / width
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    pixels = torch.stack([grid_x.flatten(), grid_y.flatten(), torch.ones_like(grid_x.flatten())])
    return torch.linalg.inv(intrinsics) @ pixels


class GaussianAdapter(nn.Module):
    """No parameters: maps raw channels and depths to Gaussians."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        bands = torch.cat(
            [torch.full((2 * l + 1,), l, dtype=torch.float32) for l in range(config.sh_degree + 1)]
        )
        self.register_buffer("sh_mask", torch.where(bands == 0, 1.0, 0.1 * 0.25**bands), persistent=False)
        self.register_buffer("sh_frame", torch.tensor(SH_FRAME), persistent=False)

    def forward(
        self,
        depth: DepthPrediction,
        extrinsics: Float[Tensor, "b v 4 4"],
        intrinsics: Float[Tensor, "b v 3 3"],
    ) -> Gaussians:
        b, v, gpp, h, w = depth.depth.shape
        d_sh = self.config.d_sh
        raw = depth.raw_gaussians.permute(0, 1, 3, 4, 2)  # [b, v, h, w, raw]
        offset_raw, scale_raw, rotation_raw, sh_raw = raw.split([2, 3, 4, 3 * d_sh], dim=-1)
        distance = depth.depth.permute(0, 1, 3, 4, 2)[..., None]  # [b, v, h, w, gpp, 1]
        rotation_c2w = extrinsics[..., :3, :3]
        view = (slice(None), slice(None), None, None)  # broadcast [b, v] over (h, w)

        # Means: the offset pixel centre's unit ray, at the predicted distance.
        size = torch.tensor([w, h], dtype=raw.dtype, device=raw.device)
        offset = (offset_raw.sigmoid() - 0.5) / size
        rays = pixel_rays(intrinsics, h, w).transpose(-1, -2).reshape(b, v, h, w, 3)
        # The ray is linear in (u, v), so the offset moves its x, y by K⁻¹[:2, :2] · offset.
        rays = rays + F.pad(
            (torch.linalg.inv(intrinsics)[..., :2, :2][view] @ offset[..., None])[..., 0], (0, 1)
        )
        directions = (rotation_c2w[view] @ F.normalize(rays, dim=-1)[..., None])[..., 0]
        means = extrinsics[..., :3, 3][view][..., None, :] + directions[..., None, :] * distance

        # Scales: pixel footprints at that distance.
        footprint = 0.1 * (1 / (intrinsics[..., 0, 0] * w) + 1 / (intrinsics[..., 1, 1] * h))
        multiplier = (
            self.config.gaussian_scale_min
            + (self.config.gaussian_scale_max - self.config.gaussian_scale_min) * scale_raw.sigmoid()
        )
        scales = distance * (footprint[view][..., None] * multiplier)[..., None, :]

        # Rotations: xyzw -> wxyz, then composed with the camera-to-world rotation.
        rotation = rotation_raw / (rotation_raw.norm(dim=-1, keepdim=True) + 1e-8)
        rotations = quaternion_multiply(matrix_to_quaternion(rotation_c2w)[view], rotation.roll(1, dims=-1))

        # Colour: damp higher bands, then rotate camera -> world as the released model does.
        harmonics = sh_raw.unflatten(-1, (3, d_sh)).transpose(-1, -2) * self.sh_mask[:, None]
        frame_rotation = self.sh_frame @ rotation_c2w @ self.sh_frame.T
        harmonics = sh_rotation_matrices(frame_rotation, self.config.sh_degree)[view] @ harmonics

        def shared(x: Tensor) -> Tensor:
            """A pixel's value for each of its gpp Gaussians: [b, v, h, w, ...] -> [b, v, h, w, gpp, ...]."""
            return x[:, :, :, :, None].expand(b, v, h, w, gpp, *x.shape[4:])

        # Order: view-major, then pixel, then the pixel's Gaussians.
        return Gaussians(
            means=means.flatten(1, 4),
            scales=scales.flatten(1, 4),
            rotations=shared(rotations).flatten(1, 4),
            harmonics=shared(harmonics).flatten(1, 4),
            opacities=(depth.density / gpp).permute(0, 1, 3, 4, 2).flatten(1, 4),
        )
