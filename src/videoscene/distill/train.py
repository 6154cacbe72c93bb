"""`videoscene train distill`: 3D-aware leap flow distillation of the one-step student, with DDPNet alongside.

    videoscene train distill --config configs/distill_tiny.json --out outputs/distill_tiny \
        [--resume] [--no-leap]

Per step (the paper's §3.3), on the shared training loop (`videoscene.training.loop`): a batch of cached clips
(distill/cache.py), t_{n+1} and ε drawn from the step's generator, the loss of Eq. 6 (distill/leap.py), an
AdamW step on the trainable subset of the student, the EMA update of the target θ⁻, and, during the first
`policy.train_steps` steps, one bandit update of DDPNet whose reward is the (gradient-free) one-step student
result against the ground-truth latent. Every draw and the batch order are functions of the step, so a run
resumed from a checkpoint continues exactly as the uninterrupted run would have.

Output folder:
    student/                VideoBackbone folder of the one-step student (save_pretrained)
    ddpnet.safetensors      the timestep policy (when trained)
    distill_config.json     the config the run used
    run.json                caches used, last validation, step count
    train_log.jsonl, validation.jsonl, validation/step_NNNNNNN.mp4 (ground truth | coarse | student)
    checkpoints/step_NNNNNNN/  trainable student and target weights, DDPNet, optimizer states, state.json
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from videoscene.data.dataset import ClipSamplerConfig
from videoscene.distill.cache import ClipCache, build_cache, clip_generator, frames_to_float
from videoscene.distill.config import DistillConfig
from videoscene.distill.leap import (
    LatentBatch,
    draw_leap,
    ema_update,
    latent_mse,
    leap_distillation_loss,
    one_step_generate,
    timestep_grid,
)
from videoscene.distill.student import CONFIG_FILE, STUDENT_FOLDER, start_timestep
from videoscene.errors import LoadError, VideoSceneError
from videoscene.image_io import write_mp4
from videoscene.io_utils import load_state, read_json_object
from videoscene.metrics.image import psnr
from videoscene.policy.ddpnet import WEIGHTS_FILE as DDPNET_FILE
from videoscene.policy.ddpnet import BanditTrainer, DDPNet, DDPNetConfig, RewardStatistics, disagreement_scale
from videoscene.training.checkpoints import module_fingerprint
from videoscene.training.cli import add_training_arguments, output_folder
from videoscene.training.loop import LoopSettings, Optimisation, Trainer, check_new_run, torch_threads
from videoscene.training.processes import process_state
from videoscene.training.randomness import batch_indices
from videoscene.video.models import VelocityModel, VideoBackbone, trainable_parameter_names
from videoscene.video.schedule import NoiseSchedule

logger = logging.getLogger(__name__)


def copy_backbone(teacher: VideoBackbone) -> VideoBackbone:
    """A copy of the teacher's transformer and prompt that shares its (frozen) VAE: the student starts as the
    teacher (LCM practice; the paper does not say)."""
    return VideoBackbone(
        teacher.config,
        teacher.vae,
        copy.deepcopy(teacher.transformer),
        copy.deepcopy(teacher.prompt_embedding),
    )


class DistillTrainer(Trainer):
    """Student θ (trained), target θ⁻ (its EMA), frozen teacher φ and DDPNet ψ on the shared loop: the loss of
    Eq. 6 per step, then the EMA update and DDPNet's bandit update (`after_step`)."""

    name, export_name = "distill", STUDENT_FOLDER

    def __init__(
        self,
        config: DistillConfig,
        teacher: VideoBackbone,
        train_cache: ClipCache,
        val_cache: ClipCache | None,
        out_dir: str | Path,
        resume: bool = False,
    ):
        self.teacher, self.train_cache, self.val_cache = teacher, train_cache, val_cache
        train = config.train
        settings = LoopSettings(
            train.steps,
            train.seed,
            train.max_grad_norm,
            train.checkpoint_every,
            train.keep_checkpoints,
            train.validate_every,
            mixed_precision=train.mixed_precision,
        )
        super().__init__(config, settings, out_dir, resume)

    @property
    def checkpoint_files(self) -> tuple[str, ...]:
        return ("student", "target", *(("ddpnet",) if self.bandit is not None else ()))

    def check_inputs(self) -> None:
        """The caches must hold latents of this video model's size."""
        config = self.teacher.config
        expected = (config.latent_frames, config.latent_channels, config.latent_height, config.latent_width)
        for name, cache in (("training", self.train_cache), ("validation", self.val_cache)):
            if cache is not None and tuple(cache.latent_shape) != expected:
                raise VideoSceneError(
                    f"{name} cache {cache.folder} holds latents {tuple(cache.latent_shape)}, the "
                    "teacher makes "
                    f"{expected}; rebuild the cache with this teacher"
                )

    def build(self) -> Optimisation:
        # Frozen teacher φ; student θ and target θ⁻ start as copies of it.
        config, train, device = self.config, self.config.train, self.accelerator.device
        self.teacher = self.teacher.to(device).eval().requires_grad_(False)
        self.schedule = NoiseSchedule(self.teacher.config.schedule)
        self.student, self.target = copy_backbone(self.teacher), copy_backbone(self.teacher)
        self.trainable_names = trainable_parameter_names(self.student.transformer, train.trainable)
        student_parameters = dict(self.student.transformer.named_parameters())
        target_parameters = dict(self.target.transformer.named_parameters())
        trainable = [student_parameters[name].requires_grad_(True) for name in self.trainable_names]
        self.target_trainable = [target_parameters[name] for name in self.trainable_names]
        if train.gradient_checkpointing:
            self.student.transformer.enable_gradient_checkpointing()
        logger.info(
            "student: %d of %d transformer parameters trainable (%s)",
            sum(p.numel() for p in trainable),
            sum(p.numel() for p in student_parameters.values()),
            train.trainable,
        )
        optimizer = torch.optim.AdamW(
            trainable,
            lr=train.learning_rate,
            betas=train.adam_betas,
            eps=train.adam_epsilon,
            weight_decay=train.weight_decay,
        )

        # DDPNet ψ (only with the leap: without it the student starts from pure noise).
        self.bandit: BanditTrainer | None = None
        if config.trains_policy:
            latent = self.teacher.config
            net_config = DDPNetConfig.from_policy(config.policy, latent.latent_frames, latent.latent_channels)
            if config.policy.view_disagreement:
                net_config = replace(net_config, disagreement_scale=disagreement_scale(self.train_cache))
            self.bandit = BanditTrainer(DDPNet(net_config).to(device), config.policy)
        elif config.leap.no_leap:
            logger.info("no leap: DDPNet is not trained (the student starts from pure noise)")
        self.grid = timestep_grid(self.schedule, config.leap)
        self.teacher_fingerprint = module_fingerprint(self.teacher.transformer)
        return Optimisation(VelocityModel(self.student), optimizer, trainable)

    def identity(self) -> dict[str, Any]:
        # Frozen student weights come from the teacher on resume: it must be the same teacher.
        config = self.config
        return {
            "leap": asdict(config.leap),
            "policy": asdict(config.policy),
            "trainable": config.train.trainable,
            "teacher": self.teacher_fingerprint,
        }

    def write_config(self) -> None:
        self.config.save_json(self.out / CONFIG_FILE)

    # -- one step --------------------------------------------------------------------------------------------
    def loss(self, generator: torch.Generator) -> tuple[Tensor, dict[str, Any]]:
        config, accelerator = self.config, self.accelerator
        indices = batch_indices(
            len(self.train_cache),
            config.train.batch_size,
            accelerator.num_processes,
            accelerator.process_index,
            self.step,
            config.train.seed,
        )
        self.batch = self.train_cache.latent_batch(indices, frames=config.leap.scores_pixels).to(
            accelerator.device
        )
        draw = draw_leap(self.grid, self.batch.latents, generator)
        loss = leap_distillation_loss(
            self.model, self.target.predict_v, self.teacher, self.schedule, self.batch, draw, config.leap
        ).loss
        return loss, {"t_mean": draw.start_timesteps.float().mean()}

    def after_step(self, generator: torch.Generator) -> dict[str, Any]:
        """θ⁻ ← μθ⁻ + (1−μ)θ; then, during the first `policy.train_steps` steps, one bandit update of DDPNet
        against the current student, no gradient between them, on the student's batch or on
        `clips_per_step` clips of its own. Each clip is pulled `pulls_per_clip` times (independent actions and
        noise): more reward samples per student step."""
        config, accelerator = self.config, self.accelerator
        ema_update(self.target_trainable, self.trainable, config.train.ema_decay)
        if self.bandit is None or self.step >= config.policy.train_steps:
            return {}
        policy, bandit_batch = config.policy, self.batch
        if policy.clips_per_step is not None:
            count = min(policy.clips_per_step, len(self.train_cache))
            bandit_indices = torch.randperm(len(self.train_cache), generator=generator)[:count].tolist()
            bandit_batch = self.train_cache.latent_batch(bandit_indices).to(accelerator.device)
        clip_of_pull = torch.arange(bandit_batch.latents.shape[0]).repeat_interleave(policy.pulls_per_clip)
        pulled = bandit_batch.index(clip_of_pull)

        def reward(timesteps: Tensor) -> Tensor:
            noise = torch.randn(pulled.latents.shape, generator=generator).to(accelerator.device)
            with accelerator.autocast():
                result = one_step_generate(
                    self.student.predict_v,
                    self.schedule,
                    pulled.render_latents,
                    pulled.condition_latents,
                    timesteps,
                    noise,
                    config.leap,
                )
            return -latent_mse(result, pulled.latents)

        self.student.eval()
        outcome = self.bandit.step(
            pulled.render_latents,
            reward,
            generator,
            self._average_gradients,
            gather_rewards=self.accelerator.gather,
            groups=clip_of_pull,
            disagreement=pulled.view_disagreement,
        )
        return {
            "ddpnet_reward": outcome.rewards.mean(),
            "ddpnet_baseline": outcome.baseline,
            "ddpnet_entropy": outcome.entropy,
            "ddpnet_t_mean": outcome.timesteps.float().mean(),
        }

    def _average_gradients(self, module: nn.Module) -> None:
        """DDPNet is not wrapped by accelerate (it is small): average its gradients across processes by
        hand."""
        if self.accelerator.num_processes == 1:
            return
        for parameter in module.parameters():
            if parameter.grad is not None:
                parameter.grad.copy_(self.accelerator.reduce(parameter.grad, "mean"))

    # -- validation ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, final: bool) -> dict[str, Any] | None:
        """One-step student on held-out cached clips: latent MSE to x₀ and, with frames, PSNR of the decoded
        video and of the coarse render against the ground truth. Writes validation/step_NNNNNNN.mp4 for the
        first
        clip."""
        cache = self.val_cache
        if cache is None:
            return None
        device = self.accelerator.device
        self.student.eval()
        records = []
        for index in range(min(self.config.train.validation_clips, len(cache))):
            clip = cache[index]
            batch = LatentBatch(
                clip.render_latents[None],
                clip.latents[None],
                clip.condition_latents[None],
                clip.view_disagreement[None],
            ).to(device)
            timestep = self.policy_timestep(batch.render_latents, batch.view_disagreement)
            noise = torch.randn(
                batch.latents.shape, generator=clip_generator(self.config.train.seed, index)
            ).to(device)
            result = one_step_generate(
                self.student.predict_v,
                self.schedule,
                batch.render_latents,
                batch.condition_latents,
                timestep,
                noise,
                self.config.leap,
            )
            record = {
                "clip": index,
                "t": int(timestep[0]),
                "latent_mse": latent_mse(result, batch.latents).item(),
            }
            if clip.target_frames is not None:
                video = self.student.decode_latents(result)[0].cpu()
                target, coarse = frames_to_float(clip.target_frames), frames_to_float(clip.render_frames)
                record.update(
                    psnr=psnr(video, target).mean().item(), coarse_psnr=psnr(coarse, target).mean().item()
                )
                if index == 0:
                    write_mp4(
                        self.out / "validation" / f"step_{self.step:07d}.mp4",
                        torch.cat([target, coarse, video], dim=-1),
                    )
            records.append(record)
        summary = {key: float(np.mean([r[key] for r in records])) for key in records[0] if key != "clip"}
        logger.info(
            "validation step %d: %s", self.step, ", ".join(f"{k}={v:.4g}" for k, v in summary.items())
        )
        return {**summary, "clips": records}

    def policy_timestep(self, render_latents: Tensor, disagreement: Tensor | None = None) -> Tensor:
        """DDPNet's greedy t when it exists, else the configured fixed validation t (T−1 without the leap)."""
        return start_timestep(
            None if self.bandit is None else self.bandit.net.eval(),
            self.config.train.validation_timestep,
            self.config.leap.no_leap,
            self.schedule.num_train_timesteps,
            render_latents,
            disagreement,
        )

    # -- checkpoints and export ------------------------------------------------------------------------------
    def checkpoint_tensors(self) -> dict[str, dict[str, Tensor]]:
        student = dict(self.student.transformer.named_parameters())
        target = dict(self.target.transformer.named_parameters())
        tensors = {
            "student": {n: student[n] for n in self.trainable_names},
            "target": {n: target[n] for n in self.trainable_names},
        }
        if self.bandit is not None:
            tensors["ddpnet"] = self.bandit.net.state_dict()
        return tensors

    def restore(self, tensors: dict[str, dict[str, Tensor]], state: dict[str, Any], folder: Path) -> None:
        for name in ("student", "target"):
            if any(key not in tensors[name] for key in self.trainable_names):
                raise LoadError(
                    f"checkpoint {folder}: {name}.safetensors lacks trainable parameters of this student"
                )
        with torch.no_grad():
            for module, name in ((self.student, "student"), (self.target, "target")):
                parameters = dict(module.transformer.named_parameters())
                for key in self.trainable_names:
                    parameters[key].copy_(tensors[name][key].to(parameters[key].device))
        if self.bandit is not None:
            load_state(self.bandit.net, tensors["ddpnet"], folder / DDPNET_FILE, "checkpoint weights")
            try:
                self.bandit.statistics = RewardStatistics(**state["reward_statistics"])
            except (KeyError, TypeError):
                raise LoadError(f"checkpoint {folder}: state.json lacks DDPNet's reward statistics") from None

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        if self.bandit is None:
            return {"optimizer": self.optimizer}
        return {"optimizer": self.optimizer, "ddpnet_optimizer": self.bandit.optimizer}

    def checkpoint_state(self) -> dict[str, Any]:
        return {"reward_statistics": asdict(self.bandit.statistics)} if self.bandit is not None else {}

    def export(self, summary: dict[str, Any], validation: dict[str, Any] | None) -> dict[str, Any]:
        """student/ (VideoBackbone folder) and ddpnet.safetensors, each written atomically."""
        self.student.save_pretrained(self.out / STUDENT_FOLDER, overwrite=True)
        if self.bandit is not None:
            self.bandit.net.save(self.out / DDPNET_FILE)
        logger.info("student written to %s", self.out / STUDENT_FOLDER)
        return {
            **summary,
            "no_leap": self.config.leap.no_leap,
            "train_cache": str(self.train_cache.folder),
            "val_cache": str(self.val_cache.folder) if self.val_cache is not None else None,
            "validation": {k: v for k, v in validation.items() if k != "clips"} if validation else None,
        }


# -- caches and CLI ------------------------------------------------------------------------------------------
def prepare_caches(config: DistillConfig, teacher: VideoBackbone) -> tuple[ClipCache, ClipCache | None]:
    """Open the prebuilt caches named in the config, or build (or reuse) them with the trained prior."""
    data = config.data
    prior, background = None, (0.0, 0.0, 0.0)
    if data.needs_prior:
        from videoscene.prior.encoder import GaussianEncoder

        prior = GaussianEncoder.load(config.prior).to(teacher.device)
        # Render on the background the prior was trained with (its train_config.json), as the pipeline does.
        prior_train_config = Path(config.prior) / "train_config.json"
        if prior_train_config.is_file():
            background = tuple(
                read_json_object(prior_train_config, "the prior's training config").get(
                    "background", background
                )
            )
    sampler = ClipSamplerConfig(data.num_frames, data.min_stride, data.max_stride, data.near, data.far)

    def open_or_build(folder, dirs, name, clips_per_scene, max_clips):
        if folder is not None:
            return ClipCache(folder)
        if not dirs:
            return None
        return build_cache(
            data.cache_dir,
            name,
            dirs,
            sampler,
            prior,
            teacher,
            data.seed,
            clips_per_scene,
            max_clips,
            data.store_frames,
            background,
        )

    train = open_or_build(
        data.train_cache, data.train_dirs, "train", data.clips_per_scene, data.max_train_clips
    )
    val = open_or_build(data.val_cache, data.val_dirs, "val", 1, data.max_val_clips)
    return train, val


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(
        parser,
        "configs/distill_tiny.json",
        "training split folders (override data.train_dirs)",
        "held-out split folders (override data.val_dirs)",
    )
    parser.add_argument(
        "--no-leap",
        action="store_true",
        help="the paper's ablation: consistency distillation from noised ground truth",
    )


def run(args: argparse.Namespace) -> None:
    config = DistillConfig.load_json(args.config)
    if args.no_leap:
        config = config.with_no_leap()
    changes = {
        key: tuple(value)
        for key, value in (("train_dirs", args.data), ("val_dirs", args.val_data))
        if value is not None
    }
    if changes:
        config = replace(config, data=replace(config.data, **changes))
    if args.steps is not None:
        config = replace(config, train=replace(config.train, steps=args.steps))
    out = output_folder(args)
    check_new_run(out, args.resume)  # before the teacher and the caches, which take a while
    processes = process_state()
    with torch_threads(config.train.num_threads):
        teacher = VideoBackbone.from_pretrained(config.teacher, prompt_embeds_path=config.prompt_embeds).to(
            processes.device
        )
        with processes.main_process_first():  # the main process builds the caches, the others reuse them
            train_cache, val_cache = prepare_caches(config, teacher)
        summary = DistillTrainer(config, teacher, train_cache, val_cache, out, resume=args.resume).train(
            args.stop_after
        )
    logger.info("distillation finished: %s", json.dumps(summary.get("validation")))
