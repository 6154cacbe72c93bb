"""Depth from a plane-sweep cost volume (MVSplat §3.2), computed as MVSplat's released encoder computes it.

1. Sweep D fronto-parallel planes uniform in disparity between 1/far and 1/near; at each plane warp every
   other view's transformer features into the reference view and correlate (dot product / √C); average
   over the other views.
2. Refine [correlation, features] with a U-Net whose attention sees all views, plus a 1x1 residual.
3. Softmax over the candidates -> coarse disparity (expectation) and confidence (peak probability) at 1/4
   resolution.
4. Upsample, and refine at full resolution with a second U-Net fed the image, projected features, the raw
   disparity and the confidence; it predicts a disparity correction and a density per Gaussian, and from
   the refined features the raw channels of the Gaussian head.

The plane sweep reads features at integer pixel coordinates (pixel (0, 0) at x = y = 0, bilinear with
`align_corners=True`), as the released weights were trained; the Gaussian head uses pixel centres.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from videoscene.prior.config import EncoderConfig
from videoscene.prior.unet import UNet


def disparity_candidates(
    near: Float[Tensor, "b v"], far: Float[Tensor, "b v"], count: int
) -> Float[Tensor, "b v d"]:
    """Disparities 1/far ... 1/near, uniform (index 0 is the far plane)."""
    steps = torch.linspace(0, 1, count, device=near.device).to(near.dtype)
    return (1 / far)[..., None] + ((1 / near) - (1 / far))[..., None] * steps


def relative_poses(extrinsics: Float[Tensor, "b v 4 4"], offset: int) -> Float[Tensor, "b v 4 4"]:
    """For each view i, the transform from camera i to camera (i + offset) mod V."""
    if extrinsics.shape[1] == 2:
        # The released model computed the two-view case as one product and its inverse.
        forward = torch.linalg.inv(extrinsics[:, 1]) @ extrinsics[:, 0]
        return torch.stack([forward, torch.linalg.inv(forward)], dim=1)
    return torch.linalg.inv(extrinsics.roll(-offset, dims=1)) @ extrinsics


def plane_sweep_correlation(
    features: Float[Tensor, "b v c h w"],
    extrinsics: Float[Tensor, "b v 4 4"],
    intrinsics: Float[Tensor, "b v 3 3"],
    disparities: Float[Tensor, "b v d"],
) -> Float[Tensor, "b v d h w"]:
    """Correlation of each view's features with every other view's features warped onto each plane,
    averaged over the other views. Samples outside the other image read zeros."""
    b, v, c, h, w = features.shape
    d = disparities.shape[-1]
    pixel_intrinsics = (
        intrinsics * torch.tensor([w, h, 1], dtype=intrinsics.dtype, device=intrinsics.device)[:, None]
    )
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=features.dtype, device=features.device),
        torch.arange(w, dtype=features.dtype, device=features.device),
        indexing="ij",
    )
    pixels = torch.stack([xs.flatten(), ys.flatten(), torch.ones_like(xs.flatten())])  # [3, hw]
    rays = torch.linalg.inv(pixel_intrinsics) @ pixels  # [b, v, 3, hw], z = 1
    depths = 1 / disparities  # [b, v, d]
    correlations = []
    for offset in range(1, v):
        relative = relative_poses(extrinsics, offset)  # reference camera -> other camera
        points = (relative[..., :3, :3] @ rays)[:, :, :, None, :] * depths[:, :, None, :, None]
        points = points + relative[..., :3, 3, None, None]  # [b, v, 3, d, hw]
        other_intrinsics = pixel_intrinsics.roll(-offset, dims=1)
        projected = other_intrinsics @ points.flatten(-2)  # [b, v, 3, d·hw]
        uv = projected[:, :, :2] / projected[:, :, 2:].clamp(min=1e-3)
        scale = torch.tensor([w - 1, h - 1], dtype=uv.dtype, device=uv.device)[:, None]
        grid = (2 * uv / scale - 1).transpose(-1, -2).reshape(b * v, d * h, w, 2)
        warped = F.grid_sample(
            features.roll(-offset, dims=1).flatten(0, 1),
            grid,
            mode="bilinear",
            padding_mode="zeros",
            align_corners=True,
        ).reshape(b, v, c, d, h, w)
        correlations.append((features[:, :, :, None] * warped).sum(2) / c**0.5)
    return torch.stack(correlations).mean(0)


@dataclass
class DepthPrediction:
    depth: Float[Tensor, "b v gpp h w"]  # within [near, far]
    density: Float[Tensor, "b v gpp h w"]  # in (0, 1)
    raw_gaussians: Float[Tensor, "b v raw h w"]  # the Gaussian head's channels (prior/gaussian_head.py)
    coarse_disparity: Float[Tensor, "b v h4 w4"]
    confidence: Float[Tensor, "b v h4 w4"]


class DepthPredictor(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        c, d = config.d_feature, config.num_depth_candidates
        self.num_candidates = d
        self.gaussians_per_pixel = config.gaussians_per_pixel
        self.downscale = config.downscale_factor
        cost_width, depth_width = config.costvolume_unet_feat_dim, config.depth_unet_feat_dim
        unet = dict(
            res_blocks=config.unet_res_blocks,
            head_channels=config.unet_attention_head_channels,
            checkpointing=config.gradient_checkpointing,
        )

        # Cost-volume refinement: a U-Net branch plus a 1x1 residual branch, both on [correlation, features].
        self.corr_refine_net = nn.Sequential(
            nn.Conv2d(d + c, cost_width, 3, padding=1),
            nn.GroupNorm(8, cost_width),
            nn.GELU(),
            UNet(cost_width, config.costvolume_unet_channel_mult, config.costvolume_unet_attn_res, **unet),
            nn.Conv2d(cost_width, d, 3, padding=1),
        )
        self.regressor_residual = nn.Conv2d(d + c, d, 1)
        self.depth_head_lowres = nn.Sequential(
            nn.Conv2d(d, 2 * d, 3, padding=1), nn.GELU(), nn.Conv2d(2 * d, d, 3, padding=1)
        )

        # Full-resolution refinement.
        self.upsampler = nn.Sequential(
            nn.Conv2d(2 * c, c, 3, padding=1),
            nn.Upsample(scale_factor=self.downscale, mode="bilinear", align_corners=True),
            nn.GELU(),
        )
        self.proj_feature = nn.Conv2d(c, depth_width, 3, padding=1)
        self.refine_unet = nn.Sequential(
            nn.Conv2d(3 + depth_width + 2, depth_width, 3, padding=1),
            nn.GroupNorm(4, depth_width),
            nn.GELU(),
            UNet(depth_width, config.depth_unet_channel_mult, config.depth_unet_attn_res, **unet),
        )
        # Gaussian head: offset, scale, rotation, colour per pixel, from [refined, image, projected features].
        raw = 2 + 3 + 4 + 3 * config.d_sh
        self.to_gaussians = nn.Sequential(
            nn.Conv2d(depth_width + 3 + c, 2 * raw, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(2 * raw, raw, 3, padding=1),
        )
        self.to_disparity = nn.Sequential(
            nn.Conv2d(depth_width, 2 * depth_width, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(2 * depth_width, 2 * config.gaussians_per_pixel, 3, padding=1),
        )

    @staticmethod
    def _run(sequence: nn.Sequential, x: Tensor, views: int) -> Tensor:
        for layer in sequence:
            x = layer(x, views) if isinstance(layer, UNet) else layer(x)
        return x

    def forward(
        self,
        images: Float[Tensor, "b v 3 h w"],
        trans_features: Float[Tensor, "b v c h4 w4"],
        cnn_features: Float[Tensor, "b v c h4 w4"],
        extrinsics: Float[Tensor, "b v 4 4"],
        intrinsics: Float[Tensor, "b v 3 3"],
        near: Float[Tensor, "b v"],
        far: Float[Tensor, "b v"],
    ) -> DepthPrediction:
        b, v = images.shape[:2]
        gpp = self.gaussians_per_pixel

        # 1. Plane sweep.
        candidates = disparity_candidates(near, far, self.num_candidates)
        correlation = plane_sweep_correlation(trans_features, extrinsics, intrinsics, candidates)

        # 2. Refine the cost volume (views attend to each other inside the U-Net).
        volume_in = torch.cat([correlation, trans_features], dim=2).flatten(0, 1)
        volume = self._run(self.corr_refine_net, volume_in, v) + self.regressor_residual(volume_in)

        # 3. Coarse disparity as the expectation over candidates; confidence = peak probability.
        pdf = self.depth_head_lowres(volume).softmax(dim=1).unflatten(0, (b, v))  # [b, v, d, h4, w4]
        coarse_disparity = (pdf * candidates[..., None, None]).sum(2)
        confidence = pdf.amax(2)

        # 4. Full-resolution refinement on the raw disparity.
        disparity_up = F.interpolate(
            coarse_disparity, scale_factor=self.downscale, mode="bilinear", align_corners=True
        )
        confidence_up = F.interpolate(confidence, scale_factor=self.downscale, mode="nearest")
        projected = self.upsampler(torch.cat([trans_features, cnn_features], dim=2).flatten(0, 1))
        refine_in = torch.cat(
            [
                images.flatten(0, 1),
                self.proj_feature(projected),
                disparity_up.flatten(0, 1)[:, None],
                confidence_up.flatten(0, 1)[:, None],
            ],
            dim=1,
        )
        refined = self._run(self.refine_unet, refine_in, v)
        raw_gaussians = self.to_gaussians(torch.cat([refined, images.flatten(0, 1), projected], dim=1))
        delta, density_logit = self.to_disparity(refined).unflatten(0, (b, v)).split(gpp, dim=2)
        low, high = (1 / far)[:, :, None, None, None], (1 / near)[:, :, None, None, None]
        disparity = torch.clamp(disparity_up[:, :, None] + delta, min=low, max=high)
        return DepthPrediction(
            depth=1 / disparity,
            density=density_logit.sigmoid(),
            raw_gaussians=raw_gaussians.unflatten(0, (b, v)),
            coarse_disparity=coarse_disparity,
            confidence=confidence,
        )
