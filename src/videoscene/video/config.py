"""Typed configs of the video diffusion backbone: VAE, denoiser, text embedding, noise schedule, conditioning.

Two presets share one code path (docs/method.md §3):

- `tiny`: CPU scale, trained here. 17 pixel frames at 64×96 → 5 latent frames of 8 channels × 16×24
  (4× temporal, 4× spatial: see `TINY_VAE` for why not the paper's 8×).
- `paper`: CogVideoX-5B-I2V (the release's base): 49 frames at 480×720 → 13 latent frames of
  16×60×90; 42 layers, 48 heads × 64, in_channels 32 (16 noisy + 16 condition), text 226 × 4096.

Geometry-dependent constructor arguments of the diffusers classes (the transformer's `in_channels`,
`sample_frames`, `sample_height` …) are derived here from the video size and the VAE, never typed twice.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from videoscene.config_json import check_json_types
from videoscene.errors import VideoSceneError
from videoscene.io_utils import read_json_object, write_json_atomic

NUM_TRAIN_TIMESTEPS = 1000  # T of CogVideoX's DDPM schedule: timesteps 0 … T−1

CONFIG_FORMAT = "videoscene.video/1"


@dataclass(frozen=True)
class VAEConfig:
    """`diffusers.AutoencoderKLCogVideoX`. Spatial compression is 2^(blocks−1); temporal compression 4."""

    block_out_channels: tuple[int, ...] = (128, 256, 256, 512)
    latent_channels: int = 16
    layers_per_block: int = 3
    norm_num_groups: int = 32
    temporal_compression_ratio: int = 4
    # Latents are multiplied by this after encoding so that they have about unit variance (0.7 for
    # CogVideoX-5B; for a VAE trained here it is measured after training as 1/std of the latents).
    scaling_factor: float = 0.7
    # Per-channel latent statistics, measured after training a VAE here. When set, latents are standardised
    # per channel, (z − mean_c)/std_c (as Wan's VAE does), instead of multiplied by `scaling_factor`: a small
    # VAE trained with a tiny KL weight has channels of different offset and spread, and unit-variance
    # channels give every channel the same signal-to-noise ratio under the diffusion schedule.
    latents_mean: tuple[float, ...] | None = None
    latents_std: tuple[float, ...] | None = None
    # Slicing encodes/decodes one batch element at a time; tiling splits frames into overlapping spatial
    # tiles. Both only save memory (paper scale); outputs agree up to tile blending.
    enable_slicing: bool = False
    enable_tiling: bool = False

    @property
    def spatial_compression(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    def architecture(self) -> VAEConfig:
        """The shape-defining fields only: the latent scaling (measured per trained VAE) and the memory
        switches cleared, so that two VAEs of one architecture compare equal."""
        return replace(
            self,
            scaling_factor=0.0,
            latents_mean=None,
            latents_std=None,
            enable_slicing=False,
            enable_tiling=False,
        )

    def diffusers_kwargs(self, height: int, width: int) -> dict[str, Any]:
        blocks = len(self.block_out_channels)
        return dict(
            in_channels=3,
            out_channels=3,
            down_block_types=("CogVideoXDownBlock3D",) * blocks,
            up_block_types=("CogVideoXUpBlock3D",) * blocks,
            block_out_channels=tuple(self.block_out_channels),
            latent_channels=self.latent_channels,
            layers_per_block=self.layers_per_block,
            norm_num_groups=self.norm_num_groups,
            temporal_compression_ratio=self.temporal_compression_ratio,
            # The VAE uses sample size only to choose its default tile size.
            sample_height=height,
            sample_width=width,
            scaling_factor=self.scaling_factor,
        )

    @classmethod
    def from_diffusers(cls, config: dict[str, Any], **overrides) -> VAEConfig:
        """Our view of a loaded VAE's config (a diffusers folder's vae/config.json)."""
        return cls(
            block_out_channels=tuple(config["block_out_channels"]),
            latent_channels=config["latent_channels"],
            layers_per_block=config["layers_per_block"],
            norm_num_groups=config["norm_num_groups"],
            temporal_compression_ratio=int(config["temporal_compression_ratio"]),
            scaling_factor=float(config["scaling_factor"]),
            **overrides,
        )


@dataclass(frozen=True)
class DenoiserConfig:
    """`diffusers.CogVideoXTransformer3DModel` without its geometry (derived in `VideoModelConfig`)."""

    num_layers: int = 42
    num_attention_heads: int = 48
    attention_head_dim: int = 64
    time_embed_dim: int = 512
    patch_size: int = 2
    use_rotary_positional_embeddings: bool = True
    # The learned table locks the resolution to sample_height×sample_width (diffusers): paper only.
    use_learned_positional_embeddings: bool = True
    spatial_interpolation_scale: float = 1.875
    temporal_interpolation_scale: float = 1.0
    gradient_checkpointing: bool = False

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    def architecture(self) -> DenoiserConfig:
        """The shape-defining fields only (gradient checkpointing saves memory and changes no weight)."""
        return replace(self, gradient_checkpointing=False)

    @classmethod
    def from_diffusers(cls, config: dict[str, Any], **overrides) -> DenoiserConfig:
        return cls(
            num_layers=config["num_layers"],
            num_attention_heads=config["num_attention_heads"],
            attention_head_dim=config["attention_head_dim"],
            time_embed_dim=config["time_embed_dim"],
            patch_size=config["patch_size"],
            use_rotary_positional_embeddings=config["use_rotary_positional_embeddings"],
            use_learned_positional_embeddings=config["use_learned_positional_embeddings"],
            spatial_interpolation_scale=config["spatial_interpolation_scale"],
            temporal_interpolation_scale=config["temporal_interpolation_scale"],
            **overrides,
        )


@dataclass(frozen=True)
class TextConfig:
    """The text condition. The paper runs with one fixed prompt, so a single embedding is all that is needed.

    `learned`: a [1, tokens, dim] parameter trained and saved with the weights (tiny).
    `file`: a precomputed prompt embedding ([tokens, dim] or [1, tokens, dim]; .safetensors, or .pt read with
    weights_only=True), given by path at load time (paper: the authors' `prompt_embeds.pt`).
    `t5`: encode `prompt` with a local T5 folder (text_encoder/ + tokenizer/) through `transformers`.
    """

    kind: Literal["learned", "file", "t5"] = "file"
    num_tokens: int = 226
    dim: int = 4096
    prompt: str = ""


@dataclass(frozen=True)
class ScheduleConfig:
    """`diffusers.CogVideoXDDIMScheduler` as configured for CogVideoX-5B (its scheduler_config.json)."""

    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    rescale_betas_zero_snr: bool = True
    prediction_type: str = "v_prediction"
    timestep_spacing: str = "trailing"
    snr_shift_scale: float = 1.0
    clip_sample: bool = False
    set_alpha_to_one: bool = True

    def diffusers_kwargs(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_diffusers(cls, config: dict[str, Any]) -> ScheduleConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in config.items() if key in names})


@dataclass(frozen=True)
class ConditioningConfig:
    """First/last-frame conditioning (as the release): pixel-space noise augmentation ĩ = i + σ·ε with
    log σ ~ N(mean, std²) on images in [−1, 1], one σ per sample shared by its two frames."""

    noise_aug_log_sigma_mean: float = -3.0
    noise_aug_log_sigma_std: float = 0.5
    # The authors sample the VAE posterior (latent_dist.sample()); `False` uses its mean instead.
    sample_posterior: bool = True


@dataclass(frozen=True)
class VideoModelConfig:
    """Everything needed to build the backbone at one operating size (pixel frames × height × width)."""

    name: str
    num_frames: int
    height: int
    width: int
    vae: VAEConfig = field(default_factory=VAEConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    text: TextConfig = field(default_factory=TextConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def from_diffusers(
        cls,
        name: str,
        transformer: dict[str, Any],
        vae: dict[str, Any],
        schedule: ScheduleConfig,
        text_kind: str,
    ) -> VideoModelConfig:
        """Our view of a diffusers CogVideoX I2V folder from its transformer and VAE configs; the operating
        size is the transformer's sample size (49×480×720 for CogVideoX-5b-I2V), memory savers on."""
        vae_config = VAEConfig.from_diffusers(vae, enable_slicing=True, enable_tiling=True)
        return cls(
            name=name,
            num_frames=transformer["sample_frames"],
            height=transformer["sample_height"] * vae_config.spatial_compression,
            width=transformer["sample_width"] * vae_config.spatial_compression,
            vae=vae_config,
            denoiser=DenoiserConfig.from_diffusers(transformer),
            text=TextConfig(
                kind=text_kind,
                num_tokens=transformer["max_text_seq_length"],
                dim=transformer["text_embed_dim"],
            ),
            schedule=schedule,
        )

    # -- derived geometry ------------------------------------------------------------------------------------
    @property
    def latent_frames(self) -> int:
        return (self.num_frames - 1) // self.vae.temporal_compression_ratio + 1

    @property
    def latent_height(self) -> int:
        return self.height // self.vae.spatial_compression

    @property
    def latent_width(self) -> int:
        return self.width // self.vae.spatial_compression

    @property
    def latent_channels(self) -> int:
        return self.vae.latent_channels

    def validate(self) -> None:
        vae, den = self.vae, self.denoiser
        # The VAE decodes L latent frames back to r(L−1)+1 frames (r: its temporal compression) only when
        # that count is odd: F = 2rk+1 (8k+1 for CogVideoX's r = 4).
        step = 2 * vae.temporal_compression_ratio
        if self.num_frames < 1 or (self.num_frames - 1) % step != 0:
            examples = ", ".join(str(step * k + 1) for k in (1, 2, 3))
            raise VideoSceneError(
                f"video config {self.name!r}: num_frames={self.num_frames} must be {step}k+1 ({examples}, "
                "...) so that the CogVideoX VAE decodes back to the same number of frames"
            )
        # Each of the VAE's len(blocks) − 1 downsamplers halves time until the ratio is reached.
        if vae.temporal_compression_ratio > 2 ** (len(vae.block_out_channels) - 1):
            raise VideoSceneError(
                f"video config {self.name!r}: "
                f"temporal_compression_ratio={vae.temporal_compression_ratio} needs at least "
                f"{vae.temporal_compression_ratio.bit_length()} VAE blocks, got {len(vae.block_out_channels)}"
            )
        multiple = vae.spatial_compression * den.patch_size
        if min(self.height, self.width) < 1 or self.height % multiple or self.width % multiple:
            raise VideoSceneError(
                f"video config {self.name!r}: {self.height}x{self.width} must be positive and "
                f"divisible by {multiple} "
                f"(VAE ×{vae.spatial_compression} times patch {den.patch_size})"
            )
        if den.use_rotary_positional_embeddings and den.attention_head_dim % 16:
            raise VideoSceneError(
                f"video config {self.name!r}: attention_head_dim={den.attention_head_dim} must be "
                "divisible by 16 "
                "for 3D RoPE (it splits the head into temporal 1/4 and spatial 3/8 + 3/8)"
            )
        if den.use_learned_positional_embeddings and not den.use_rotary_positional_embeddings:
            raise VideoSceneError(
                f"video config {self.name!r}: learned positional embeddings need rotary ones too"
            )
        if (vae.latents_mean is None) != (vae.latents_std is None) or (
            vae.latents_mean is not None
            and not (
                len(vae.latents_mean) == len(vae.latents_std) == vae.latent_channels
                and min(vae.latents_std) > 0
            )
        ):
            raise VideoSceneError(
                f"video config {self.name!r}: latents_mean and latents_std must both be given (or "
                "neither), with "
                f"{vae.latent_channels} values each and positive stds"
            )
        for channels in vae.block_out_channels:
            if channels % vae.norm_num_groups:
                raise VideoSceneError(
                    f"video config {self.name!r}: VAE width {channels} is not divisible by norm_num_groups="
                    f"{vae.norm_num_groups}"
                )

    def transformer_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of `CogVideoXTransformer3DModel`; in = noisy ‖ condition latents (2C), out =
        C."""
        den = self.denoiser
        return dict(
            num_attention_heads=den.num_attention_heads,
            attention_head_dim=den.attention_head_dim,
            in_channels=2 * self.latent_channels,
            out_channels=self.latent_channels,
            time_embed_dim=den.time_embed_dim,
            text_embed_dim=self.text.dim,
            num_layers=den.num_layers,
            sample_width=self.latent_width,
            sample_height=self.latent_height,
            sample_frames=self.num_frames,  # in pixel frames: diffusers compares (f−1)·4+1 against it
            patch_size=den.patch_size,
            temporal_compression_ratio=self.vae.temporal_compression_ratio,
            max_text_seq_length=self.text.num_tokens,
            spatial_interpolation_scale=den.spatial_interpolation_scale,
            temporal_interpolation_scale=den.temporal_interpolation_scale,
            use_rotary_positional_embeddings=den.use_rotary_positional_embeddings,
            use_learned_positional_embeddings=den.use_learned_positional_embeddings,
        )

    def vae_kwargs(self) -> dict[str, Any]:
        return self.vae.diffusers_kwargs(self.height, self.width)

    def with_size(self, num_frames: int, height: int, width: int) -> VideoModelConfig:
        """The same model at another operating size (not allowed with learned positional embeddings)."""
        return replace(self, num_frames=num_frames, height=height, width=width)

    # -- JSON ------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": CONFIG_FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoModelConfig:
        if not isinstance(data, dict):
            raise VideoSceneError(
                f"video config must be a JSON object, got {type(data).__name__}; compare with "
                "configs/video_tiny.json"
            )
        data = dict(data)
        data.pop("format", None)
        check_json_types(cls, data, "video config")  # the top-level fields; a section must be an object
        sections = {
            "vae": VAEConfig,
            "denoiser": DenoiserConfig,
            "text": TextConfig,
            "schedule": ScheduleConfig,
            "conditioning": ConditioningConfig,
        }
        try:
            kwargs = {}
            for key, value in data.items():
                if key in sections:
                    section = dict(value)
                    check_json_types(sections[key], section, f"video config: {key}")
                    if key == "vae":
                        for name in ("block_out_channels", "latents_mean", "latents_std"):
                            if section.get(name) is not None:
                                section[name] = tuple(section[name])
                    value = sections[key](**section)
                kwargs[key] = value
            return cls(**kwargs)
        except (TypeError, KeyError) as error:
            raise VideoSceneError(
                f"video config is malformed ({error}); compare with configs/video_tiny.json"
            ) from None

    def save_json(self, path: str | os.PathLike) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load_json(cls, path: str | os.PathLike) -> VideoModelConfig:
        path = Path(path)
        if not path.is_file():
            raise VideoSceneError(
                f"video config {path} not found; pass a JSON file such as configs/video_tiny.json"
            )
        return cls.from_dict(read_json_object(path, "video config"))


# Tiny VAE, chosen by measurement at 17×64×96 on 2 CPU cores (benchmarks/bench_video.py --vae-candidates;
# ablation table in docs/results.md): the full-resolution width dominates the cost, so the first block is
# narrow (16) with one layer per block. What decides quality is compression, not latent width: with 2×
# space and 2× time (17 → 9 latent frames, 8 channels) the round trip of held-out ground truth reaches
# 33.9 dB against 28.8 dB for 4× space and 4× time, and the render's round trip costs 0.3 dB instead of 1.7
# (16 or 32 channels at 4×/4× changed nothing): a round trip well below the render's own error leaves the
# one-step student room to improve on the render.
TINY_VAE = VAEConfig(
    block_out_channels=(16, 32),
    latent_channels=8,
    layers_per_block=1,
    norm_num_groups=8,
    temporal_compression_ratio=2,
    scaling_factor=1.0,  # replaced by 1/std of the latents once the VAE is trained
)

# Tiny denoiser: 4 CogVideoX blocks, 4 heads × 32 (head_dim divisible by 16 for 3D RoPE), rotary only
# (learned positions would lock the resolution), 4×4 patches on the 32×48 latents: 9×8×12 = 864 video tokens
# + 8 text tokens.
TINY_DENOISER = DenoiserConfig(
    num_layers=4,
    num_attention_heads=4,
    attention_head_dim=32,
    time_embed_dim=128,
    patch_size=4,
    use_rotary_positional_embeddings=True,
    use_learned_positional_embeddings=False,
    spatial_interpolation_scale=1.0,
    temporal_interpolation_scale=1.0,
)

PRESETS: dict[str, VideoModelConfig] = {
    "tiny": VideoModelConfig(
        name="tiny",
        num_frames=17,
        height=64,
        width=96,
        vae=TINY_VAE,
        denoiser=TINY_DENOISER,
        text=TextConfig(kind="learned", num_tokens=8, dim=32),
    ),
    # CogVideoX-5B-I2V: default VAE widths, scaling factor 0.7, tiling + slicing to fit 49×480×720 decodes.
    "paper": VideoModelConfig(
        name="paper",
        num_frames=49,
        height=480,
        width=720,
        vae=VAEConfig(scaling_factor=0.7, enable_slicing=True, enable_tiling=True),
        denoiser=DenoiserConfig(),
        text=TextConfig(kind="file", num_tokens=226, dim=4096),
    ),
}


def preset(name: str) -> VideoModelConfig:
    """A named preset, or a JSON config file when `name` is a path."""
    if name in PRESETS:
        return PRESETS[name]
    if name.endswith(".json") or os.sep in name:
        return VideoModelConfig.load_json(name)
    raise VideoSceneError(
        f"unknown video preset {name!r}; choose one of {sorted(PRESETS)} or give a JSON config path"
    )
