"""`videoscene train prior`: train the feed-forward Gaussian prior on RealEstate10K-format chunks.

Each step renders the predicted Gaussians at a random subset of a clip's target cameras and minimises
MSE + λ·(1 − SSIM) [+ λ_lpips·LPIPS] against the real frames. Built on `accelerate` (one CPU process, or
one process per GPU with `accelerate launch`), AdamW with linear warm-up then cosine decay, gradient clipping.

Determinism and resuming: the clip, its stride and the target subset of every sample are a pure function
of (seed, global sample number), so a run resumed from a checkpoint sees exactly the batches the
uninterrupted run would have seen. Checkpoints are folders OUT/checkpoints/step_NNNNNNN holding
model.safetensors, optimizer.safetensors (state tensors; hyper-parameters as metadata) and state.json (step, scheduler);
each is built aside and renamed into place, so a crash never leaves a half-written checkpoint. Nothing is
pickled. The final export is OUT/prior.safetensors + OUT/prior_config.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from jaxtyping import Int
from safetensors.torch import save_file
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from videoscene import arguments
from videoscene.data.dataset import ClipDataset, ClipSamplerConfig, collate_examples, example_from_scene
from videoscene.errors import VideoSceneError
from videoscene.geometry.image_ops import crop_to_aspect_and_resize
from videoscene.io_utils import (
    check_output_location,
    load_safetensors,
    load_state,
    read_json_object,
    staged_output_dir,
    write_json_atomic,
)
from videoscene.metrics.image import psnr, ssim
from videoscene.prior.config import EncoderConfig, encoder_config
from videoscene.prior.encoder import GaussianEncoder
from videoscene.prior.losses import PhotometricLoss, PhotometricLossConfig
from videoscene.prior.render import nearest_context_images, render_targets
from videoscene.training import (
    CHECKPOINTS,
    add_training_arguments,
    append_jsonl,
    checkpoint_folders,
    config_from_dict,
    config_to_dict,
    load_optimizer,
    read_checkpoint_state,
    remove_old_checkpoints,
    resume_latest,
    run_training,
    save_optimizer,
    torch_threads,
    trim_log,
    warmup_cosine,
)
from videoscene.types import Example, Views

logger = logging.getLogger(__name__)



@dataclass
class PriorTrainConfig:
    """Everything a training run depends on; stored as JSON beside its outputs."""

    encoder: str | dict = "tiny"  # preset name, path of an EncoderConfig JSON, or the config itself
    train_data: list[str] = field(default_factory=list)  # split folders (holding index.json)
    validation_data: list[str] = field(default_factory=list)  # held-out split folders; empty: no validation
    image_size: tuple[int, int] = (64, 96)  # (height, width); frames are centre-cropped to the aspect and resized
    num_frames: int = 9  # frames per clip (8k+1): the two ends are the context views
    min_stride: int = 1
    max_stride: int = 2
    near: float = 0.5
    far: float = 20.0
    targets_per_step: int = 2  # target views rendered per sample, drawn from the clip's frames
    batch_size: int = 2  # per process
    steps: int = 2000
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # the cosine decays to lr · min_lr_ratio
    grad_clip: float = 0.5
    ssim_weight: float = 0.1
    lpips_weight: float = 0.05
    lpips_weights: list[str] = field(default_factory=list)  # LPIPS weight files; empty: no LPIPS term
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    seed: int = 0
    num_workers: int = 0
    num_threads: int | None = None  # torch CPU threads (None: torch's default)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"  # accelerate
    log_every: int = 10
    validate_every: int = 250
    validation_scenes: int = 8
    checkpoint_every: int = 250
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        self.image_size = tuple(self.image_size)
        self.background = tuple(self.background)
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise VideoSceneError(f"training config: image_size must be [height, width], got {list(self.image_size)}")
        if not 1 <= self.targets_per_step <= self.num_frames:
            raise VideoSceneError(f"training config: targets_per_step must be between 1 and num_frames ({self.num_frames})")
        for name in ("batch_size", "steps", "log_every", "validate_every", "checkpoint_every", "keep_checkpoints", "validation_scenes"):
            if getattr(self, name) < 1:
                raise VideoSceneError(f"training config: {name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.grad_clip <= 0 or not 0 <= self.min_lr_ratio <= 1 or self.warmup_steps < 0:
            raise VideoSceneError("training config: need lr > 0, grad_clip > 0, warmup_steps >= 0 and 0 <= min_lr_ratio <= 1")
        ClipSamplerConfig(self.num_frames, self.min_stride, self.max_stride, self.near, self.far)  # validates those

    @property
    def encoder_config(self) -> EncoderConfig:
        return EncoderConfig.from_dict(self.encoder) if isinstance(self.encoder, dict) else encoder_config(self.encoder)

    @property
    def loss_config(self) -> PhotometricLossConfig:
        return PhotometricLossConfig(self.ssim_weight, self.lpips_weight, list(self.lpips_weights))

    @property
    def clip_config(self) -> ClipSamplerConfig:
        return ClipSamplerConfig(self.num_frames, self.min_stride, self.max_stride, self.near, self.far)

    def to_dict(self) -> dict:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PriorTrainConfig":
        return config_from_dict(cls, data, "training config")

    @classmethod
    def load(cls, path: str | Path) -> "PriorTrainConfig":
        return cls.from_dict(read_json_object(path, "training config"))


# ----------------------------------------------------------------------------------------------
# Data: every sample is a pure function of (seed, global sample number)
# ----------------------------------------------------------------------------------------------


_SAMPLE_STREAM, _EPOCH_STREAM = 0, 1


def derived_seed(seed: int, stream: int, number: int) -> int:
    """A 63-bit seed for item `number` of a stream (samples, epoch permutations), independent across items."""
    return int(np.random.SeedSequence([seed, stream, number]).generate_state(1, dtype=np.uint64)[0] >> 1)


def select_views(views: Views, chosen: Int[Tensor, "k"]) -> Views:
    """The views at positions `chosen` of batched views [B, V, ...]."""
    return replace(views, **{f.name: getattr(views, f.name)[:, chosen] for f in fields(views) if getattr(views, f.name) is not None})


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
        example = example_from_scene(self.clips.store[key], [frames[0], frames[-1]], targets, config.near, config.far)
        return Example(resize_views(example.context, self.size), resize_views(example.target, self.size), example.scene)


class StepBatches(Sampler):
    """Batches for steps [start, steps): process p of n takes global samples (step·n + p)·batch + slot,
    which walk through a fresh permutation of the scenes every epoch."""

    def __init__(self, scenes: int, batch_size: int, seed: int, start: int, steps: int, process: int = 0, processes: int = 1):
        self.scenes, self.batch_size, self.seed = scenes, batch_size, seed
        self.start, self.steps, self.process, self.processes = start, steps, process, processes

    def __len__(self) -> int:
        return self.steps - self.start

    def _permutation(self, epoch: int) -> Tensor:
        return torch.randperm(self.scenes, generator=torch.Generator().manual_seed(derived_seed(self.seed, _EPOCH_STREAM, epoch)))

    def __iter__(self):
        cached_epoch, permutation = -1, None
        for step in range(self.start, self.steps):
            batch = []
            for slot in range(self.batch_size):
                number = (step * self.processes + self.process) * self.batch_size + slot
                epoch, within = divmod(number, self.scenes)
                if epoch != cached_epoch:
                    cached_epoch, permutation = epoch, self._permutation(epoch)
                batch.append((int(permutation[within]), derived_seed(self.seed, _SAMPLE_STREAM, number)))
            yield batch


def validation_examples(config: PriorTrainConfig) -> list[Example]:
    """Fixed clips of the held-out scenes (the first `validation_scenes`), at the training size."""
    if not config.validation_data:
        return []
    clips = ClipDataset(config.validation_data, config.clip_config, seed=config.seed, deterministic=True)
    examples = []
    for position in range(min(config.validation_scenes, len(clips))):
        example = clips[position]
        examples.append(Example(resize_views(example.context, config.image_size), resize_views(example.target, config.image_size), example.scene))
    return examples


# ----------------------------------------------------------------------------------------------
# Rendering, evaluation
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model: GaussianEncoder, examples: list[Example], background: tuple[float, float, float], device) -> dict[str, float]:
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
# Schedule and checkpoints
# ----------------------------------------------------------------------------------------------


def save_checkpoint(out: Path, step: int, model: GaussianEncoder, optimizer: torch.optim.Optimizer, scheduler, config: PriorTrainConfig) -> Path:
    """Write OUT/checkpoints/step_NNNNNNN atomically, then keep only the newest `keep_checkpoints`."""
    target = out / CHECKPOINTS / f"step_{step:07d}"
    with staged_output_dir(target, overwrite=True) as stage:
        save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(stage / "model.safetensors"))
        save_optimizer(stage / "optimizer.safetensors", optimizer)
        state = {
            "step": step,
            "scheduler": scheduler.state_dict(),
            "train_config": config.to_dict(),
            "encoder_config": config.encoder_config.to_dict(),
        }
        (stage / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    remove_old_checkpoints(out, config.keep_checkpoints)
    return target


def load_checkpoint(folder: Path, model: GaussianEncoder, optimizer: torch.optim.Optimizer, scheduler, config: PriorTrainConfig) -> int:
    """Restore model, optimiser and scheduler from a checkpoint folder; returns its step."""
    state = read_checkpoint_state(folder, ("step", "scheduler", "encoder_config"))
    model_state = load_safetensors(folder / "model.safetensors", "checkpoint weights")
    if EncoderConfig.from_dict(state["encoder_config"]) != config.encoder_config:
        raise VideoSceneError(f"checkpoint {folder} was trained with a different encoder config; resume with the same --config")
    load_state(model, model_state, folder / "model.safetensors", "checkpoint weights")
    load_optimizer(folder / "optimizer.safetensors", optimizer)
    scheduler.load_state_dict(state["scheduler"])
    return int(state["step"])


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def train_prior(config: PriorTrainConfig, out: str | Path, resume: bool = False, stop_after: int | None = None) -> dict:
    """Train (or resume) a prior; returns the last validation scores and the step reached. `stop_after`
    ends this call after that many steps (checkpointing first), e.g. to train in time slices."""
    with torch_threads(config.num_threads):
        return _train(config, Path(out), resume, stop_after)


def _train(config: PriorTrainConfig, out: Path, resume: bool, stop_after: int | None) -> dict:
    # 1. Check inputs and the output folder.
    if not config.train_data:
        raise VideoSceneError("no training data: set train_data in the config or pass --data DIR")
    multiple = config.encoder_config.size_multiple
    if config.image_size[0] % multiple or config.image_size[1] % multiple:
        raise VideoSceneError(f"training config: image_size {list(config.image_size)} must be multiples of {multiple} for this encoder")
    check_output_location(out)
    existing = checkpoint_folders(out)
    if not resume and (existing or (out / "prior.safetensors").exists()):
        raise VideoSceneError(f"{out} already holds a training run; pass --resume to continue it or choose another --out")

    # 2. Model, optimiser, schedule (identical initial weights for a seed).
    accelerator = Accelerator(mixed_precision=config.mixed_precision)
    set_seed(config.seed)
    model = GaussianEncoder(config.encoder_config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(config.warmup_steps, config.steps, config.min_lr_ratio))
    start = 0
    if resume:
        resumed = resume_latest(out, lambda folder: load_checkpoint(folder, model, optimizer, scheduler, config))
        if resumed is None:
            logger.info("no usable checkpoint in %s; starting from step 0", out)
        else:
            start = resumed[0]
            logger.info("resuming from %s (step %d)", resumed[1], start)
        for log in ("train_log.jsonl", "validation.jsonl"):
            trim_log(out / log, start)
    if start >= config.steps and (out / "prior.safetensors").exists():
        logger.info("training already finished at step %d", start)
        return {"step": start}
    # The scheduler is stepped by hand once per optimiser step (accelerate would step it once per process).
    model, optimizer = accelerator.prepare(model, optimizer)
    device = accelerator.device
    loss_fn = PhotometricLoss(config.loss_config).to(device)
    background = torch.tensor(config.background, device=device).expand(config.batch_size, 3)

    # 3. Data (checked before anything is written).
    end = config.steps if stop_after is None else min(config.steps, start + stop_after)
    clips = ClipDataset(config.train_data, config.clip_config, seed=config.seed)
    sampler = StepBatches(len(clips), config.batch_size, config.seed, start, end, accelerator.process_index, accelerator.num_processes)
    loader = DataLoader(
        TrainingClips(clips, config.image_size, config.targets_per_step),
        batch_sampler=sampler,
        collate_fn=collate_examples,
        num_workers=config.num_workers,
    )
    held_out = validation_examples(config) if accelerator.is_main_process else []
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "train_config.json", config.to_dict())

    # 4. Optimise.
    step, last_scores = start, {}
    progress = tqdm(total=config.steps, initial=start, desc="train prior", disable=not accelerator.is_local_main_process)
    step_seconds = 0.0  # time in training steps only (not validation or checkpoints)
    for batch in loader:
        tic = time.perf_counter()
        batch = batch.to(device)
        with accelerator.autocast():
            rendered = render_targets(model, batch, background)
            terms = loss_fn(rendered.float(), batch.target.image)
        accelerator.backward(terms["total"])
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        step_seconds += time.perf_counter() - tic
        progress.update(1)

        if step % config.log_every == 0 or step == end:
            record = {k: round(v.item(), 6) for k, v in terms.items()}
            record.update(step=step, lr=scheduler.get_last_lr()[0], grad_norm=round(float(grad_norm), 4),
                          seconds_per_step=round(step_seconds / (step - start), 4))
            progress.set_postfix(loss=f"{record['total']:.4f}", psnr=f"{-10 * math.log10(max(record['mse'], 1e-10)):.2f}")
            if accelerator.is_main_process:
                append_jsonl(out / "train_log.jsonl", record)
        if held_out and (step % config.validate_every == 0 or step == config.steps):
            last_scores = evaluate(accelerator.unwrap_model(model), held_out, config.background, device)
            logger.info("step %d validation: PSNR %.2f dB (nearest context view %.2f dB), SSIM %.3f (%.3f)", step,
                        last_scores["psnr"], last_scores["baseline_psnr"], last_scores["ssim"], last_scores["baseline_ssim"])
            append_jsonl(out / "validation.jsonl", {"step": step, **last_scores})
        if step % config.checkpoint_every == 0 or step == end:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(out, step, accelerator.unwrap_model(model), optimizer, scheduler, config)
    progress.close()

    # 5. Export the final prior.
    accelerator.wait_for_everyone()
    if step >= config.steps and accelerator.is_main_process:
        accelerator.unwrap_model(model).save(out)
        logger.info("wrote %s and %s", out / "prior.safetensors", out / "prior_config.json")
    return {"step": step, **last_scores}


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
            raise VideoSceneError(f"{role} folder {path} holds neither index.json nor train/index.json; is it a RealEstate10K-format dataset?")
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
