"""`videoscene train vae`: train the tiny CogVideoX VAE (`diffusers.AutoencoderKLCogVideoX`) from scratch, or
fine-tune the decoder of a trained one.

    videoscene train vae --config configs/vae_tiny_train.json --out runs/vae_tiny [--resume]
    videoscene train vae --config configs/vae_tiny_decoder.json --out runs/vae_tiny_decoder   # decoder only

Loss per step on a batch of clips x ∈ [−1, 1] (the step's scenes; random stride, start, spatial crop, flips):

    L = λ₁·|x̂ − x|₁ + λ₂·‖x̂ − x‖² + λ_ssim·(1 − SSIM(x̂, x)) + λ_KL·KL(q(z|x) ‖ N(0, I)),
    x̂ = D(z), z ~ q(z|x)

(all terms are means over elements). The VAE is convolutional and CogVideoX's causal temporal compression
maps 8k+1 frames to 2k+1 latents, so training on short clips (9 frames) and spatial crops sees the same
operators at a fraction of the cost of full 17×64×96 clips; validation always uses full-size clips.

Training frames are decoded once into memory (uint8). The scenes of step s come from seeded epoch
permutations, split between processes (`batch_indices`), and every other draw (stride, start, crop, flips,
the posterior sample) from a generator seeded by (seed, s, process): a run resumed from a checkpoint
continues exactly as the uninterrupted one. At the end the
latent statistics are measured on full-size training clips: scaling_factor = 1/std(z) (as CogVideoX's 0.7 for
its VAE) and the per-channel mean and std, with which the diffusion model sees standardised latents (see
VAEConfig.latents_mean); the VAE is written as a diffusers folder plus latent_statistics.json.

Decoder fine-tuning (`init_vae` + `trainable: "decoder"`, as Stable Diffusion's ft-MSE decoder): the
encoder, and so every latent, stays exactly as trained, so a teacher or student trained on its latents stays
valid; only D learns, on full-size clips (the from-scratch run sees 9-frame crops, whose GroupNorm statistics
differ from the 17×64×96 videos the pipeline decodes). The scaling factor and latent statistics are copied
from `init_vae`, not re-measured.

Output folder:
    vae/                    the trained VAE (diffusers format: config.json +
                            diffusion_pytorch_model.safetensors) and latent_statistics.json (per-channel
                            latent mean and std)
    train_config.json, run.json (held-out PSNR, scaling factor, step times), train_log.jsonl, validation.jsonl
    checkpoints/step_NNNNNNN/  vae.safetensors, optimizer.safetensors, state.json
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import AutoencoderKLCogVideoX
from jaxtyping import Float, UInt8
from torch import Tensor, nn
from tqdm.auto import tqdm

from videoscene.data.dataset import ClipDataset, ClipSamplerConfig
from videoscene.data.re10k import INDEX_FILE, load_index, read_chunk
from videoscene.errors import VideoSceneError
from videoscene.geometry.image_ops import crop_to_aspect_and_resize
from videoscene.image_io import to_uint8
from videoscene.io_utils import load_state, read_json_object, staged_output_dir, write_json_atomic
from videoscene.metrics.image import psnr, ssim
from videoscene.training.cli import add_training_arguments, run_training
from videoscene.training.config import RunConfig, load_config, positive
from videoscene.training.loop import LoopSettings, Optimisation, Trainer, torch_threads
from videoscene.training.randomness import batch_indices, step_generator
from videoscene.video.config import VAEConfig, VideoModelConfig, preset

logger = logging.getLogger(__name__)

VAE_FOLDER = "vae"
LATENT_STATISTICS_FILE = "latent_statistics.json"  # per-channel mean and std, inside the VAE folder


@dataclass
class VAETrainConfig(RunConfig):
    """Everything a VAE training run depends on; stored as JSON beside its outputs."""

    video: str = (
        "configs/video_tiny.json"  # video model config (preset name or JSON path): VAE widths and frame size
    )
    train_data: list[str] = field(default_factory=list)  # RealEstate10K-format split folders
    validation_data: list[str] = field(default_factory=list)  # held-out split folders (full-size clips)
    max_train_scenes: int | None = None  # decode at most this many training scenes into memory
    num_frames: int = 9  # frames per training clip (8k+1)
    crop_size: tuple[int, int] | None = (32, 48)  # random spatial crop (height, width); None: whole frames
    min_stride: int = 1
    max_stride: int = 3
    flip: bool = True  # random horizontal flip and time reversal
    steps: int = 3000
    min_lr_ratio: float = 0.05
    l1_weight: float = 1.0
    mse_weight: float = 1.0
    ssim_weight: float = 0.0
    kl_weight: float = 1e-6
    validation_clips: int = 6  # clips for the periodic validation (the final one uses every held-out scene)
    scale_clips: int = 32  # full-size training clips whose latent std sets the scaling factor
    init_vae: str | None = (
        None  # a trained VAE folder (a `vae/` output) to start from instead of random weights
    )
    trainable: Literal["all", "decoder"] = "all"  # "decoder": freeze the encoder (needs init_vae)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.trainable not in ("all", "decoder"):
            raise VideoSceneError(
                f"VAE training config: trainable must be 'all' or 'decoder', got {self.trainable!r}"
            )
        if self.trainable == "decoder" and not self.init_vae:
            raise VideoSceneError(
                "VAE training config: trainable 'decoder' fine-tunes a trained VAE; set init_vae to "
                "its folder"
            )
        if self.crop_size is not None:
            self.crop_size = tuple(self.crop_size)
        self.train_data, self.validation_data = list(self.train_data), list(self.validation_data)
        positive(self, "validation_clips", "scale_clips")
        if min(self.l1_weight, self.mse_weight, self.ssim_weight, self.kl_weight) < 0:
            raise VideoSceneError("VAE training config: loss weights must be >= 0")
        ClipSamplerConfig(self.num_frames, self.min_stride, self.max_stride)  # validates frames and strides
        video = self.video_config
        if self.crop_size is not None:
            height, width = self.crop_size
            multiple = video.vae.spatial_compression
            if height % multiple or width % multiple or height > video.height or width > video.width:
                raise VideoSceneError(
                    f"VAE training config: crop_size {list(self.crop_size)} must be multiples of {multiple} "
                    f"within the {video.height}x{video.width} frames"
                )

    @property
    def video_config(self) -> VideoModelConfig:
        return preset(self.video)

    @classmethod
    def load(cls, path: str | Path) -> VAETrainConfig:
        return load_config(cls, path)


# -- data ----------------------------------------------------------------------------------------------------
def fit_frames(frames: Float[Tensor, "n 3 h w"], size: tuple[int, int]) -> Float[Tensor, "n 3 height width"]:
    """Centre-crop to the aspect ratio and resize to `size` (a no-op for frames already that size)."""
    if tuple(frames.shape[-2:]) == size:
        return frames
    return crop_to_aspect_and_resize(frames, torch.eye(3).expand(len(frames), 3, 3), size)[0]


class FrameBank:
    """Every frame of the training scenes, decoded once and kept as uint8: random clips cost no decoding."""

    def __init__(self, split_dirs: list[str], size: tuple[int, int], max_scenes: int | None = None):
        chunks = [
            Path(split) / chunk for split in split_dirs for chunk in sorted(set(load_index(split).values()))
        ]
        self.videos: list[UInt8[Tensor, "n 3 height width"]] = []
        for chunk in tqdm(chunks, desc="decoding training chunks", unit="chunk", disable=len(chunks) < 2):
            if max_scenes is not None and len(self.videos) >= max_scenes:
                break
            for scene in read_chunk(chunk)[: None if max_scenes is None else max_scenes - len(self.videos)]:
                self.videos.append(to_uint8(fit_frames(scene.frames(), size)))
        if not self.videos:
            raise VideoSceneError(
                f"no scenes in {split_dirs}; point at split folders of RealEstate10K chunks"
            )
        self.size = size

    def __len__(self) -> int:
        return len(self.videos)

    def draw(
        self,
        generator: torch.Generator,
        scenes: list[int],
        num_frames: int,
        strides: tuple[int, int],
        crop: tuple[int, int] | None,
        flip: bool,
    ) -> Float[Tensor, "batch frames 3 height width"]:
        """A random clip in [0, 1] of each of `scenes` (positions in the bank): stride, start, crop window and
        flips all from `generator`."""

        def uniform(low: int, high: int) -> int:  # inclusive bounds
            return int(torch.randint(low, high + 1, (), generator=generator))

        span = num_frames - 1
        crop_height, crop_width = crop or self.size
        clips = []
        for scene in scenes:
            video = self.videos[scene]
            max_stride = min(strides[1], (len(video) - 1) // span)
            if max_stride < 1:
                raise VideoSceneError(
                    f"a training scene has {len(video)} frames, fewer than the {num_frames} a clip needs"
                )
            stride = uniform(min(strides[0], max_stride), max_stride)
            start = uniform(0, len(video) - 1 - span * stride)
            top, left = uniform(0, self.size[0] - crop_height), uniform(0, self.size[1] - crop_width)
            clip = video[
                start : start + span * stride + 1 : stride,
                :,
                top : top + crop_height,
                left : left + crop_width,
            ]
            if flip and uniform(0, 1):
                clip = clip.flip(-1)
            if flip and uniform(0, 1):
                clip = clip.flip(0)  # camera walks played backwards are camera walks too
            clips.append(clip)
        return torch.stack(clips).float() / 255


def held_out_clips(
    split_dirs: list[str], video: VideoModelConfig, strides: tuple[int, int], limit: int | None, seed: int
) -> list[Float[Tensor, "frames 3 height width"]]:
    """Full-size clips (the model's frame count and size) of held-out scenes, one per scene, deterministic.
    Held-out folders that do not exist yet are reported and skipped (training does not need them)."""
    missing = [split for split in split_dirs if not (Path(split) / INDEX_FILE).is_file()]
    if not split_dirs:
        return []
    if missing:
        logger.warning("held-out data %s not found (no %s): no held-out PSNR this time", missing, INDEX_FILE)
        return []
    dataset = ClipDataset(
        split_dirs, ClipSamplerConfig(video.num_frames, *strides), seed=seed, deterministic=True
    )
    count = len(dataset) if limit is None else min(limit, len(dataset))
    return [fit_frames(dataset[i].target.image, (video.height, video.width)) for i in range(count)]


# -- model and loss ------------------------------------------------------------------------------------------
class Reconstruction(nn.Module):
    """x → (x̂, posterior mean, posterior log-variance): the VAE round trip as one `forward` (what accelerate
    wraps). With `train_encoder=False` the encoder runs without autograd (decoder fine-tuning)."""

    def __init__(self, vae: AutoencoderKLCogVideoX, train_encoder: bool = True):
        super().__init__()
        self.vae = vae
        self.train_encoder = train_encoder

    def forward(
        self, pixels: Float[Tensor, "batch 3 frames height width"], generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        with torch.set_grad_enabled(self.train_encoder and torch.is_grad_enabled()):
            posterior = self.vae.encode(pixels).latent_dist
        reconstruction = self.vae.decode(posterior.sample(generator=generator)).sample
        return reconstruction, posterior.mean, posterior.logvar


def vae_loss(
    config: VAETrainConfig,
    reconstruction: Float[Tensor, "batch 3 frames height width"],
    pixels: Float[Tensor, "batch 3 frames height width"],
    mean: Tensor,
    logvar: Tensor,
) -> dict[str, Tensor]:
    """The terms of L (module docstring) in [−1, 1] pixel units, and their weighted sum `total`."""
    terms = {
        "l1": (reconstruction - pixels).abs().mean(),
        "mse": (reconstruction - pixels).square().mean(),
        "kl": 0.5 * (mean.square() + logvar.exp() - 1 - logvar).mean(),
    }
    total = config.l1_weight * terms["l1"] + config.mse_weight * terms["mse"] + config.kl_weight * terms["kl"]
    if config.ssim_weight > 0:
        terms["ssim"] = ssim(from_vae_layout(reconstruction), from_vae_layout(pixels)).mean()
        total = total + config.ssim_weight * (1 - terms["ssim"])
    terms["total"] = total
    return terms


def to_vae_layout(
    video: Float[Tensor, "batch frames 3 height width"],
) -> Float[Tensor, "batch 3 frames height width"]:
    """[0, 1] frames-first video → the VAE's [−1, 1] channels-first layout (docs/conventions.md)."""
    return (video * 2 - 1).permute(0, 2, 1, 3, 4)


def from_vae_layout(
    pixels: Float[Tensor, "batch 3 frames height width"],
) -> Float[Tensor, "batch frames 3 height width"]:
    """The inverse of `to_vae_layout` (not clamped)."""
    return ((pixels + 1) / 2).permute(0, 2, 1, 3, 4)


@torch.no_grad()
def reconstruct(vae: AutoencoderKLCogVideoX, video: Float[Tensor, "batch frames 3 height width"]) -> Tensor:
    """Encode with the posterior mean (deterministic) and decode: [0, 1] in, [0, 1] out."""
    device = next(vae.parameters()).device
    latents = vae.encode(to_vae_layout(video.to(device))).latent_dist.mode()
    return from_vae_layout(vae.decode(latents).sample).clamp(0, 1).cpu()


@torch.no_grad()
def evaluate_reconstruction(vae: AutoencoderKLCogVideoX, clips: list[Tensor]) -> dict[str, float]:
    """Held-out reconstruction PSNR (mean over all frames of all clips) and SSIM."""
    was_training = vae.training
    vae.eval()
    psnrs, ssims = [], []
    for clip in clips:
        output = reconstruct(vae, clip[None])[0]
        psnrs.append(psnr(output, clip))
        ssims.append(ssim(output, clip))
    vae.train(was_training)
    return {
        "psnr": torch.cat(psnrs).mean().item(),
        "ssim": torch.cat(ssims).mean().item(),
        "clips": len(clips),
    }


@torch.no_grad()
def measure_latent_statistics(vae: AutoencoderKLCogVideoX, bank: FrameBank, config: VAETrainConfig) -> dict:
    """Statistics of posterior samples z ~ q(z|x) over full-size training clips: the overall std (the scaling
    factor is its inverse) and the per-channel mean and std (VAEConfig.latents_mean / latents_std)."""
    video = config.video_config
    generator = step_generator("vae-scale", config.seed, 0)
    was_training = vae.training
    vae.eval()
    latents = []
    strides = (config.min_stride, config.max_stride)
    for number in range(config.scale_clips):  # the scenes in turn
        clip = bank.draw(generator, [number % len(bank)], video.num_frames, strides, None, flip=False)
        latents.append(vae.encode(to_vae_layout(clip)).latent_dist.sample(generator=generator))
    vae.train(was_training)
    per_channel = torch.cat(latents).transpose(0, 1).flatten(1)  # [C, everything else]
    return {
        "latent_std": per_channel.std().item(),
        "latents_mean": per_channel.mean(1).tolist(),
        "latents_std": per_channel.std(1).tolist(),
    }


def load_trained_vae(
    folder: str | Path, video: VideoModelConfig
) -> tuple[AutoencoderKLCogVideoX, VideoModelConfig]:
    """A `train vae` output's VAE and the video config with its scaling factor and latent statistics; the
    architecture must be the video config's."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise VideoSceneError(
            f"{folder} is not a VAE folder (no config.json); give a trained VAE folder, the vae/ of a "
            "`videoscene train vae` run"
        )
    vae = AutoencoderKLCogVideoX.from_pretrained(folder, local_files_only=True)
    trained = VAEConfig.from_diffusers(vae.config)
    if trained.architecture() != video.vae.architecture():
        raise VideoSceneError(
            f"the VAE in {folder} has another architecture than the video config's; train it with the "
            "same video config"
        )
    statistics = {}
    if (folder / LATENT_STATISTICS_FILE).is_file():
        stored = read_latent_statistics(folder)
        statistics = {key: tuple(stored[key]) for key in ("latents_mean", "latents_std")}
    return vae, replace(video, vae=replace(video.vae, scaling_factor=trained.scaling_factor, **statistics))


def read_latent_statistics(folder: Path) -> dict:
    """The per-channel statistics written by `write_latent_statistics`."""
    return read_json_object(
        folder / LATENT_STATISTICS_FILE, "latent statistics", "; is it a `videoscene train vae` output?"
    )


def write_latent_statistics(folder: Path, statistics: dict) -> None:
    """Beside the diffusers VAE files (whose config class has no field for them)."""
    write_json_atomic(
        folder / LATENT_STATISTICS_FILE, {key: statistics[key] for key in ("latents_mean", "latents_std")}
    )


# -- training ------------------------------------------------------------------------------------------------
ENCODER_PREFIXES = ("encoder.", "quant_conv.")  # what produces q(z|x): frozen by trainable = "decoder"


def initial_vae(config: VAETrainConfig, video: VideoModelConfig) -> AutoencoderKLCogVideoX:
    """Random weights (seeded by the caller), or the trained VAE named by `init_vae` with the encoder frozen
    when only the decoder trains."""
    if not config.init_vae:
        return AutoencoderKLCogVideoX(**video.vae_kwargs())
    vae, _ = load_trained_vae(config.init_vae, video)
    if config.trainable == "decoder":
        for name, parameter in vae.named_parameters():
            parameter.requires_grad_(not name.startswith(ENCODER_PREFIXES))
    return vae


class VAETrainer(Trainer):
    """The VAE's model (the round trip x → x̂), loss (L of the module docstring), batches (random clips of the
    in-memory frames) and export (the latent scale and statistics, the diffusers folder)."""

    name, export_name, checkpoint_files = "vae", VAE_FOLDER, ("vae",)

    def __init__(self, config: VAETrainConfig, out: str | Path, resume: bool = False):
        self.video = config.video_config
        super().__init__(config, LoopSettings.of(config), out, resume)

    def check_inputs(self) -> None:
        if not self.config.train_data:
            raise VideoSceneError("no training data: set train_data in the config or pass --data DIR")

    def build(self) -> Optimisation:
        config = self.config
        self.vae = initial_vae(config, self.video)
        # Decoder fine-tuning keeps the initial VAE's latent statistics: read them before training, not after.
        self.kept_statistics = (
            read_latent_statistics(Path(config.init_vae)) if config.trainable == "decoder" else None
        )
        trainable = [parameter for parameter in self.vae.parameters() if parameter.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, config.lr_factor())
        return Optimisation(
            Reconstruction(self.vae, train_encoder=config.trainable == "all"), optimizer, trainable, scheduler
        )

    def identity(self) -> dict[str, Any]:
        config = self.config
        return {
            "vae_config": self.video.vae_kwargs(),
            "seed": config.seed,
            "init_vae": config.init_vae,
            "trainable": config.trainable,
        }

    def load_data(self) -> None:
        # Training frames in memory; a few held-out clips for the periodic validation.
        config, video = self.config, self.video
        self.bank = FrameBank(config.train_data, (video.height, video.width), config.max_train_scenes)
        self.strides = (config.min_stride, config.max_stride)
        self.validation_clips = (  # only the main process validates
            held_out_clips(config.validation_data, video, self.strides, config.validation_clips, config.seed)
            if self.accelerator.is_main_process
            else []
        )
        logger.info(
            "VAE training: %d scenes in memory, %d validation clips, batch %d × %d frames × %s",
            len(self.bank),
            len(self.validation_clips),
            config.batch_size,
            config.num_frames,
            config.crop_size or "full frame",
        )

    def loss(self, generator: torch.Generator) -> tuple[Tensor, dict[str, Any]]:
        config, accelerator = self.config, self.accelerator
        scenes = batch_indices(
            len(self.bank),
            config.batch_size,
            accelerator.num_processes,
            accelerator.process_index,
            self.step,
            config.seed,
        )
        clips = self.bank.draw(
            generator, scenes, config.num_frames, self.strides, config.crop_size, config.flip
        )
        pixels = to_vae_layout(clips).to(accelerator.device)
        reconstruction, mean, logvar = self.model(pixels, generator=generator)
        terms = vae_loss(config, reconstruction.float(), pixels, mean.float(), logvar.float())
        record = {key: value.detach() for key, value in terms.items() if key != "total"}
        # PSNR of the training crops in [0, 1] units (the mse term is in [−1, 1] units: 4× larger).
        record["train_psnr"] = -10 * math.log10(max(record["mse"].item() / 4, 1e-10))
        return terms["total"], record

    def validate(self, final: bool) -> dict[str, Any] | None:
        config = self.config
        clips = (
            held_out_clips(config.validation_data, self.video, self.strides, None, config.seed)
            if final
            else self.validation_clips
        )
        if not clips:
            return None
        scores = evaluate_reconstruction(self.vae, clips)
        logger.info(
            "step %d: held-out reconstruction PSNR %.2f dB, SSIM %.3f (%d clips)",
            self.step,
            scores["psnr"],
            scores["ssim"],
            len(clips),
        )
        return scores

    def checkpoint_tensors(self) -> dict[str, dict[str, Tensor]]:
        return {"vae": self.vae.state_dict()}

    def restore(self, tensors: dict[str, dict[str, Tensor]], state: dict[str, Any], folder: Path) -> None:
        load_state(self.vae, tensors["vae"], folder / "vae.safetensors", "checkpoint weights")

    def export(self, summary: dict[str, Any], validation: dict[str, Any] | None) -> dict[str, Any]:
        """The latent scale (measured, or kept when only the decoder trained), the VAE folder."""
        vae = self.vae
        if (
            self.kept_statistics is not None
        ):  # the latents did not change: keep the scale and statistics as they were
            scaling_factor = vae.config.scaling_factor
            statistics = {**self.kept_statistics, "latent_std": 1.0 / scaling_factor}
        else:
            statistics = measure_latent_statistics(vae, self.bank, self.config)
            scaling_factor = 1.0 / statistics["latent_std"]
        vae.register_to_config(scaling_factor=scaling_factor)
        with staged_output_dir(self.out / VAE_FOLDER, overwrite=True) as stage:
            vae.save_pretrained(stage, safe_serialization=True)
            write_latent_statistics(stage, statistics)
        logger.info("wrote %s (scaling factor %.4f)", self.out / VAE_FOLDER, scaling_factor)
        return {
            **summary,
            **statistics,
            "scaling_factor": scaling_factor,
            **({"held_out": validation} if validation else {}),
        }


def train_vae(
    config: VAETrainConfig, out: str | Path, resume: bool = False, stop_after: int | None = None
) -> dict:
    """Train (or resume) the VAE; returns the run summary. `stop_after` ends this call after that many steps
    (checkpointing first), e.g. to train in time slices."""
    with torch_threads(config.num_threads):
        return VAETrainer(config, out, resume).train(stop_after)


# -- CLI -----------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(
        parser,
        "configs/vae_tiny_train.json",
        "training split folders (override the config)",
        "held-out split folders for reconstruction PSNR (override the config)",
    )


def run(args: argparse.Namespace) -> None:
    changes = {
        key: value
        for key, value in (("train_data", args.data), ("validation_data", args.val_data))
        if value is not None
    }
    run_training(args, VAETrainConfig.load(args.config), changes, train_vae)
