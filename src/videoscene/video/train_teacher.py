"""`videoscene train teacher`: train the first/last-frame video diffusion teacher on VAE latents.

    videoscene train teacher --config configs/teacher_tiny_train.json --out runs/teacher_tiny [--resume]

The VAE (trained by `videoscene train vae`) is frozen and the transformer starts from random weights, or, with
`init_teacher`, both come from a model folder that training fine-tunes: a VideoScene teacher (to train the
tiny one further) or a diffusers CogVideoX I2V folder (the paper fine-tunes CogVideoX-5B-I2V into its
first/last-frame teacher, with `trainable: "attention"`). Every training clip is encoded once into a latent
cache (posterior mean and std, unscaled, plus its first and last frames as uint8); a step then draws, from a
generator seeded by (seed, step):

    x₀ = N(μ + σ_q·ε_q)                                   a fresh posterior sample, normalised (models.py)
    c  = [E(ĩ_first), 0, …, 0, E(ĩ_last)], ĩ = i + σ·ε    condition latents, log σ ~ N(−3, 0.5²)
                                                          (docs/method.md §3)
    t ~ U{0..999},  x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε,  v = √ᾱ_t·ε − √(1−ᾱ_t)·x₀

and minimises E[(1/(1−ᾱ_t))·‖x̂₀(x_t, t) − x₀‖²], which equals the v-MSE ‖v̂ − v‖² since
x̂₀ − x₀ = −√(1−ᾱ_t)·(v̂ − v). With `condition_dropout` > 0 the condition latents are zeroed for that share of
the batch, so that classifier-free guidance over the image condition (sampling.py) has an unconditional
branch.

Validation: the 50-step DDIM teacher from pure noise, conditioned on the first and last frames of held-out
clips, against the linear cross-fade of those two frames, PSNR/SSIM of the in-between frames against ground
truth (`evaluate_interpolation`); the first clip is written as an mp4 (ground truth | teacher | cross-fade).

Output folder:
    teacher/                  VideoBackbone folder (VAE + transformer + learned prompt): the trained teacher
    train_config.json, run.json, train_log.jsonl, validation.jsonl, validation/step_NNNNNNN.mp4
    checkpoints/step_NNNNNNN/ transformer, prompt_embedding, ema (optional), optimizer, state.json
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLCogVideoX
from diffusers.utils.torch_utils import randn_tensor
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from videoscene.data.dataset import ClipDataset, ClipSamplerConfig
from videoscene.data.re10k import INDEX_FILE
from videoscene.errors import LoadError, VideoSceneError
from videoscene.image_io import to_uint8, write_mp4
from videoscene.io_utils import load_safetensors, load_state, save_safetensors
from videoscene.metrics.image import psnr, ssim
from videoscene.training.checkpoints import module_fingerprint
from videoscene.training.cli import add_training_arguments, run_training
from videoscene.training.config import RunConfig, load_config, positive
from videoscene.training.loop import LoopSettings, Optimisation, Trainer, torch_threads
from videoscene.training.randomness import batch_indices
from videoscene.video.conditioning import encode_condition_frames
from videoscene.video.config import VideoModelConfig, preset
from videoscene.video.models import VelocityModel, VideoBackbone, trainable_parameter_names
from videoscene.video.sampling import SamplingConfig, sample_video
from videoscene.video.schedule import NoiseSchedule
from videoscene.video.train_vae import fit_frames, held_out_clips, load_trained_vae, to_vae_layout

logger = logging.getLogger(__name__)

TEACHER_FOLDER = "teacher"
CACHE_FILE = "latents.safetensors"


@dataclass
class TeacherTrainConfig(RunConfig):
    """Everything a teacher training run depends on; stored as JSON beside its outputs."""

    video: str = "configs/video_tiny.json"  # video model config (preset name or JSON path)
    vae: str | None = (
        None  # the trained VAE of a new teacher: a diffusers folder written by `videoscene train vae`
    )
    # A model folder to fine-tune instead (its VAE and transformer): a VideoScene teacher/ folder or a
    # diffusers CogVideoX I2V folder (vae/, transformer/, scheduler/); its architecture must be `video`'s.
    init_teacher: str | None = None
    init_prompt_embeds: str | None = (
        None  # prompt embedding file for a diffusers init_teacher (else its T5 encodes "")
    )
    train_data: list[str] = field(default_factory=list)  # RealEstate10K-format split folders
    validation_data: list[str] = field(default_factory=list)  # held-out split folders
    min_stride: int = 1
    max_stride: int = 3
    clips_per_scene: int = 2  # cached clips per training scene (each its own stride and start)
    max_train_clips: int | None = None
    cache_dir: str = "cache/teacher"  # root; a cache is a sub-folder named by the hash of what made it
    trainable: str = (
        "all"  # "all" (transformer + learned prompt) or "attention" (the paper's fine-tuning subset)
    )
    gradient_checkpointing: bool = False
    condition_dropout: float = 0.0  # share of samples trained without the image condition (for CFG)
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 50
    ema_decay: float = (
        0.0  # 0: no EMA; else θ_ema ← μ·θ_ema + (1−μ)·θ after every step, exported instead of θ
    )
    validation_clips: int = 4  # held-out clips of the periodic validation (the final one uses all)
    # Stride of the held-out clips; None: drawn from min..max_stride like training. The widest gap (the
    # largest stride a scene allows) is the paper's setting: context views far apart, most motion between.
    validation_stride: int | None = None
    validation_steps: int = 50  # DDIM steps of the validation samples

    def __post_init__(self) -> None:
        super().__post_init__()
        self.train_data, self.validation_data = list(self.train_data), list(self.validation_data)
        positive(self, "validation_clips", "validation_steps", "clips_per_scene")
        if not 0 <= self.condition_dropout < 1 or not 0 <= self.ema_decay < 1:
            raise VideoSceneError(
                "teacher training config: condition_dropout and ema_decay must be in [0, 1)"
            )
        if (self.vae is None) == (self.init_teacher is None):
            raise VideoSceneError(
                "teacher training config: set vae (a trained VAE, for a new teacher) or init_teacher "
                "(a model folder to fine-tune, which brings its own VAE), not both"
            )
        if self.init_prompt_embeds is not None and self.init_teacher is None:
            raise VideoSceneError(
                "teacher training config: init_prompt_embeds is the prompt of init_teacher; set "
                "init_teacher too"
            )
        if self.trainable not in ("all", "attention"):
            raise VideoSceneError(
                f"teacher training config: trainable={self.trainable!r}; choose 'all' or 'attention'"
            )
        ClipSamplerConfig(self.video_config.num_frames, self.min_stride, self.max_stride)  # validates strides
        if self.validation_stride is not None and self.validation_stride < 1:
            raise VideoSceneError(
                f"teacher training config: validation_stride must be >= 1, got {self.validation_stride}"
            )

    @property
    def validation_strides(self) -> tuple[int, int]:
        if self.validation_stride is None:
            return self.min_stride, self.max_stride
        return self.validation_stride, self.validation_stride

    @property
    def video_config(self) -> VideoModelConfig:
        return preset(self.video)

    @classmethod
    def load(cls, path: str | Path) -> TeacherTrainConfig:
        return load_config(cls, path)


# -- the backbone with the trained VAE -----------------------------------------------------------------------
def build_teacher(config: TeacherTrainConfig) -> VideoBackbone:
    """A randomly initialised transformer (seeded) around the frozen trained VAE, or the `init_teacher` model
    (its VAE frozen) to fine-tune."""
    if config.init_teacher is not None:
        backbone = VideoBackbone.from_pretrained(config.init_teacher, config.init_prompt_embeds)
        check_same_architecture(backbone.config, config.video_config, config.init_teacher)
    else:
        vae, video = load_trained_vae(config.vae, config.video_config)
        torch.manual_seed(config.seed)
        backbone = VideoBackbone.build(video)
        backbone.vae.load_state_dict(vae.state_dict())
    backbone.vae.requires_grad_(False).eval()
    return backbone


def check_same_architecture(loaded: VideoModelConfig, declared: VideoModelConfig, folder: str) -> None:
    """The fine-tuned model must be the one the config declares (clip size, VAE and transformer shapes);
    memory-only switches and the VAE's latent scaling (measured per VAE) may differ."""
    pairs = {
        "clip size": (
            (loaded.num_frames, loaded.height, loaded.width),
            (declared.num_frames, declared.height, declared.width),
        ),
        "VAE": (loaded.vae.architecture(), declared.vae.architecture()),
        "transformer": (loaded.denoiser.architecture(), declared.denoiser.architecture()),
    }
    differing = [name for name, (a, b) in pairs.items() if a != b]
    if differing:
        raise VideoSceneError(
            f"init_teacher {folder} differs from the video config in its {' and '.join(differing)}; "
            "set `video` to the preset the folder was made with"
        )


# -- the latent cache ----------------------------------------------------------------------------------------
@dataclass
class LatentCache:
    """Per clip: posterior mean and std of the VAE (unscaled) and the first/last frames (uint8)."""

    mean: Float[Tensor, "clips latent_frames channels latent_height latent_width"]
    std: Float[Tensor, "clips latent_frames channels latent_height latent_width"]
    ends: Tensor  # uint8 [clips, 2, 3, H, W]

    def __len__(self) -> int:
        return self.mean.shape[0]


def build_latent_cache(
    config: TeacherTrainConfig, vae: AutoencoderKLCogVideoX, batch_size: int = 8
) -> LatentCache:
    """Encode `clips_per_scene` clips of every training scene once (or reuse the cache made from the same
    inputs)."""
    video = config.video_config
    for split in config.train_data:
        if not (Path(split) / INDEX_FILE).is_file():
            raise VideoSceneError(
                f"training folder {split} has no {INDEX_FILE}; point at a split folder of "
                "RealEstate10K chunks"
            )
    spec = {
        "splits": {
            str(Path(s).resolve()): hashlib.sha256((Path(s) / INDEX_FILE).read_bytes()).hexdigest()
            for s in config.train_data
        },
        "strides": [config.min_stride, config.max_stride],
        "size": [video.num_frames, video.height, video.width],
        "clips_per_scene": config.clips_per_scene,
        "max_train_clips": config.max_train_clips,
        "seed": config.seed,
        "vae": module_fingerprint(vae),
    }
    folder = (
        Path(config.cache_dir)
        / f"teacher-{hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]}"
    )
    if (folder / CACHE_FILE).is_file():
        logger.info("reusing latent cache %s", folder)
        tensors = load_safetensors(folder / CACHE_FILE, "latent cache")
        return LatentCache(tensors["mean"], tensors["std"], tensors["ends"])

    sampler = ClipSamplerConfig(video.num_frames, config.min_stride, config.max_stride)
    # Clip r·S + s is repeat r of scene s; each repeat draws its own stride and start (deterministically).
    datasets = [
        ClipDataset(
            config.train_data, sampler, seed=config.seed * config.clips_per_scene + r, deterministic=True
        )
        for r in range(config.clips_per_scene)
    ]
    scenes = len(datasets[0])
    count = scenes * config.clips_per_scene
    count = count if config.max_train_clips is None else min(count, config.max_train_clips)
    means, stds, ends = [], [], []
    vae.eval()
    for first in tqdm(
        range(0, count, batch_size), desc="encoding training clips", unit="batch", disable=count <= batch_size
    ):
        clips = [
            fit_frames(datasets[i // scenes][i % scenes].target.image, (video.height, video.width))
            for i in range(first, min(count, first + batch_size))
        ]
        clips = torch.stack(clips)
        with torch.no_grad():
            posterior = vae.encode(to_vae_layout(clips)).latent_dist
        # [B, C, f, h, w] → [B, f, C, h, w] (the transformer's layout)
        means.append(posterior.mean.permute(0, 2, 1, 3, 4).contiguous())
        stds.append(posterior.std.permute(0, 2, 1, 3, 4).contiguous())
        ends.append(to_uint8(clips[:, [0, -1]]))
    cache = LatentCache(torch.cat(means), torch.cat(stds), torch.cat(ends))
    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors(
        folder / CACHE_FILE,
        {"mean": cache.mean, "std": cache.std, "ends": cache.ends},
        {"spec": json.dumps(spec)},
    )
    logger.info("latent cache %s: %d clips", folder, len(cache))
    return cache


# -- one training batch --------------------------------------------------------------------------------------
@dataclass
class TrainingBatch:
    noisy: Tensor  # x_t
    condition: Tensor  # c
    timesteps: Tensor  # t
    v_target: Tensor  # v


@torch.no_grad()
def draw_batch(
    backbone: VideoBackbone,
    schedule: NoiseSchedule,
    cache: LatentCache,
    indices: list[int],
    generator: torch.Generator,
    condition_dropout: float,
) -> TrainingBatch:
    """x₀ (fresh posterior sample), condition latents (fresh noise augmentation), t, x_t and v for
    `indices`."""
    device = backbone.device
    index = torch.tensor(indices)
    mean, std = cache.mean[index], cache.std[index]
    x0 = backbone.normalize_latents(mean + std * randn_tensor(mean.shape, generator=generator))
    ends = cache.ends[index].float() / 255
    condition = encode_condition_frames(
        backbone, ends[:, 0].to(device), ends[:, 1].to(device), x0.shape[1], generator=generator
    )
    if condition_dropout > 0:
        keep = (torch.rand(len(indices), generator=generator) >= condition_dropout).to(condition)
        condition = condition * keep.reshape(-1, 1, 1, 1, 1)
    timesteps = torch.randint(0, schedule.num_train_timesteps, (len(indices),), generator=generator)
    noise = randn_tensor(x0.shape, generator=generator)
    return TrainingBatch(
        noisy=schedule.add_noise(x0, noise, timesteps).to(device),
        condition=condition,
        timesteps=timesteps.to(device),
        v_target=schedule.v_target(x0, noise, timesteps).to(device),
    )


# -- validation ----------------------------------------------------------------------------------------------
def linear_crossfade(
    first: Float[Tensor, "batch 3 height width"], last: Float[Tensor, "batch 3 height width"], num_frames: int
) -> Float[Tensor, "batch frames 3 height width"]:
    """The baseline: frame k = (1 − k/(F−1))·first + k/(F−1)·last."""
    weights = torch.linspace(0, 1, num_frames).reshape(1, -1, 1, 1, 1)
    return (1 - weights) * first[:, None] + weights * last[:, None]


@torch.no_grad()
def evaluate_interpolation(
    backbone: VideoBackbone,
    clips: list[Float[Tensor, "frames 3 height width"]],
    num_steps: int = 50,
    seed: int = 0,
    batch_size: int = 8,
    video_path: Path | None = None,
) -> dict[str, float]:
    """The teacher from pure noise (`num_steps` DDIM steps) conditioned on each clip's first and last frames,
    and the linear cross-fade of those frames: PSNR and SSIM of the in-between frames against ground truth,
    averaged over frames and clips. Optionally writes the first clip as ground truth | teacher |
    cross-fade."""
    scores: dict[str, list[Tensor]] = {
        "teacher_psnr": [],
        "crossfade_psnr": [],
        "teacher_ssim": [],
        "crossfade_ssim": [],
    }
    sampling = SamplingConfig(num_steps=num_steps)
    for start in range(0, len(clips), batch_size):
        truth = torch.stack(clips[start : start + batch_size])
        generated = sample_video(
            backbone, truth[:, 0], truth[:, -1], sampling, seed=seed + start, num_frames=truth.shape[1]
        ).cpu()
        crossfade = linear_crossfade(truth[:, 0], truth[:, -1], truth.shape[1])
        inner = slice(1, truth.shape[1] - 1)  # the two ends are the inputs
        for name, video in (("teacher", generated), ("crossfade", crossfade)):
            scores[f"{name}_psnr"].append(psnr(video[:, inner], truth[:, inner]).flatten())
            scores[f"{name}_ssim"].append(ssim(video[:, inner].clamp(0, 1), truth[:, inner]).flatten())
        if video_path is not None and start == 0:
            write_mp4(video_path, torch.cat([truth[0], generated[0], crossfade[0]], dim=-1))
    summary = {name: torch.cat(values).mean().item() for name, values in scores.items()}
    return {**summary, "clips": len(clips), "num_steps": num_steps}


# -- training ------------------------------------------------------------------------------------------------
class TeacherTrainer(Trainer):
    """The teacher's model (the velocity v̂ of the transformer around the frozen VAE), loss (v-MSE), batches
    (cached latents, fresh noise) and EMA, and its export (the teacher folder, scored on every held-out
    clip)."""

    name, export_name = "teacher", TEACHER_FOLDER

    def __init__(self, config: TeacherTrainConfig, out: str | Path, resume: bool = False):
        super().__init__(config, LoopSettings.of(config), out, resume)

    @property
    def checkpoint_files(self) -> tuple[str, ...]:
        return ("transformer", "prompt_embedding", *(("ema",) if self.ema is not None else ()))

    def check_inputs(self) -> None:
        if not self.config.train_data:
            raise VideoSceneError("no training data: set train_data in the config or pass --data DIR")

    def build(self) -> Optimisation:
        # Frozen VAE + new (or init_teacher's) transformer; the trainable subset; EMA.
        config = self.config
        backbone = self.backbone = build_teacher(config).to(self.accelerator.device)
        if config.gradient_checkpointing:
            backbone.transformer.enable_gradient_checkpointing()
        trainable_names = set(trainable_parameter_names(backbone.transformer, config.trainable))
        for name, parameter in backbone.transformer.named_parameters():
            parameter.requires_grad_(name in trainable_names)
        backbone.prompt_embedding.requires_grad_(config.trainable == "all")
        trainable = [
            p
            for p in [*backbone.transformer.parameters(), *backbone.prompt_embedding.parameters()]
            if p.requires_grad
        ]
        self.ema = [p.detach().clone() for p in trainable] if config.ema_decay > 0 else None
        optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, config.lr_factor())
        return Optimisation(VelocityModel(backbone), optimizer, trainable, scheduler)

    def identity(self) -> dict[str, Any]:
        config = self.config
        return {
            "video_config": self.backbone.config.to_dict(),
            "vae": module_fingerprint(self.backbone.vae),
            "trainable": config.trainable,
            "ema": config.ema_decay > 0,
            "seed": config.seed,
            "init_teacher": config.init_teacher,
        }

    def load_data(self) -> None:
        # Cached training latents; a few full-size held-out clips.
        config, backbone = self.config, self.backbone
        with self.accelerator.main_process_first():  # the other processes then reuse the cache it wrote
            self.cache = build_latent_cache(config, backbone.vae)
        self.schedule = NoiseSchedule(backbone.config.schedule)
        self.validation_clips = (  # only the main process validates
            held_out_clips(
                config.validation_data,
                backbone.config,
                config.validation_strides,
                config.validation_clips,
                config.seed,
            )
            if self.accelerator.is_main_process
            else []
        )
        logger.info(
            "teacher training: %d cached clips, %d validation clips, batch %d, %d trainable parameters (%s)",
            len(self.cache),
            len(self.validation_clips),
            config.batch_size,
            sum(p.numel() for p in self.trainable),
            config.trainable,
        )

    def loss(self, generator: torch.Generator) -> tuple[Tensor, dict[str, Any]]:
        config, accelerator = self.config, self.accelerator
        indices = batch_indices(
            len(self.cache),
            config.batch_size,
            accelerator.num_processes,
            accelerator.process_index,
            self.step,
            config.seed,
        )
        batch = draw_batch(
            self.backbone, self.schedule, self.cache, indices, generator, config.condition_dropout
        )
        v = self.model(batch.noisy, batch.condition, batch.timesteps)
        # ≡ (1/(1−ᾱ_t))·‖x̂₀ − x₀‖² (module docstring)
        return (v.float() - batch.v_target).square().mean(), {}

    def after_step(self, generator: torch.Generator) -> dict[str, Any]:
        if self.ema is not None:
            torch._foreach_lerp_(self.ema, [p.detach() for p in self.trainable], 1 - self.config.ema_decay)
        return {}

    def validate(self, final: bool) -> dict[str, Any] | None:
        """The exported weights (EMA when kept) on a few held-out clips, or on all of them at the last
        step."""
        config = self.config
        clips = self.validation_clips
        if final:
            clips = held_out_clips(
                config.validation_data, self.backbone.config, config.validation_strides, None, config.seed
            )
        if not clips:
            return None
        video = self.out / "validation" / ("final.mp4" if final else f"step_{self.step:07d}.mp4")
        with self.exported_weights():
            scores = evaluate_interpolation(
                self.backbone, clips, config.validation_steps, config.seed, video_path=video
            )
        logger.info(
            "step %d: teacher %.2f dB vs cross-fade %.2f dB (in-between frames, %d clips)",
            self.step,
            scores["teacher_psnr"],
            scores["crossfade_psnr"],
            len(clips),
        )
        return scores

    def checkpoint_tensors(self) -> dict[str, dict[str, Tensor]]:
        tensors = {
            "transformer": self.backbone.transformer.state_dict(),
            "prompt_embedding": self.backbone.prompt_embedding.state_dict(),
        }
        if self.ema is not None:
            tensors["ema"] = {str(i): value for i, value in enumerate(self.ema)}
        return tensors

    def restore(self, tensors: dict[str, dict[str, Tensor]], state: dict[str, Any], folder: Path) -> None:
        for name in ("transformer", "prompt_embedding"):
            load_state(
                getattr(self.backbone, name),
                tensors[name],
                folder / f"{name}.safetensors",
                "checkpoint weights",
            )
        for index, value in enumerate(self.ema or []):
            stored = tensors["ema"].get(str(index))
            if stored is None or stored.shape != value.shape:
                raise LoadError(f"checkpoint {folder}: ema.safetensors does not fit the trainable parameters")
            value.copy_(stored)

    def export(self, summary: dict[str, Any], validation: dict[str, Any] | None) -> dict[str, Any]:
        with self.exported_weights():
            self.backbone.save_pretrained(self.out / TEACHER_FOLDER, overwrite=True)
        logger.info("wrote %s", self.out / TEACHER_FOLDER)
        return {**summary, **({"held_out": validation} if validation else {})}

    @contextlib.contextmanager
    def exported_weights(self) -> Iterator[None]:
        """Within the block the trainable parameters hold the EMA weights (when kept); restored afterwards."""
        if self.ema is None:
            yield
            return
        saved = [p.detach().clone() for p in self.trainable]
        with torch.no_grad():
            torch._foreach_copy_([p.data for p in self.trainable], self.ema)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_([p.data for p in self.trainable], saved)


def train_teacher(
    config: TeacherTrainConfig, out: str | Path, resume: bool = False, stop_after: int | None = None
) -> dict:
    """Train (or resume) the teacher; returns the run summary. `stop_after` ends this call after that many
    steps."""
    with torch_threads(config.num_threads):
        return TeacherTrainer(config, out, resume).train(stop_after)


# -- CLI -----------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(
        parser,
        "configs/teacher_tiny_train.json",
        "training split folders (override the config)",
        "held-out split folders (override the config)",
    )
    parser.add_argument("--vae", help="trained VAE folder (overrides the config)")
    parser.add_argument(
        "--init-teacher",
        help="model folder to fine-tune: a VideoScene teacher or a diffusers CogVideoX I2V folder",
    )
    parser.add_argument("--cache-dir", help="latent cache root (overrides the config)")


def run(args: argparse.Namespace) -> None:
    changes = {
        key: value
        for key, value in (
            ("vae", args.vae),
            ("init_teacher", args.init_teacher),
            ("train_data", args.data),
            ("validation_data", args.val_data),
            ("cache_dir", args.cache_dir),
        )
        if value is not None
    }
    if args.init_teacher is not None:
        changes.setdefault("vae", None)  # the folder brings its VAE
    run_training(args, TeacherTrainConfig.load(args.config), changes, train_teacher)
