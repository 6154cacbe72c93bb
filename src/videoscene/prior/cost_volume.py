"""Depth from a plane-sweep cost volume (UPSTREAM.md §1.3 (b)).

1. Sweep D fronto-parallel planes uniform in inverse depth between near and far; at each plane warp the
   other views' transformer features into the reference view and correlate (dot product / sqrt(C)).
2. Refine the cost volume with a U-Net whose attention lets the tokens of all views attend jointly.
3. Softmax over the candidates -> coarse disparity (expectation) and confidence (peak probability) at 1/4 res.
4. Upsample, and refine at full resolution with a second U-Net fed the image, projected features,
   disparity and confidence; it predicts a disparity correction and a density per Gaussian.

Depth is z-depth (along the camera axis) everywhere in this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from videoscene.prior.config import EncoderConfig


def group_norm(channels: int) -> nn.GroupNorm:
    groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class ResBlock(nn.Module):
    """Pre-activation residual block: GN -> SiLU -> conv -> GN -> SiLU -> conv, plus a 1x1 skip if widths
    differ."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.layers = nn.Sequential(
            group_norm(in_channels),
            nn.SiLU(),
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            group_norm(out_channels),
            nn.SiLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor, views: int) -> Tensor:
        return self.skip(x) + self.layers(x)


class CrossViewAttention(nn.Module):
    """Multi-head attention over the tokens of all views of a scene at once (they are concatenated along
    the sequence), so matching evidence flows between views while the cost volume is refined."""

    def __init__(self, channels: int, head_channels: int):
        super().__init__()
        self.heads = max(1, channels // head_channels)
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Float[Tensor, "bv c h w"], views: int) -> Float[Tensor, "bv c h w"]:
        bv, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(bv // views, views, 3, self.heads, c // self.heads, h * w)
        qkv = qkv.permute(2, 0, 3, 1, 5, 4).flatten(3, 4)  # [3, b, heads, views*h*w, head_dim]
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        out = out.unflatten(2, (views, h * w)).permute(0, 2, 1, 4, 3).reshape(bv, c, h, w)
        return x + self.proj(out)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor, views: int) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, views: int) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Stage(nn.ModuleList):
    """A sequence of layers that all take (x, views)."""

    def forward(self, x: Tensor, views: int) -> Tensor:
        for layer in self:
            x = layer(x, views)
        return x


class UNet(nn.Module):
    """LDM-layout U-Net without a timestep: `res_blocks` ResBlocks per level on the way down, `res_blocks + 1`
    on the way up (each eating one skip), cross-view attention at the downsample factors `attention_at`."""

    def __init__(
        self,
        channels: int,
        channel_mult: tuple[int, ...],
        attention_at: tuple[int, ...],
        res_blocks: int,
        head_channels: int,
        checkpointing: bool = False,
    ):
        super().__init__()
        self.checkpointing = checkpointing
        self.input = nn.Conv2d(channels, channels * channel_mult[0], 3, padding=1)
        self.down = nn.ModuleList()
        skips = [channels * channel_mult[0]]
        width = skips[0]
        for level, mult in enumerate(channel_mult):
            for _ in range(res_blocks):
                layers = [ResBlock(width, channels * mult)]
                width = channels * mult
                if 2**level in attention_at:
                    layers.append(CrossViewAttention(width, head_channels))
                self.down.append(Stage(layers))
                skips.append(width)
            if level < len(channel_mult) - 1:
                self.down.append(Stage([Downsample(width)]))
                skips.append(width)
        self.middle = Stage([ResBlock(width, width), ResBlock(width, width)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for block in range(res_blocks + 1):
                layers = [ResBlock(width + skips.pop(), channels * mult)]
                width = channels * mult
                if 2**level in attention_at:
                    layers.append(CrossViewAttention(width, head_channels))
                if level > 0 and block == res_blocks:
                    layers.append(Upsample(width))
                self.up.append(Stage(layers))
        self.output = nn.Sequential(group_norm(width), nn.SiLU(), nn.Conv2d(width, channels, 3, padding=1))

    def _run(self, stage: Stage, x: Tensor, views: int) -> Tensor:
        if self.checkpointing and self.training:
            return checkpoint(stage, x, views, use_reentrant=False)
        return stage(x, views)

    def forward(self, x: Float[Tensor, "bv c h w"], views: int) -> Float[Tensor, "bv c h w"]:
        x = self.input(x)
        skips = [x]
        for stage in self.down:
            x = self._run(stage, x, views)
            skips.append(x)
        x = self._run(self.middle, x, views)
        for stage in self.up:
            x = self._run(stage, torch.cat([x, skips.pop()], dim=1), views)
        return self.output(x)


def inverse_depth_candidates(
    near: Float[Tensor, "b v"], far: Float[Tensor, "b v"], count: int
) -> Float[Tensor, "b v d"]:
    """Disparities 1/far ... 1/near, uniform (index 0 is the far plane)."""
    steps = torch.linspace(0, 1, count, device=near.device, dtype=near.dtype)
    return (1 / far)[..., None] + ((1 / near) - (1 / far))[..., None] * steps


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


def plane_sweep_correlation(
    features: Float[Tensor, "b v c h w"],
    extrinsics: Float[Tensor, "b v 4 4"],
    intrinsics: Float[Tensor, "b v 3 3"],
    disparities: Float[Tensor, "b v d"],
) -> Float[Tensor, "b v d h w"]:
    """Correlation of each view's features with every other view's features warped onto each depth plane,
    averaged over the other views. Points behind the other camera or outside its image score 0."""
    b, v, c, h, w = features.shape
    d = disparities.shape[-1]
    rays = pixel_rays(intrinsics, h, w)  # [b, v, 3, hw]
    correlations = []
    for offset in range(1, v):
        other_extrinsics = extrinsics.roll(-offset, dims=1)
        other_intrinsics = intrinsics.roll(-offset, dims=1)
        other_features = features.roll(-offset, dims=1)
        relative = torch.linalg.inv(other_extrinsics) @ extrinsics  # reference camera -> other camera
        rotated = relative[..., :3, :3] @ rays  # [b, v, 3, hw]
        points = (
            rotated[:, :, :, None, :] / disparities[:, :, None, :, None] + relative[..., :3, 3, None, None]
        )
        projected = other_intrinsics[:, :, None] @ points.transpose(2, 3)  # [b, v, d, 3, hw]
        z = projected[..., 2:3, :]
        in_front = z > 1e-3
        uv = projected[..., :2, :] / z.clamp(min=1e-3)
        grid = (2 * uv - 1).permute(0, 1, 2, 4, 3).reshape(b * v, d * h, w, 2)
        warped = F.grid_sample(
            other_features.flatten(0, 1), grid, mode="bilinear", padding_mode="zeros", align_corners=False
        ).reshape(b, v, c, d, h * w)
        correlation = (features.flatten(-2)[:, :, :, None] * warped).sum(2) / c**0.5  # [b, v, d, hw]
        correlations.append(correlation * in_front[..., 0, :])
    return torch.stack(correlations).mean(0).reshape(b, v, d, h, w)


@dataclass
class DepthPrediction:
    depth: Float[Tensor, "b v gpp h w"]  # z-depth, within [near, far]
    density: Float[Tensor, "b v gpp h w"]  # in (0, 1)
    refined_features: Float[Tensor, "bv c_refine h w"]  # full-resolution features for the Gaussian head
    projected_features: Float[Tensor, "bv c h w"]
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

        # Cost-volume refinement: U-Net branch plus a 1x1 residual branch, both on [correlation, features].
        self.cost_in = nn.Sequential(
            nn.Conv2d(d + c, cost_width, 3, padding=1), group_norm(cost_width), nn.GELU()
        )
        self.cost_unet = UNet(
            cost_width, config.costvolume_unet_channel_mult, config.costvolume_unet_attn_res, **unet
        )
        self.cost_out = nn.Conv2d(cost_width, d, 3, padding=1)
        self.cost_residual = nn.Conv2d(d + c, d, 1)
        self.candidate_logits = nn.Sequential(
            nn.Conv2d(d, 2 * d, 3, padding=1), nn.GELU(), nn.Conv2d(2 * d, d, 3, padding=1)
        )

        # Full-resolution refinement.
        fullres = config.fullres_feature_dim
        self.project = nn.Conv2d(2 * c, fullres, 3, padding=1)
        self.project_small = nn.Conv2d(fullres, depth_width, 3, padding=1)
        self.refine_in = nn.Sequential(
            nn.Conv2d(3 + depth_width + 2, depth_width, 3, padding=1), group_norm(depth_width), nn.GELU()
        )
        self.refine_unet = UNet(
            depth_width, config.depth_unet_channel_mult, config.depth_unet_attn_res, **unet
        )
        self.to_disparity = nn.Sequential(
            nn.Conv2d(depth_width, 2 * depth_width, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(2 * depth_width, 2 * config.gaussians_per_pixel, 3, padding=1),
        )

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
        b, v, _, height, width = images.shape
        gpp = self.gaussians_per_pixel

        # 1. Plane sweep.
        candidates = inverse_depth_candidates(near, far, self.num_candidates)
        correlation = plane_sweep_correlation(trans_features, extrinsics, intrinsics, candidates)

        # 2. Refine the cost volume (views attend to each other inside the U-Net).
        volume_in = torch.cat([correlation, trans_features], dim=2).flatten(0, 1)
        volume = self.cost_out(self.cost_unet(self.cost_in(volume_in), v)) + self.cost_residual(volume_in)

        # 3. Coarse disparity as the expectation over candidates; confidence = peak probability.
        pdf = self.candidate_logits(volume).softmax(dim=1).unflatten(0, (b, v))  # [b, v, d, h4, w4]
        coarse_disparity = (pdf * candidates[..., None, None]).sum(2)
        confidence = pdf.amax(2)

        # 4. Full-resolution refinement.
        disparity_up = F.interpolate(
            coarse_disparity, scale_factor=self.downscale, mode="bilinear", align_corners=False
        )
        confidence_up = F.interpolate(confidence, scale_factor=self.downscale, mode="nearest")
        projected = F.gelu(
            F.interpolate(
                self.project(torch.cat([trans_features, cnn_features], dim=2).flatten(0, 1)),
                scale_factor=self.downscale,
                mode="bilinear",
                align_corners=False,
            )
        )
        low, high = (1 / far)[..., None, None], (1 / near)[..., None, None]
        # The network sees disparity normalised to [0, 1] over the scene's range, so it is scale-free.
        disparity_unit = (disparity_up - low) / (high - low)
        refine_in = torch.cat(
            [
                images.flatten(0, 1),
                self.project_small(projected),
                disparity_unit.flatten(0, 1)[:, None],
                confidence_up.flatten(0, 1)[:, None],
            ],
            dim=1,
        )
        refined = self.refine_unet(self.refine_in(refine_in), v)
        delta, density_logit = (
            self.to_disparity(refined).unflatten(0, (b, v)).unflatten(2, (2, gpp)).unbind(2)
        )

        # Correction in normalised-disparity units, then clamp to the [near, far] range.
        disparity_unit = (disparity_unit[:, :, None] + delta).clamp(0, 1)
        disparity = low[:, :, None] + (high - low)[:, :, None] * disparity_unit
        return DepthPrediction(
            depth=1 / disparity,
            density=density_logit.sigmoid(),
            refined_features=refined,
            projected_features=projected,
            coarse_disparity=coarse_disparity,
            confidence=confidence,
        )
