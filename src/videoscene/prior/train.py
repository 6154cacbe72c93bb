"""`videoscene train prior`: train the feed-forward Gaussian prior on RealEstate10K-format chunks.

Each step renders the predicted Gaussians at a random subset of a clip's target cameras and minimises
MSE + λ·(1 − SSIM) [+ λ_lpips·LPIPS] against the real frames, on the shared training loop
(`videoscene.training.loop`: accelerate, AdamW with linear warm-up then cosine decay, gradient clipping,
atomic checkpoints, resuming).

Determinism: the clip, its stride and the target subset of every sample are a pure function of (seed, global
sample number), so a run resumed from a checkpoint sees exactly the batches the uninterrupted run would have
seen. Checkpoints hold model.safetensors; the final export is OUT/prior.safetensors + OUT/prior_config.json.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from videoscene import arguments
from videoscene.data.dataset import ClipDataset, ClipSamplerConfig, collate_examples, example_from_scene
from videoscene.errors import VideoSceneError
from videoscene.geometry.image_ops import crop_to_aspect_and_resize
from videoscene.io_utils import load_state
from videoscene.metrics.image import psnr, ssim
from videoscene.prior.config import EncoderConfig, encoder_config
from videoscene.prior.encoder import GaussianEncoder
from videoscene.prior.losses import PhotometricLoss, PhotometricLossConfig
from videoscene.prior.render import nearest_context_images, render_targets
from videoscene.training.cli import add_training_arguments, run_training
from videoscene.training.config import RunConfig, config_from_dict, config_to_dict, load_config, positive
from videoscene.training.loop import LoopSettings, Optimisation, Trainer, torch_threads
from videoscene.training.randomness import batch_indices
from videoscene.types import Example, Views

logger = logging.getLogger(__name__)

EXPORT_FILE = "prior.safetensors"


@dataclass
class PriorTrainConfig(RunConfig):
    """Everything a training run depends on; stored as JSON beside its outputs."""

    encoder: str | dict = "tiny"  # preset name, path of an EncoderConfig JSON, or the config itself
    train_data: list[str] = field(default_factory=list)  # split folders (holding index.json)
    validation_data: list[str] = field(default_factory=list)  # held-out split folders; empty: no validation
    image_size: tuple[int, int] = (
        64,
        96,
    )  # (height, width); frames are centre-cropped to the aspect and resized
    num_frames: int = 9  # frames per clip (8k+1): the two ends are the context views
    min_stride: int = 1
    max_stride: int = 2
    near: float = 0.5
    far: float = 20.0
    targets_per_step: int = 2  # target views rendered per sample, drawn from the clip's frames
    batch_size: int = 2
    steps: int = 2000
    lr: float = 3e-4
    weight_decay: float = 0.01
    grad_clip: float = 0.5
    ssim_weight: float = 0.1
    lpips_weight: float = 0.05
    lpips_weights: list[str] = field(default_factory=list)  # LPIPS weight files; empty: no LPIPS term
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    num_workers: int = 0
    validation_scenes: int = 8
    checkpoint_every: int = 250

    def __post_init__(self) -> None:
        super().__post_init__()
        self.image_size = tuple(self.image_size)
        self.background = tuple(self.background)
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise VideoSceneError(
                f"training config: image_size must be [height, width], got {list(self.image_size)}"
            )
        if not 1 <= self.targets_per_step <= self.num_frames:
            raise VideoSceneError(
                f"training config: targets_per_step must be between 1 and num_frames ({self.num_frames})"
            )
        positive(self, "validation_scenes")
        ClipSamplerConfig(
            self.num_frames, self.min_stride, self.max_stride, self.near, self.far
        )  # validates those

    @property
    def encoder_config(self) -> EncoderConfig:
        return (
            EncoderConfig.from_dict(self.encoder)
            if isinstance(self.encoder, dict)
            else encoder_config(self.encoder)
        )

    @property
    def loss_config(self) -> PhotometricLossConfig:
        return PhotometricLossConfig(self.ssim_weight, self.lpips_weight, list(self.lpips_weights))

    @property
    def clip_config(self) -> ClipSamplerConfig:
        return ClipSamplerConfig(self.num_frames, self.min_stride, self.max_stride, self.near, self.far)

    def to_dict(self) -> dict:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PriorTrainConfig:
        return config_from_dict(cls, data, "training config")

    @classmethod
    def load(cls, path: str | Path) -> PriorTrainConfig:
        return load_config(cls, path)


# ----------------------------------------------------------------------------------------------
# Data: every sample is a pure function of (seed, global sample number)
# ----------------------------------------------------------------------------------------------


def derived_seed(seed: int, number: int) -> int:
    """A 63-bit seed for global sample `number`, independent across samples."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1, dtype=np.uint64)[0] >> 1)


def select_views(views: Views, chosen: Int[Tensor, " k"]) -> Views:
    """The views at positions `chosen` of batched views [B, V, ...]."""
    return replace(
        views,
        **{
            f.name: getattr(views, f.name)[:, chosen]
            for f in fields(views)
            if getattr(views, f.name) is not None
        },
    )


def resize_views(views: Views, size: tuple[int, int]) -> Views:
    image, intrinsics = crop_to_aspect_and_resize(views.image, views.intrinsics, size)
    return replace(views, image=image, intrinsics=intrinsics)


class TrainingClips(Dataset):
    """Item (scene position, seed) -> an Example at the training size with `targets` target views drawn
    from the clip. Clip and targets depend only on the seed; only the frames used are decoded."""

    def __init__(self, clips: ClipDataset, size: tuple[int, int], targets: int):
        self.clips, self.size, self.targets = clips, size, targets

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, item: tuple[int, int]) -> Example:
        position, seed = item
        key = self.clips.keys[position]
        rng = random.Random(seed)
        frames = self.clips.clip_indices(key, rng)
        targets = sorted(rng.sample(frames, self.targets))
        config = self.clips.config
        example = example_from_scene(
            self.clips.store[key], [frames[0], frames[-1]], targets, config.near, config.far
        )
        return Example(
            resize_views(example.context, self.size), resize_views(example.target, self.size), example.scene
        )


class StepBatches(Sampler):
    """Batches for steps [start, steps): (scene position, sample seed) of process p's share of every step's
    global batch; the scenes walk through a fresh permutation every epoch (`batch_indices`)."""

    def __init__(
        self,
        scenes: int,
        batch_size: int,
        seed: int,
        start: int,
        steps: int,
        process: int = 0,
        processes: int = 1,
    ):
        self.scenes, self.batch_size, self.seed = scenes, batch_size, seed
        self.start, self.steps, self.process, self.processes = start, steps, process, processes

    def __len__(self) -> int:
        return self.steps - self.start

    def __iter__(self):
        for step in range(self.start, self.steps):
            positions = batch_indices(
                self.scenes, self.batch_size, self.processes, self.process, step, self.seed
            )
            first = (
                step * self.processes + self.process
            ) * self.batch_size  # global number of the first sample
            yield [
                (position, derived_seed(self.seed, first + slot)) for slot, position in enumerate(positions)
            ]


def validation_examples(config: PriorTrainConfig) -> list[Example]:
    """Fixed clips of the held-out scenes (the first `validation_scenes`), at the training size."""
    if not config.validation_data:
        return []
    clips = ClipDataset(config.validation_data, config.clip_config, seed=config.seed, deterministic=True)
    examples = []
    for position in range(min(config.validation_scenes, len(clips))):
        example = clips[position]
        examples.append(
            Example(
                resize_views(example.context, config.image_size),
                resize_views(example.target, config.image_size),
                example.scene,
            )
        )
    return examples


# ----------------------------------------------------------------------------------------------
# Rendering, evaluation
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(
    model: GaussianEncoder, examples: list[Example], background: tuple[float, float, float], device
) -> dict[str, float]:
    """PSNR/SSIM of the prior's renders and of the nearest-context-view baseline on the interior targets
    (the clip ends are the context views themselves), averaged over views then scenes."""
    was_training = model.training
    model.eval()
    scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "baseline_psnr": [], "baseline_ssim": []}
    for example in examples:
        batch = collate_examples([example]).to(device)
        interior = torch.arange(1, batch.target.image.shape[1] - 1, device=device)
        batch = Example(batch.context, select_views(batch.target, interior), batch.scene)
        rendered = render_targets(model, batch, torch.tensor([background], device=device))
        baseline = nearest_context_images(batch)
        truth = batch.target.image
        scores["psnr"].append(psnr(rendered, truth).mean().item())
        scores["ssim"].append(ssim(rendered.clamp(0, 1), truth).mean().item())
        scores["baseline_psnr"].append(psnr(baseline, truth).mean().item())
        scores["baseline_ssim"].append(ssim(baseline, truth).mean().item())
    model.train(was_training)
    return {key: float(np.mean(values)) for key, values in scores.items()}


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


class PriorTrainer(Trainer):
    """The prior's model (the encoder), loss (photometric, on renders at the targets) and batches."""

    name, export_name, checkpoint_files = "prior", EXPORT_FILE, ("model",)

    def __init__(self, config: PriorTrainConfig, out: str | Path, resume: bool = False):
        super().__init__(config, LoopSettings.of(config), out, resume)

    def check_inputs(self) -> None:
        config = self.config
        if not config.train_data:
            raise VideoSceneError("no training data: set train_data in the config or pass --data DIR")
        multiple = config.encoder_config.size_multiple
        if config.image_size[0] % multiple or config.image_size[1] % multiple:
            raise VideoSceneError(
                f"training config: image_size {list(config.image_size)} must be multiples of "
                f"{multiple} for this encoder"
            )

    def build(self) -> Optimisation:
        config = self.config
        self.encoder = GaussianEncoder(config.encoder_config)
        optimizer = torch.optim.AdamW(
            self.encoder.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, config.lr_factor())
        return Optimisation(self.encoder, optimizer, list(self.encoder.parameters()), scheduler)

    def identity(self) -> dict[str, Any]:
        return {"encoder_config": self.config.encoder_config.to_dict()}

    def load_data(self) -> None:
        config, accelerator = self.config, self.accelerator
        device = accelerator.device
        self.loss_fn = PhotometricLoss(config.loss_config).to(device)
        self.background = torch.tensor(config.background, device=device).expand(config.batch_size, 3)
        clips = ClipDataset(config.train_data, config.clip_config, seed=config.seed)
        sampler = StepBatches(
            len(clips),
            config.batch_size,
            config.seed,
            self.step,
            config.steps,
            accelerator.process_index,
            accelerator.num_processes,
        )
        loader = DataLoader(
            TrainingClips(clips, config.image_size, config.targets_per_step),
            batch_sampler=sampler,
            collate_fn=collate_examples,
            num_workers=config.num_workers,
        )
        self.batches = iter(loader)
        self.held_out = validation_examples(config) if accelerator.is_main_process else []

    def loss(self, generator: torch.Generator) -> tuple[Tensor, dict[str, Any]]:
        batch = next(self.batches).to(self.accelerator.device)  # the sampler's batch of this step
        rendered = render_targets(self.model, batch, self.background)
        terms = self.loss_fn(rendered.float(), batch.target.image)
        record = {key: value.detach() for key, value in terms.items() if key != "total"}
        record["train_psnr"] = -10 * math.log10(max(record["mse"].item(), 1e-10))
        return terms["total"], record

    def validate(self, final: bool) -> dict[str, Any] | None:
        if not self.held_out:
            return None
        scores = evaluate(self.encoder, self.held_out, self.config.background, self.accelerator.device)
        logger.info(
            "step %d validation: PSNR %.2f dB (nearest context view %.2f dB), SSIM %.3f (%.3f)",
            self.step,
            scores["psnr"],
            scores["baseline_psnr"],
            scores["ssim"],
            scores["baseline_ssim"],
        )
        return scores

    def checkpoint_tensors(self) -> dict[str, dict[str, Tensor]]:
        return {"model": self.encoder.state_dict()}

    def restore(self, tensors: dict[str, dict[str, Tensor]], state: dict[str, Any], folder: Path) -> None:
        load_state(self.encoder, tensors["model"], folder / "model.safetensors", "checkpoint weights")

    def export(self, summary: dict[str, Any], validation: dict[str, Any] | None) -> dict[str, Any]:
        self.encoder.save(self.out)
        logger.info("wrote %s and %s", self.out / EXPORT_FILE, self.out / "prior_config.json")
        return {**summary, **(validation or {})}


def train_prior(
    config: PriorTrainConfig, out: str | Path, resume: bool = False, stop_after: int | None = None
) -> dict:
    """Train (or resume) a prior; returns the step reached and the last validation scores. `stop_after` ends
    this call after that many steps (checkpointing first), e.g. to train in time slices."""
    with torch_threads(config.num_threads):
        return PriorTrainer(config, out, resume).train(stop_after)


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def _split_folders(paths: list[str], role: str) -> tuple[list[str], list[str]]:
    """A --data DIR is a split folder (has index.json) or a dataset root with train/ (and maybe test/)."""
    train, test = [], []
    for path in map(Path, paths):
        if (path / "index.json").is_file():
            train.append(str(path))
        elif (path / "train" / "index.json").is_file():
            train.append(str(path / "train"))
            if (path / "test" / "index.json").is_file():
                test.append(str(path / "test"))
        else:
            raise VideoSceneError(
                f"{role} folder {path} holds neither index.json nor train/index.json; is it a "
                "RealEstate10K-format dataset?"
            )
    return train, test


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(
        parser,
        "configs/prior_tiny.json",
        "training data: split folders, or dataset roots whose test/ split becomes validation data",
        "held-out split folders for validation PSNR (overrides the config)",
    )
    parser.add_argument("--seed", type=arguments.seed, help="override the seed")


def run(args: argparse.Namespace) -> None:
    config = PriorTrainConfig.load(args.config)
    changes = {}
    if args.data:
        train, test = _split_folders(args.data, "--data")
        changes["train_data"] = train
        if test and not args.val_data:
            changes["validation_data"] = test
    if args.val_data:
        changes["validation_data"] = _split_folders(args.val_data, "--val-data")[0]
    if args.seed is not None:
        changes["seed"] = args.seed
    run_training(args, config, changes, train_prior)
