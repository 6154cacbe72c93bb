"""The video diffusion backbone: diffusers' CogVideoX VAE + transformer + one fixed text condition.

Layouts (docs/conventions.md): videos are [B, F, 3, H, W] in [0, 1] in every public method; latents are
[B, f, C, h, w] (the transformer's layout), already multiplied by the VAE scaling factor (or standardised per
channel: `normalize_latents`). The VAE alone
takes [B, C, F, H, W] in [−1, 1]; `encode_pixels` and `decode_latents` are the only places that convert.

Weights come from either
- our own folder (`save_pretrained`): video_model.json + vae/transformer/prompt_embedding .safetensors,
- a diffusers CogVideoX folder (vae/, transformer/, scheduler/), e.g. CogVideoX-5b-I2V or a first/last-frame
  interpolation fine-tune, with the prompt embedding from a file or a local T5 folder, or
- a linked folder (`save_linked`): base_model.json naming such a diffusers folder, the prompt embedding, and
  optionally transformer weights loaded non-strictly over the base transformer (how the authors' distilled
  `model.safetensors` is applied), so that a 5B base is referenced rather than copied.
Nothing is downloaded.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from jaxtyping import Float, Int
from safetensors.torch import save_file
from torch import Tensor, nn

from videoscene.errors import LoadError, VideoSceneError
from videoscene.io_utils import (
    inside,
    load_safetensors,
    load_state,
    read_json_object,
    staged_output_dir,
    write_json_atomic,
)
from videoscene.video.config import (
    ScheduleConfig,
    TextConfig,
    VideoModelConfig,
)
from videoscene.video.cpu_conv3d import use_onednn_conv3d

logger = logging.getLogger(__name__)

CONFIG_NAME = "video_model.json"
LINK_NAME = "base_model.json"  # a linked folder: {"base", "prompt_embedding", "transformer"}
COMPONENT_FILES = {
    "vae": "vae.safetensors",
    "transformer": "transformer.safetensors",
    "prompt_embedding": "prompt_embedding.safetensors",
}


class PromptEmbedding(nn.Module):
    """The one text condition the model sees: [1, tokens, dim], learned (tiny) or fixed (paper's prompt)."""

    def __init__(self, value: Float[Tensor, "1 tokens dim"], learned: bool):
        super().__init__()
        if learned:
            self.value = nn.Parameter(value)
        else:
            self.register_buffer("value", value)

    @classmethod
    def initial(cls, config: TextConfig) -> PromptEmbedding:
        # Small random init (not zeros) so the learned prompt differs from the null prompt used for CFG.
        return cls(0.02 * torch.randn(1, config.num_tokens, config.dim), learned=True)

    def forward(self, batch_size: int) -> Float[Tensor, "batch tokens dim"]:
        return self.value.expand(batch_size, -1, -1)

    def null(self, batch_size: int) -> Float[Tensor, "batch tokens dim"]:
        """The unconditional text for classifier-free guidance: all-zero tokens."""
        return torch.zeros_like(self.value).expand(batch_size, -1, -1)


def load_prompt_embedding_file(path: str | os.PathLike) -> Float[Tensor, "1 tokens dim"]:
    """A precomputed prompt embedding: .safetensors (one tensor, or key 'prompt_embeds') or .pt/.pth
    (a tensor or a dict of one tensor, read with weights_only=True so no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise VideoSceneError(
            f"prompt embedding file {path} not found; pass the precomputed T5 embedding (e.g. "
            "prompt_embeds.pt)"
        )
    if path.suffix == ".safetensors":
        tensors = load_safetensors(path, "prompt embedding")
    else:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several types for corrupt or pickled-code files
            raise VideoSceneError(
                f"cannot read prompt embedding {path} as a tensor file ({type(error).__name__})"
            ) from None
        tensors = loaded if isinstance(loaded, dict) else {"prompt_embeds": loaded}
    value = tensors.get("prompt_embeds", next(iter(tensors.values())) if len(tensors) == 1 else None)
    if not isinstance(value, Tensor) or value.ndim not in (2, 3) or (value.ndim == 3 and value.shape[0] != 1):
        raise VideoSceneError(
            f"prompt embedding {path} must hold one [tokens, dim] or [1, tokens, dim] tensor"
        )
    return value.reshape(1, *value.shape[-2:]).float()


def encode_prompt_with_t5(
    folder: str | os.PathLike, prompt: str, num_tokens: int
) -> Float[Tensor, "1 tokens dim"]:
    """Encode `prompt` with a local T5 (folder with text_encoder/ and tokenizer/), padded to `num_tokens` as
    CogVideoX does. Needs the optional `transformers` package; nothing is downloaded."""
    folder = Path(folder)
    if not (folder / "text_encoder").is_dir() or not (folder / "tokenizer").is_dir():
        raise VideoSceneError(
            f"{folder} has no text_encoder/ and tokenizer/ subfolders; pass a prompt embedding file instead"
        )
    try:
        from transformers import AutoTokenizer, T5EncoderModel
    except ImportError:
        raise VideoSceneError(
            "encoding a prompt with T5 needs `pip install transformers sentencepiece`, or pass a "
            "prompt embedding file"
        ) from None
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
    encoder = T5EncoderModel.from_pretrained(folder / "text_encoder", local_files_only=True).eval()
    tokens = tokenizer(
        prompt, padding="max_length", max_length=num_tokens, truncation=True, return_tensors="pt"
    )
    with torch.no_grad():
        return encoder(tokens.input_ids).last_hidden_state.float()


def match_transformer_weights(
    own: dict[str, Tensor], state: dict[str, Tensor], path: str | os.PathLike
) -> tuple[list[str], list[str], list[str]]:
    """(common, missing, unexpected) names of `state` against a transformer's state dict `own` (meta tensors
    will do). No common name at all, or a common name of another shape, is one line naming the file."""
    common = [key for key in state if key in own]
    if not common:
        raise LoadError(
            f"transformer weights {path} share no tensor name with this CogVideoX transformer (e.g. "
            f"{next(iter(state), 'none')!r}); give the distilled transformer's state dict"
        )
    reshaped = [key for key in common if tuple(state[key].shape) != tuple(own[key].shape)]
    if reshaped:
        key = reshaped[0]
        raise LoadError(
            f"transformer weights {path} hold {len(reshaped)} tensors of other shapes (e.g. {key}: "
            f"{tuple(state[key].shape)}, the transformer has {tuple(own[key].shape)}); give the weights made "
            "for this base model"
        )
    return common, sorted(set(own) - set(common)), sorted(set(state) - set(own))


def load_transformer_weights(
    transformer: nn.Module, state: dict[str, Tensor], path: str | os.PathLike
) -> None:
    """Load `state` over `transformer` non-strictly, as the authors apply their distilled `model.safetensors`
    over the base pipeline's transformer: names the transformer lacks are ignored, and its tensors that
    `state` lacks keep their base values."""
    common, _, _ = match_transformer_weights(transformer.state_dict(), state, path)
    dtype = next(transformer.parameters()).dtype
    transformer.load_state_dict({key: state[key].to(dtype) for key in common}, strict=False)


# Spatial VAE tiles, in latents: CogVideoX-5B's at 480×720 (diffusers derives them from the VAE's sample size:
# half of it, 240×360 pixels = 30×45 latents, overlapping by 1/6 and 1/5). diffusers steps through the video
# by int(tile_pixels·(1 − overlap)) pixels but keeps tile_latents − int(tile_latents·overlap) latents of each
# tile, so the stitched latent has the right size only when the two strides agree: they do for 30×45, but not
# for tiles derived from another sample size (a model built at 240×368 tiled by 120×184 pixels, stepping 100
# pixels while keeping 13 latents = 104 pixels, and encoded 240×368 to 31×47 latents instead of 30×46).
# So the tiles are set here, the same for every operating size.
VAE_TILE_LATENTS = (30, 45)
VAE_TILE_OVERLAP = (1 / 6, 1 / 5)


def set_vae_tiles(
    vae: AutoencoderKLCogVideoX,
    tile_latents: tuple[int, int] = VAE_TILE_LATENTS,
    overlap: tuple[float, float] = VAE_TILE_OVERLAP,
) -> None:
    """Give `vae` spatial tiles of `tile_latents` (height, width) latents overlapping by `overlap`, checked to
    stitch back to whole latents in diffusers' tiled encode and decode. Leaves tiling on or off as it was."""
    compression = 2 ** (len(vae.config.block_out_channels) - 1)
    for tile, factor in zip(tile_latents, overlap):
        pixels = tile * compression
        # diffusers' arithmetic: encode steps int(pixels·(1−f)) pixels and keeps tile − int(tile·f) latents;
        # decode steps int(tile·(1−f)) latents and keeps pixels − int(pixels·f) pixels.
        encode_step = int(pixels * (1 - factor)) == compression * (tile - int(tile * factor))
        decode_step = compression * int(tile * (1 - factor)) == pixels - int(pixels * factor)
        if not (encode_step and decode_step and 0 < int(tile * factor) < tile):
            raise VideoSceneError(
                f"VAE tiles of {tile} latents overlapping by {factor:.4g} do not stitch back to whole "
                "latents; choose an overlap of a whole number of latents"
            )
    tiling = vae.use_tiling
    vae.enable_tiling(
        tile_sample_min_height=tile_latents[0] * compression,
        tile_sample_min_width=tile_latents[1] * compression,
        tile_overlap_factor_height=overlap[0],
        tile_overlap_factor_width=overlap[1],
    )
    vae.use_tiling = tiling


def rope_crop_region(
    grid_height: int, grid_width: int, base_height: int, base_width: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Where a token grid sits inside the base grid the model was trained on, as CogVideoX 1.0 pipelines place
    it: fit the grid's aspect ratio inside the base box, centred. (diffusers keeps this helper in pipeline
    modules that import `transformers`, which we do not require, so it is restated here.)"""
    if grid_height / grid_width > base_height / base_width:
        height, width = base_height, int(round(base_height / grid_height * grid_width))
    else:
        width, height = base_width, int(round(base_width / grid_width * grid_height))
    top, left = int(round((base_height - height) / 2.0)), int(round((base_width - width) / 2.0))
    return (top, left), (top + height, left + width)


class VideoBackbone(nn.Module):
    """CogVideoX VAE + transformer (first/last-frame I2V layout: in_channels = 2 × latent channels) +
    prompt."""

    def __init__(
        self,
        config: VideoModelConfig,
        vae: AutoencoderKLCogVideoX,
        transformer: CogVideoXTransformer3DModel,
        prompt_embedding: PromptEmbedding,
    ):
        super().__init__()
        if transformer.config.in_channels != 2 * vae.config.latent_channels:
            raise VideoSceneError(
                f"transformer in_channels={transformer.config.in_channels} is not 2 × VAE latent channels "
                f"({vae.config.latent_channels}); use an image-to-video model such as CogVideoX-5b-I2V"
            )
        self.config = config
        self.vae = vae
        self.transformer = transformer
        self.prompt_embedding = prompt_embedding
        if config.vae.enable_slicing:
            vae.enable_slicing()
        set_vae_tiles(vae)
        vae.use_tiling = config.vae.enable_tiling
        if config.denoiser.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
        use_onednn_conv3d(vae)  # 8x faster single-clip VAE passes on CPU (see cpu_conv3d.py)
        self._rotary_cache: dict[tuple, tuple[Tensor, Tensor]] = {}

    # -- construction ----------------------------------------------------------------------------------------
    @classmethod
    def build(cls, config: VideoModelConfig, prompt_embeds: Tensor | None = None) -> VideoBackbone:
        """Randomly initialised components (tiny training; random-weight benchmarks; meta-device checks).
        Seed with torch.manual_seed beforehand; build under `torch.device('meta')` to allocate nothing."""
        vae = AutoencoderKLCogVideoX(**config.vae_kwargs())
        transformer = CogVideoXTransformer3DModel(**config.transformer_kwargs())
        if config.text.kind == "learned":
            prompt = PromptEmbedding.initial(config.text)
        elif prompt_embeds is None:
            raise VideoSceneError(
                f"text kind {config.text.kind!r} needs a prompt embedding; pass prompt_embeds"
            )
        else:
            prompt = PromptEmbedding(
                prompt_embeds.reshape(1, config.text.num_tokens, config.text.dim), learned=False
            )
        return cls(config, vae, transformer, prompt)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        prompt_embeds_path: str | os.PathLike | None = None,
        torch_dtype: torch.dtype = torch.float32,
    ) -> VideoBackbone:
        """Load our own folder (video_model.json) or a diffusers CogVideoX I2V folder (vae/, transformer/,
        scheduler/). For a diffusers folder the prompt comes from `prompt_embeds_path`, else from the folder's
        text_encoder/ + tokenizer/ (T5, encoding an empty prompt)."""
        path = Path(path)
        if (path / CONFIG_NAME).is_file():
            return cls._load_own(path, torch_dtype)
        if (path / LINK_NAME).is_file():
            return cls._load_linked(path, torch_dtype)
        if (path / "vae").is_dir() and (path / "transformer").is_dir():
            return cls._load_diffusers(path, prompt_embeds_path, torch_dtype)
        raise VideoSceneError(
            f"{path} is not a model folder: expected a diffusers CogVideoX I2V folder with vae/, "
            "transformer/ and "
            f"scheduler/ (e.g. CogVideoX-5b-I2V), or a VideoScene folder with {CONFIG_NAME} or {LINK_NAME}"
        )

    @classmethod
    def _load_own(cls, path: Path, torch_dtype: torch.dtype) -> VideoBackbone:
        config = VideoModelConfig.load_json(path / CONFIG_NAME)
        for name in COMPONENT_FILES.values():
            if not (path / name).is_file():
                raise VideoSceneError(
                    f"checkpoint {path} lacks {name}; it was not written by save_pretrained"
                )
        # Build without allocating, then adopt the stored tensors.
        with init_empty_weights():
            placeholder = torch.zeros(1, config.text.num_tokens, config.text.dim)
            model = cls.build(config, prompt_embeds=placeholder)
        for attribute, name in COMPONENT_FILES.items():
            state = load_safetensors(path / name, f"{attribute} weights")
            load_state(
                getattr(model, attribute),
                state,
                path / name,
                f"{attribute} weights",
                strict=True,
                assign=True,
            )
        return model.to(torch_dtype)

    @classmethod
    def _load_linked(cls, path: Path, torch_dtype: torch.dtype) -> VideoBackbone:
        link = read_json_object(path / LINK_NAME, "linked model file")
        base = link.get("base")
        prompt = link.get("prompt_embedding")
        transformer = link.get("transformer")
        if (
            not isinstance(base, str)
            or not isinstance(prompt, str)
            or not isinstance(transformer, str | None)
        ):
            raise VideoSceneError(
                f"{path / LINK_NAME} must hold 'base' (a folder) and 'prompt_embedding' (a file name), and "
                "optionally 'transformer' (a file name)"
            )
        base_path = path / base  # relative to the linked folder; an absolute path stays as it is
        if not ((base_path / "vae").is_dir() and (base_path / "transformer").is_dir()):
            raise VideoSceneError(
                f"{path / LINK_NAME} links the base model {base_path}, which is not a diffusers CogVideoX "
                "I2V folder (vae/, transformer/); move it back or re-run `videoscene weights import-official`"
            )
        model = cls._load_diffusers(base_path, inside(path, prompt, "prompt embedding"), torch_dtype)
        if transformer is not None:
            weights = inside(path, transformer, "transformer weights")
            load_transformer_weights(
                model.transformer, load_safetensors(weights, "transformer weights"), weights
            )
        return model

    @staticmethod
    def save_linked(
        path: str | os.PathLike,
        base: str | os.PathLike,
        prompt_embeds: Float[Tensor, "1 tokens dim"],
        transformer_state: dict[str, Tensor] | None = None,
        overwrite: bool = False,
    ) -> None:
        """Write a linked folder, atomically: base_model.json naming the diffusers folder `base` (stored as an
        absolute path), the prompt embedding, and `transformer_state` (loaded non-strictly over the base
        transformer when the folder is opened) if given."""
        link: dict[str, str | None] = {
            "base": str(Path(base).resolve()),
            "prompt_embedding": COMPONENT_FILES["prompt_embedding"],
            "transformer": None,
        }
        with staged_output_dir(path, overwrite=overwrite) as stage:
            prompt = {"prompt_embeds": prompt_embeds.detach().float().cpu().contiguous()}
            save_file(prompt, stage / COMPONENT_FILES["prompt_embedding"])
            if transformer_state is not None:
                state = {key: value.detach().contiguous().cpu() for key, value in transformer_state.items()}
                save_file(state, stage / COMPONENT_FILES["transformer"])
                link["transformer"] = COMPONENT_FILES["transformer"]
            write_json_atomic(stage / LINK_NAME, link)

    @classmethod
    def _load_diffusers(cls, path: Path, prompt_embeds_path, torch_dtype: torch.dtype) -> VideoBackbone:
        vae = AutoencoderKLCogVideoX.from_pretrained(
            path / "vae", torch_dtype=torch_dtype, local_files_only=True
        )
        transformer = CogVideoXTransformer3DModel.from_pretrained(
            path / "transformer", torch_dtype=torch_dtype, local_files_only=True
        )
        scheduler_file = path / "scheduler" / "scheduler_config.json"
        schedule = (
            ScheduleConfig.from_diffusers(read_json_object(scheduler_file, "scheduler config"))
            if scheduler_file.is_file()
            else ScheduleConfig()
        )
        config = VideoModelConfig.from_diffusers(
            path.name, transformer.config, vae.config, schedule, "file" if prompt_embeds_path else "t5"
        )
        text = config.text
        if prompt_embeds_path:
            value = load_prompt_embedding_file(prompt_embeds_path)
        else:
            value = encode_prompt_with_t5(path, text.prompt, text.num_tokens)
        if value.shape[1:] != (text.num_tokens, text.dim):
            raise VideoSceneError(
                f"prompt embedding has shape {tuple(value.shape[1:])}, the transformer expects "
                f"({text.num_tokens}, {text.dim})"
            )
        prompt = PromptEmbedding(value.to(torch_dtype), learned=False)
        logger.info(
            "loaded %s: %d-layer transformer, %s VAE, prompt from %s",
            path,
            config.denoiser.num_layers,
            "-".join(map(str, config.vae.block_out_channels)),
            prompt_embeds_path or "T5",
        )
        return cls(config, vae, transformer, prompt)

    def save_pretrained(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        """Write video_model.json and one safetensors file per component, atomically (all or nothing)."""
        with staged_output_dir(path, overwrite=overwrite) as stage:
            self.config.save_json(stage / CONFIG_NAME)
            for attribute, name in COMPONENT_FILES.items():
                state = {
                    key: value.detach().contiguous().cpu()
                    for key, value in getattr(self, attribute).state_dict().items()
                }
                save_file(state, stage / name)

    # -- properties ------------------------------------------------------------------------------------------
    @property
    def scaling_factor(self) -> float:
        return self.config.vae.scaling_factor

    def set_latent_statistics(self, mean: list[float], std: list[float]) -> None:
        """Standardise latents per channel from now on (see VAEConfig.latents_mean)."""
        vae = replace(
            self.config.vae, latents_mean=tuple(map(float, mean)), latents_std=tuple(map(float, std))
        )
        self.config = replace(self.config, vae=vae)  # validates lengths and signs

    def normalize_latents(
        self, z: Float[Tensor, "batch latent_frames channels latent_height latent_width"]
    ) -> Float[Tensor, "batch latent_frames channels latent_height latent_width"]:
        """Raw VAE latents → the diffusion model's latents: (z − mean_c)/std_c, or z·scaling_factor."""
        vae = self.config.vae
        if vae.latents_mean is None:
            return z * self.scaling_factor
        mean = torch.tensor(vae.latents_mean, dtype=z.dtype, device=z.device).reshape(1, 1, -1, 1, 1)
        std = torch.tensor(vae.latents_std, dtype=z.dtype, device=z.device).reshape(1, 1, -1, 1, 1)
        return (z - mean) / std

    def denormalize_latents(
        self, latents: Float[Tensor, "batch latent_frames channels latent_height latent_width"]
    ) -> Float[Tensor, "batch latent_frames channels latent_height latent_width"]:
        """The inverse of `normalize_latents`."""
        vae = self.config.vae
        if vae.latents_mean is None:
            return latents / self.scaling_factor
        mean = torch.tensor(vae.latents_mean, dtype=latents.dtype, device=latents.device).reshape(
            1, 1, -1, 1, 1
        )
        std = torch.tensor(vae.latents_std, dtype=latents.dtype, device=latents.device).reshape(
            1, 1, -1, 1, 1
        )
        return latents * std + mean

    def set_scaling_factor(self, value: float) -> None:
        """Set the latent scale (after training the VAE: 1/std of its latents) in our config and the VAE's."""
        self.config = replace(self.config, vae=replace(self.config.vae, scaling_factor=float(value)))
        self.vae.register_to_config(scaling_factor=float(value))

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    def check_video_size(self, height: int, width: int) -> None:
        """Refuse, in one line naming the nearest valid sizes, a video whose latent the transformer cannot
        cut into patches: both sides must be multiples of the VAE's compression times the patch size."""
        compression = self.config.vae.spatial_compression
        patch = self.transformer.config.patch_size
        multiple = compression * patch
        if height % multiple or width % multiple or min(height, width) < multiple:
            below = f"{max(height // multiple, 1) * multiple}x{max(width // multiple, 1) * multiple}"
            above = f"{-(-height // multiple) * multiple}x{-(-width // multiple) * multiple}"
            nearest = below if below == above else f"{below} or {above}"
            raise VideoSceneError(
                f"video size {height}x{width} does not suit this model: height and width must be divisible "
                f"by {multiple} (VAE ×{compression} times patch {patch}), e.g. {nearest}"
            )

    @contextmanager
    def vae_tiling(self, enabled: bool | None) -> Iterator[None]:
        """Within the block, encode and decode in overlapping spatial tiles (True: less memory) or whole
        frames (False: what the CogVideoX pipelines do by default); None keeps the configured setting."""
        before = self.vae.use_tiling
        if enabled is not None:
            self.vae.use_tiling = enabled
        try:
            yield
        finally:
            self.vae.use_tiling = before

    # -- VAE -------------------------------------------------------------------------------------------------
    def encode_video(
        self,
        video: Float[Tensor, "batch frames 3 height width"],
        generator: torch.Generator | None = None,
        sample_posterior: bool = True,
    ) -> Float[Tensor, "batch latent_frames channels latent_height latent_width"]:
        """Video in [0, 1] → scaled latents. F = 1 or 2rk+1 frames for temporal compression r (8k+1 for
        CogVideoX; docs/conventions.md)."""
        return self.encode_pixels(video * 2 - 1, generator=generator, sample_posterior=sample_posterior)

    def encode_pixels(
        self,
        pixels: Float[Tensor, "batch frames 3 height width"],
        generator: torch.Generator | None = None,
        sample_posterior: bool = True,
    ) -> Float[Tensor, "batch latent_frames channels latent_height latent_width"]:
        """Like `encode_video` for pixels already in [−1, 1] (noise-augmented condition frames)."""
        if pixels.ndim != 5 or pixels.shape[2] != 3:
            raise VideoSceneError(
                f"video must be [batch, frames, 3, height, width], got {tuple(pixels.shape)}"
            )
        frames, height, width = pixels.shape[1], pixels.shape[3], pixels.shape[4]
        step = 2 * self.config.vae.temporal_compression_ratio
        if frames != 1 and (frames - 1) % step:
            raise VideoSceneError(
                f"video has {frames} frames; the VAE needs 1 or {step}k+1 ({step + 1}, {2 * step + 1}, ...) "
                "to decode back to it"
            )
        self.check_video_size(height, width)
        vae_input = pixels.to(self.vae.dtype).permute(0, 2, 1, 3, 4)  # [B, F, 3, H, W] → [B, 3, F, H, W]
        posterior = self.vae.encode(vae_input).latent_dist
        latents = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        return self.normalize_latents(latents.permute(0, 2, 1, 3, 4).float())

    def decode_latents(
        self, latents: Float[Tensor, "batch latent_frames channels latent_height latent_width"]
    ) -> Float[Tensor, "batch frames 3 height width"]:
        """Scaled latents → video in [0, 1] with r(f−1)+1 frames (r: the temporal compression)."""
        vae_input = self.denormalize_latents(latents.float()).to(self.vae.dtype).permute(0, 2, 1, 3, 4)
        pixels = self.vae.decode(vae_input).sample.permute(0, 2, 1, 3, 4)
        return ((pixels.float() + 1) / 2).clamp(0, 1)

    # -- denoiser --------------------------------------------------------------------------------------------
    def rotary_embedding(
        self, latent_frames: int, latent_height: int, latent_width: int
    ) -> tuple[Tensor, Tensor]:
        """3D RoPE (cos, sin) for the video tokens, [f·(h/p)·(w/p), head_dim], as diffusers' CogVideoX 1.0
        image-to-video pipeline computes it: the token grid placed inside the trained base grid."""
        device = self.device
        key = (latent_frames, latent_height, latent_width, str(device))
        if key not in self._rotary_cache:
            tconf = self.transformer.config
            patch = tconf.patch_size
            grid = (latent_height // patch, latent_width // patch)
            crops = rope_crop_region(*grid, tconf.sample_height // patch, tconf.sample_width // patch)
            self._rotary_cache[key] = get_3d_rotary_pos_embed(
                embed_dim=tconf.attention_head_dim,
                crops_coords=crops,
                grid_size=grid,
                temporal_size=latent_frames,
                device=device,
            )
        return self._rotary_cache[key]

    def predict_v(
        self,
        noisy_latents: Float[Tensor, "batch latent_frames channels latent_height latent_width"],
        condition_latents: Float[Tensor, "batch latent_frames channels latent_height latent_width"],
        timestep: Int[Tensor, " batch"] | int,
        prompt_embeds: Float[Tensor, "batch tokens dim"] | None = None,
    ) -> Float[Tensor, "batch latent_frames channels latent_height latent_width"]:
        """v̂_θ(x_t, t, c): the transformer on [x_t ‖ condition] (channel concat, as the release)."""
        if noisy_latents.shape != condition_latents.shape:
            raise VideoSceneError(
                f"noisy latents {tuple(noisy_latents.shape)} and condition latents "
                f"{tuple(condition_latents.shape)} differ"
            )
        batch, frames, channels, height, width = noisy_latents.shape
        tconf = self.transformer.config
        if 2 * channels != tconf.in_channels:
            raise VideoSceneError(
                f"latents have {channels} channels, the transformer expects {tconf.in_channels // 2}"
            )
        if height % tconf.patch_size or width % tconf.patch_size:
            raise VideoSceneError(
                f"latent size {height}x{width} must be divisible by the patch size {tconf.patch_size}"
            )
        if tconf.use_learned_positional_embeddings and (
            (height, width) != (tconf.sample_height, tconf.sample_width)
            or (frames - 1) * 4 + 1 != tconf.sample_frames
        ):
            raise VideoSceneError(
                f"this transformer has learned positions for {tconf.sample_frames} frames at latent "
                f"{tconf.sample_height}x{tconf.sample_width}; got {frames} latent frames at {height}x{width}"
            )
        dtype = self.transformer.dtype
        hidden_states = torch.cat([noisy_latents, condition_latents], dim=2).to(dtype)
        if prompt_embeds is None:
            prompt_embeds = self.prompt_embedding(batch)
        timestep = torch.as_tensor(timestep, device=hidden_states.device).reshape(-1).expand(batch)
        rotary = (
            self.rotary_embedding(frames, height, width) if tconf.use_rotary_positional_embeddings else None
        )
        v = self.transformer(
            hidden_states=hidden_states,
            encoder_hidden_states=prompt_embeds.to(dtype),
            timestep=timestep,
            image_rotary_emb=rotary,
            return_dict=False,
        )[0]
        return v.float()


# -- what the video trainers (teacher, distillation) train ---------------------------------------------------
# [PN]: "only attention layers": the self-attention projections of every CogVideoX block.
ATTENTION_PARAMETERS = re.compile(r"^transformer_blocks\.\d+\.attn1\.(to_q|to_k|to_v|to_out\.0)\.")


def trainable_parameter_names(transformer: nn.Module, subset: str) -> list[str]:
    """Names of the transformer parameters a run trains: "all", or "attention" (the paper's fine-tuning
    subset)."""
    names = [name for name, _ in transformer.named_parameters()]
    if subset == "all":
        return names
    if subset == "attention":
        selected = [name for name in names if ATTENTION_PARAMETERS.match(name)]
        if not selected:
            raise VideoSceneError(
                "no attn1 to_q/to_k/to_v/to_out parameters found in the transformer; use trainable 'all'"
            )
        return selected
    raise VideoSceneError(f"unknown trainable subset {subset!r}; choose 'attention' or 'all'")


class VelocityModel(nn.Module):
    """forward = `VideoBackbone.predict_v`: the module accelerate prepares, so that DDP's hooks see the
    calls."""

    def __init__(self, backbone: VideoBackbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, noisy: Tensor, condition: Tensor, timesteps: Tensor) -> Tensor:
        return self.backbone.predict_v(noisy, condition, timesteps)
