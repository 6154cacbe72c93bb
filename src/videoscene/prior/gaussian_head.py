"""Per-pixel Gaussian parameters (UPSTREAM.md §1.3 (c)), predicted in each context camera's frame and
moved to world space.

Raw channels per Gaussian: 2 sub-pixel offset, 3 scale, 4 rotation (wxyz), 3·d_sh colour.
- mean  = camera centre + R_c2w · (K⁻¹ [u, v, 1]) · z, with z the refined z-depth and (u, v) the pixel
  centre moved by the offset (at most half a pixel). Unlike MVSplat (which puts z at that distance along
  the *unit* ray), the mean sits at the plane-sweep z-depth, so the geometry the cost volume matched is
  the geometry that gets rendered;
- scale = z · pixel footprint · (s_min + (s_max − s_min)·sigmoid(raw)), footprint = mean of 1/fx, 1/fy in
  pixels;
- rotation: the predicted camera-frame quaternion, composed with the camera's rotation: q_world = q_c2w ⊗
  q_cam;
- colour: SH coefficients with band l ≥ 1 damped by 0.1·0.25^l (so training starts view-independent),
  rotated camera -> world by exact per-band SH rotation matrices (`sh_rotation_matrices`);
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
from videoscene.prior.cost_volume import DepthPrediction, pixel_rays
from videoscene.types import Gaussians


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


class GaussianHead(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.raw_per_gaussian = 2 + 3 + 4 + 3 * config.d_sh
        in_channels = config.depth_unet_feat_dim + 3 + config.fullres_feature_dim
        raw, hidden = config.gaussians_per_pixel * self.raw_per_gaussian, config.gaussian_head_hidden
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1), nn.GELU(), nn.Conv2d(hidden, raw, 3, padding=1)
        )
        bands = torch.cat(
            [torch.full((2 * l + 1,), l, dtype=torch.float32) for l in range(config.sh_degree + 1)]
        )
        self.register_buffer("sh_mask", torch.where(bands == 0, 1.0, 0.1 * 0.25**bands), persistent=False)

    def forward(
        self,
        images: Float[Tensor, "b v 3 h w"],
        depth: DepthPrediction,
        extrinsics: Float[Tensor, "b v 4 4"],
        intrinsics: Float[Tensor, "b v 3 3"],
    ) -> Gaussians:
        b, v, _, h, w = images.shape
        gpp, d_sh = self.config.gaussians_per_pixel, self.config.d_sh
        features = torch.cat([depth.refined_features, images.flatten(0, 1), depth.projected_features], dim=1)
        raw = self.net(features).reshape(b, v, gpp, self.raw_per_gaussian, h, w).permute(0, 1, 2, 4, 5, 3)
        offset_raw, scale_raw, rotation_raw, sh_raw = raw.split(
            [2, 3, 4, 3 * d_sh], dim=-1
        )  # [b, v, gpp, h, w, ·]
        z = depth.depth[..., None]  # [b, v, gpp, h, w, 1]
        rotation_c2w = extrinsics[..., :3, :3]
        view = (slice(None), slice(None), None, None, None)  # broadcast [b, v] over (gpp, h, w)

        # Means: back-project the offset pixel centre at z-depth.
        size = torch.tensor([w, h], dtype=images.dtype, device=images.device)
        offset = (offset_raw.sigmoid() - 0.5) / size
        rays = pixel_rays(intrinsics, h, w).transpose(-1, -2).reshape(b, v, 1, h, w, 3)
        # The ray is linear in (u, v), so the offset moves its x, y by K⁻¹[:2, :2] · offset.
        ray_shift = (torch.linalg.inv(intrinsics)[..., :2, :2][view] @ offset[..., None])[..., 0]
        rays = rays + F.pad(ray_shift, (0, 1))
        means = extrinsics[..., :3, 3][view] + (rotation_c2w[view] @ (rays * z)[..., None])[..., 0]

        # Scales in pixel footprints at the Gaussian's depth.
        footprint = 0.5 * (1 / (intrinsics[..., 0, 0] * w) + 1 / (intrinsics[..., 1, 1] * h))
        multiplier = (
            self.config.gaussian_scale_min
            + (self.config.gaussian_scale_max - self.config.gaussian_scale_min) * scale_raw.sigmoid()
        )
        scales = z * footprint[view][..., None] * multiplier

        # Rotations: camera-frame quaternion composed with the camera-to-world rotation.
        rotations = quaternion_multiply(
            matrix_to_quaternion(rotation_c2w)[view], F.normalize(rotation_raw, dim=-1, eps=1e-8)
        )

        # Colour: damp higher bands, then rotate the SH from the camera frame to the world frame.
        harmonics = sh_raw.unflatten(-1, (d_sh, 3)) * self.sh_mask[:, None]
        harmonics = sh_rotation_matrices(rotation_c2w, self.config.sh_degree)[view] @ harmonics

        opacities = depth.density / gpp
        return Gaussians(
            means=means.flatten(1, 4),
            scales=scales.flatten(1, 4),
            rotations=rotations.flatten(1, 4),
            harmonics=harmonics.flatten(1, 4),
            opacities=opacities.flatten(1, 4),
        )
