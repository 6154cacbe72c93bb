"""Every width of the feed-forward Gaussian encoder (MVSplat's cost-volume encoder), in one typed config.

Two presets: `tiny` (trains on a CPU at 64x96..128x192) and `mvsplat` (MVSplat's RealEstate10K
configuration, whose released checkpoint loads strictly). Both run the same code.
Configs round-trip through JSON; unknown keys are an error so a typo never silently falls back to a default.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from videoscene.config_json import check_json_types
from videoscene.errors import VideoSceneError
from videoscene.io_utils import read_json_object, write_json_atomic


@dataclass(frozen=True)
class EncoderConfig:
    # CNN at 1/4 resolution: a stride-2 7x7 stem, then stages at 1/2, 1/4, 1/4 (residual blocks, instance
    # norm).
    cnn_channels: tuple[int, int, int] = (64, 96, 128)
    cnn_blocks_per_stage: int = 2
    d_feature: int = 128
    downscale_factor: int = 4

    # Multi-view transformer: each block = window self-attention, then window cross-view attention + FFN.
    transformer_blocks: int = 6
    transformer_heads: int = 1
    transformer_ffn_expansion: int = 4  # FFN hidden = expansion x (2 d_feature), as in GMFlow/UniMatch
    transformer_attention_splits: int = 2  # the 1/4-res map is cut into splits x splits windows
    transformer_shifted_windows: bool = True  # odd blocks shift windows by half a window (Swin)

    # Plane-sweep cost volume and its U-Net (cross-view attention at the listed downsample factors).
    num_depth_candidates: int = 128
    costvolume_unet_feat_dim: int = 128
    costvolume_unet_channel_mult: tuple[int, ...] = (1, 1, 1)
    costvolume_unet_attn_res: tuple[int, ...] = (4,)

    # Full-resolution depth-refinement U-Net.
    depth_unet_feat_dim: int = 32
    depth_unet_channel_mult: tuple[int, ...] = (1, 1, 1, 1, 1)
    depth_unet_attn_res: tuple[int, ...] = (16,)

    # Shared by both U-Nets.
    unet_res_blocks: int = 1
    unet_attention_head_channels: int = 32

    # Gaussian head. A scale s in [min, max] becomes s · depth · 0.1 (1/fx + 1/fy) (pixel units).
    gaussians_per_pixel: int = 1
    sh_degree: int = 4
    gaussian_scale_min: float = 0.5
    gaussian_scale_max: float = 15.0

    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        positive = {
            "d_feature": self.d_feature,
            "cnn_blocks_per_stage": self.cnn_blocks_per_stage,
            "transformer_heads": self.transformer_heads,
            "transformer_ffn_expansion": self.transformer_ffn_expansion,
            "transformer_attention_splits": self.transformer_attention_splits,
            "num_depth_candidates": self.num_depth_candidates,
            "costvolume_unet_feat_dim": self.costvolume_unet_feat_dim,
            "depth_unet_feat_dim": self.depth_unet_feat_dim,
            "unet_res_blocks": self.unet_res_blocks,
            "unet_attention_head_channels": self.unet_attention_head_channels,
            "gaussians_per_pixel": self.gaussians_per_pixel,
        }
        for name, value in positive.items():
            if value < 1:
                raise VideoSceneError(f"encoder config: {name} must be >= 1, got {value}")
        if len(self.cnn_channels) != 3 or min(self.cnn_channels) < 1:
            raise VideoSceneError(
                f"encoder config: cnn_channels needs 3 positive widths, got {self.cnn_channels}"
            )
        if self.transformer_blocks < 0:
            raise VideoSceneError(
                f"encoder config: transformer_blocks must be >= 0, got {self.transformer_blocks}"
            )
        if self.downscale_factor != 4:
            raise VideoSceneError(
                "encoder config: downscale_factor must be 4 (the CNN's two stride-2 layers), got "
                f"{self.downscale_factor}"
            )
        if self.d_feature % 4 or self.d_feature % self.transformer_heads:
            raise VideoSceneError(
                f"encoder config: d_feature ({self.d_feature}) must be divisible by 4 (sine encoding) "
                "and by transformer_heads"
            )
        if self.num_depth_candidates < 2:
            raise VideoSceneError("encoder config: num_depth_candidates must be >= 2")
        if self.sh_degree < 3:
            raise VideoSceneError(f"encoder config: sh_degree must be >= 3, got {self.sh_degree}")
        if not 0 < self.gaussian_scale_min < self.gaussian_scale_max:
            raise VideoSceneError("encoder config: need 0 < gaussian_scale_min < gaussian_scale_max")
        # Group norm: 8 groups before the cost-volume U-Net, 4 before the depth U-Net, 8 or 4 inside.
        if self.costvolume_unet_feat_dim % 8 or self.depth_unet_feat_dim % 4:
            raise VideoSceneError(
                "encoder config: costvolume_unet_feat_dim must be a multiple of 8 and depth_unet_feat_dim "
                "of 4 (group norm)"
            )
        for name in ("costvolume", "depth"):
            mult = getattr(self, f"{name}_unet_channel_mult")
            width = getattr(self, f"{name}_unet_feat_dim")
            if any((m * width) % self.unet_attention_head_channels for m in mult):
                raise VideoSceneError(
                    f"encoder config: every {name} U-Net width must be a multiple of "
                    f"unet_attention_head_channels ({self.unet_attention_head_channels})"
                )
            levels = {2**i for i in range(len(mult))}
            if not mult or min(mult) < 1:
                raise VideoSceneError(
                    f"encoder config: {name}_unet_channel_mult needs positive entries, got {mult}"
                )
            bad = set(getattr(self, f"{name}_unet_attn_res")) - levels
            if bad:
                raise VideoSceneError(
                    f"encoder config: {name}_unet_attn_res {sorted(bad)} are not U-Net levels "
                    f"{sorted(levels)}"
                )

    @property
    def d_sh(self) -> int:
        return (self.sh_degree + 1) ** 2

    @property
    def size_multiple(self) -> int:
        """Image height and width must be multiples of this: the 1/4-res map must split into transformer
        windows and both U-Nets must halve their inputs without remainder."""
        splits = self.transformer_attention_splits
        costvolume = 2 ** (len(self.costvolume_unet_channel_mult) - 1)
        depth = 2 ** (len(self.depth_unet_channel_mult) - 1)
        return math.lcm(self.downscale_factor * math.lcm(splits, costvolume), depth)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EncoderConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise VideoSceneError(
                f"encoder config has unknown keys {sorted(unknown)}; known keys: {sorted(known)}"
            )
        check_json_types(cls, data, "encoder config")
        # JSON has no tuples; convert lists back so configs compare equal after a round trip.
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> EncoderConfig:
        return cls.from_dict(read_json_object(path, "encoder config"))

    def replace(self, **changes) -> EncoderConfig:
        return replace(self, **changes)


# MVSplat's RealEstate10K encoder; the dataclass defaults are its widths.
MVSPLAT = EncoderConfig()

# CPU preset: 1/4 to 1/2 of MVSplat's widths, one residual block per CNN stage, 2 transformer blocks, 32
# depth candidates, SH degree 3. benchmarks/bench_prior.py times its training steps.
TINY = EncoderConfig(
    cnn_channels=(32, 48, 64),
    cnn_blocks_per_stage=1,
    d_feature=64,
    transformer_blocks=2,
    transformer_heads=1,
    transformer_ffn_expansion=2,
    transformer_attention_splits=2,
    num_depth_candidates=32,
    costvolume_unet_feat_dim=32,
    costvolume_unet_channel_mult=(1, 1),
    costvolume_unet_attn_res=(2,),
    depth_unet_feat_dim=16,
    depth_unet_channel_mult=(1, 1, 1),
    depth_unet_attn_res=(4,),
    unet_attention_head_channels=16,
    sh_degree=3,
)

PRESETS: dict[str, EncoderConfig] = {"tiny": TINY, "mvsplat": MVSPLAT}


def encoder_config(name_or_path: str | Path) -> EncoderConfig:
    """A preset by name (`tiny`, `mvsplat`) or a JSON file."""
    if str(name_or_path) in PRESETS:
        return PRESETS[str(name_or_path)]
    if Path(name_or_path).suffix == ".json" or Path(name_or_path).exists():
        return EncoderConfig.load(name_or_path)
    raise VideoSceneError(
        f"unknown encoder preset {name_or_path!r}; use one of {sorted(PRESETS)} or a JSON file path"
    )
