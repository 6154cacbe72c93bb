"""`videoscene train distill`: 3D-aware leap flow distillation of the one-step student, with DDPNet alongside.

    videoscene train distill --config configs/distill_tiny.json --out runs/distill_tiny [--resume] [--no-leap]

Per step (PAPER.md §1.4): a batch of cached clips (distill/cache.py), t_{n+1} and ε drawn from a generator
seeded by (seed, step), the loss of Eq. 6 (distill/leap.py), an AdamW step on the trainable subset of the
student, the EMA update of the target θ⁻, and, during the first `policy.train_steps` steps, one bandit update
of DDPNet whose reward is the (gradient-free) one-step student result against the ground-truth latent.
Because every draw and the batch order are functions of the step, a run resumed from a checkpoint continues
exactly as the uninterrupted run would have.

Output folder:
    student/                VideoBackbone folder of the one-step student (save_pretrained)
    ddpnet.safetensors      the timestep policy (when trained)
    distill_config.json     the config the run used
    run.json                caches used, last validation, step count
    train_log.jsonl, validation.jsonl, validation/step_XXXXXX.mp4 (ground truth | coarse | student)
    checkpoints/step_XXXXXX/  trainable student and target weights, optimizer states, DDPNet, state.json
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import re
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import save_file
from torch import Tensor, nn
from tqdm import tqdm

from videoscene.data.dataset import ClipSamplerConfig
from videoscene.distill.cache import (
    ClipCache,
    build_cache,
    clip_generator,
    frames_to_float,
    module_fingerprint,
)
from videoscene.distill.config import DistillConfig
from videoscene.distill.leap import (
    CONFIG_FILE,
    STUDENT_FOLDER,
    LatentBatch,
    draw_leap,
    ema_update,
    latent_mse,
    leap_distillation_loss,
    one_step_generate,
    timestep_grid,
)
from videoscene.errors import LoadError, VideoSceneError
from videoscene.image_io import write_mp4
from videoscene.io_utils import check_output_location, load_safetensors, staged_output_dir, write_json_atomic
from videoscene.metrics.image import psnr
from videoscene.policy.ddpnet import WEIGHTS_FILE as DDPNET_FILE
from videoscene.policy.ddpnet import BanditTrainer, DDPNet, DDPNetConfig, RewardStatistics, disagreement_scale
from videoscene.training import (
    CHECKPOINTS,
    load_optimizer,
    read_checkpoint_state,
    remove_old_checkpoints,
    resume_latest,
    save_optimizer,
    step_generator,
    torch_threads,
    trim_log,
)
from videoscene.video.models import VideoBackbone
from videoscene.video.schedule import NoiseSchedule

logger = logging.getLogger(__name__)

# [PN]: "only attention layers": the self-attention projections of every CogVideoX block.
ATTENTION_PARAMETERS = re.compile(r"^transformer_blocks\.\d+\.attn1\.(to_q|to_k|to_v|to_out\.0)\.")


# -- the student ----------------------------------------------------------------------------------------------------
def copy_backbone(teacher: VideoBackbone) -> VideoBackbone:
    """A copy of the teacher's transformer and prompt that shares its (frozen) VAE: the student starts as the
    teacher (LCM practice, PAPER.md §6 item 5)."""
    return VideoBackbone(
        teacher.config,
        teacher.vae,
        copy.deepcopy(teacher.transformer),
        copy.deepcopy(teacher.prompt_embedding),
    )


def trainable_parameter_names(transformer: nn.Module, subset: str) -> list[str]:
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
    """forward = `VideoBackbone.predict_v`: the module accelerate prepares, so that DDP's hooks see the calls."""

    def __init__(self, backbone: VideoBackbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, noisy: Tensor, condition: Tensor, timesteps: Tensor) -> Tensor:
        return self.backbone.predict_v(noisy, condition, timesteps)


# -- batches ---------------------------------------------------------------------------------------------------------
def batch_indices(
    num_clips: int, batch_size: int, num_processes: int, process: int, step: int, seed: int
) -> list[int]:
    """Clips of `step` for `process`: epochs are seeded permutations, read in order across steps."""
    global_batch = batch_size * num_processes
    indices = []
    for position in range(
        step * global_batch + process * batch_size, step * global_batch + (process + 1) * batch_size
    ):
        epoch, offset = divmod(position, num_clips)
        permutation = torch.randperm(
            num_clips, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        )
        indices.append(int(permutation[offset]))
    return indices


# -- the trainer --------------------------------------------------------------------------------------------------------
class DistillTrainer:
    """Holds student θ, target θ⁻, frozen teacher φ, DDPNet ψ and their optimizers; `train()` runs to the end."""

    def __init__(
        self,
        config: DistillConfig,
        teacher: VideoBackbone,
        train_cache: ClipCache,
        val_cache: ClipCache | None,
        out_dir: str | Path,
        resume: bool = False,
    ):
        self.config = config
        self.out_dir = Path(out_dir)
        train = config.train
        self.accelerator = Accelerator(
            mixed_precision=train.mixed_precision, cpu=not torch.cuda.is_available()
        )
        device = self.accelerator.device

        # 1. Check inputs: the caches must hold latents of this video model's size.
        expected = (
            teacher.config.latent_frames,
            teacher.config.latent_channels,
            teacher.config.latent_height,
            teacher.config.latent_width,
        )
        for name, cache in (("training", train_cache), ("validation", val_cache)):
            if cache is not None and tuple(cache.latent_shape) != expected:
                raise VideoSceneError(
                    f"{name} cache {cache.folder} holds latents {tuple(cache.latent_shape)}, the teacher makes {expected}; "
                    "rebuild the cache with this teacher"
                )
        self.train_cache, self.val_cache = train_cache, val_cache
        check_output_location(self.out_dir)
        if self.out_dir.exists() and any(self.out_dir.iterdir()) and not resume:
            raise VideoSceneError(
                f"output folder {self.out_dir} is not empty; pass --resume to continue that run or choose another --out"
            )

        # 2. Networks: frozen teacher φ; student θ and target θ⁻ start as copies of it.
        self.teacher = teacher.to(device).eval().requires_grad_(False)
        self.schedule = NoiseSchedule(teacher.config.schedule)
        self.student = copy_backbone(self.teacher)
        self.target = copy_backbone(self.teacher)
        self.trainable_names = trainable_parameter_names(self.student.transformer, train.trainable)
        student_parameters = dict(self.student.transformer.named_parameters())
        target_parameters = dict(self.target.transformer.named_parameters())
        self.trainable = [student_parameters[name].requires_grad_(True) for name in self.trainable_names]
        self.target_trainable = [target_parameters[name] for name in self.trainable_names]
        if train.gradient_checkpointing:
            self.student.transformer.enable_gradient_checkpointing()
        logger.info(
            "student: %d of %d transformer parameters trainable (%s)",
            sum(p.numel() for p in self.trainable),
            sum(p.numel() for p in student_parameters.values()),
            train.trainable,
        )
        optimizer = torch.optim.AdamW(
            self.trainable,
            lr=train.learning_rate,
            betas=train.adam_betas,
            eps=train.adam_epsilon,
            weight_decay=train.weight_decay,
        )
        self.model, self.optimizer = self.accelerator.prepare(VelocityModel(self.student), optimizer)

        # 3. DDPNet ψ (only with the leap: without it the student starts from pure noise).
        self.bandit: BanditTrainer | None = None
        if config.trains_policy:
            torch.manual_seed(train.seed)
            net_config = DDPNetConfig.from_policy(
                config.policy, teacher.config.latent_frames, teacher.config.latent_channels
            )
            if config.policy.view_disagreement:
                net_config = replace(net_config, disagreement_scale=disagreement_scale(train_cache))
            self.bandit = BanditTrainer(DDPNet(net_config).to(device), config.policy)
        elif config.leap.no_leap:
            logger.info("no leap: DDPNet is not trained (the student starts from pure noise)")

        self.grid = timestep_grid(self.schedule, config.leap)
        self.teacher_fingerprint = module_fingerprint(self.teacher.transformer)
        self.step = 0
        if self.accelerator.is_main_process:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            config.save_json(self.out_dir / CONFIG_FILE)
        if resume:
            self._load_latest_checkpoint()

    # -- checkpoints ---------------------------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        path = self.out_dir / CHECKPOINTS / f"step_{self.step:06d}"
        if not self.accelerator.is_main_process:
            return path
        student = dict(self.student.transformer.named_parameters())
        target = dict(self.target.transformer.named_parameters())
        with staged_output_dir(path, overwrite=True) as stage:
            save_file(
                {n: student[n].detach().contiguous().cpu() for n in self.trainable_names},
                str(stage / "student.safetensors"),
            )
            save_file(
                {n: target[n].detach().contiguous().cpu() for n in self.trainable_names},
                str(stage / "target.safetensors"),
            )
            save_optimizer(stage / "optimizer.safetensors", self.optimizer)
            state = {
                "step": self.step,
                "leap": asdict(self.config.leap),
                "policy": asdict(self.config.policy),
                "trainable": self.config.train.trainable,
                # Frozen student weights come from the teacher on resume: it must be the same teacher.
                "teacher": self.teacher_fingerprint,
            }
            if self.bandit is not None:
                self.bandit.net.save(stage / DDPNET_FILE)
                save_optimizer(stage / "ddpnet_optimizer.safetensors", self.bandit.optimizer)
                state["reward_statistics"] = asdict(self.bandit.statistics)
            write_json_atomic(stage / "state.json", state)
        remove_old_checkpoints(self.out_dir, self.config.train.keep_checkpoints)
        return path

    def _load_latest_checkpoint(self) -> None:
        resumed = resume_latest(self.out_dir, self._load_checkpoint)
        if resumed is None:
            logger.info("no usable checkpoint in %s: starting from the teacher", self.out_dir)
        else:
            self.step = resumed[0]
            logger.info("resumed from %s (step %d)", resumed[1], self.step)
        if self.accelerator.is_main_process:
            for log in ("train_log.jsonl", "validation.jsonl"):
                trim_log(self.out_dir / log, self.step)

    def _load_checkpoint(self, path: Path) -> int:
        state = read_checkpoint_state(path, ("step", "leap", "trainable", "teacher"))
        if (
            state["leap"] != asdict(self.config.leap)
            or state["trainable"] != self.config.train.trainable
            or state.get("policy") != json.loads(json.dumps(asdict(self.config.policy)))
        ):
            raise VideoSceneError(
                f"checkpoint {path} was made with other leap/policy/trainable settings; resume with its distill_config.json"
            )
        if state["teacher"] != self.teacher_fingerprint:
            raise VideoSceneError(
                f"checkpoint {path} was made from another teacher; resume with the teacher it was made from"
            )
        device = self.accelerator.device
        stored = {name: load_safetensors(path / f"{name}.safetensors", "checkpoint weights") for name in ("student", "target")}
        for name, tensors in stored.items():
            if any(key not in tensors for key in self.trainable_names):
                raise LoadError(f"checkpoint {path}: {name}.safetensors lacks trainable parameters of this student")
        with torch.no_grad():
            for module, name in ((self.student, "student"), (self.target, "target")):
                parameters = dict(module.transformer.named_parameters())
                for key in self.trainable_names:
                    parameters[key].copy_(stored[name][key].to(device))
        load_optimizer(path / "optimizer.safetensors", self.optimizer)
        if self.bandit is not None:
            self.bandit.net.load_state_dict(DDPNet.load(path / DDPNET_FILE, device).state_dict())
            load_optimizer(path / "ddpnet_optimizer.safetensors", self.bandit.optimizer)
            try:
                self.bandit.statistics = RewardStatistics(**state["reward_statistics"])
            except (KeyError, TypeError):
                raise LoadError(f"checkpoint {path}: state.json lacks DDPNet's reward statistics") from None
        return int(state["step"])

    # -- one step ------------------------------------------------------------------------------------------------------
    def train_step(self) -> dict:
        config, accelerator = self.config, self.accelerator
        generator = step_generator("distill", config.train.seed, self.step, accelerator.process_index)
        indices = batch_indices(
            len(self.train_cache),
            config.train.batch_size,
            accelerator.num_processes,
            accelerator.process_index,
            self.step,
            config.train.seed,
        )
        batch = self.train_cache.latent_batch(indices).to(accelerator.device)
        draw = draw_leap(self.grid, batch.latents, generator)

        # Student update on Eq. 6, then θ⁻ ← μθ⁻ + (1−μ)θ.
        self.model.train()
        with accelerator.autocast():
            loss = leap_distillation_loss(
                self.model, self.target.predict_v, self.teacher, self.schedule, batch, draw, config.leap
            ).loss
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(self.trainable, config.train.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        ema_update(self.target_trainable, self.trainable, config.train.ema_decay)
        stats = {
            "step": self.step + 1,
            "loss": accelerator.reduce(loss.detach(), "mean").item(),
            "grad_norm": float(grad_norm),
            "t_mean": draw.start_timesteps.float().mean().item(),
        }

        # DDPNet: one bandit update against the current student, no gradient between them, on the student's
        # batch or on `clips_per_step` clips of its own. Each clip is pulled `pulls_per_clip` times (independent
        # actions and noise): more reward samples per student step.
        if self.bandit is not None and self.step < config.policy.train_steps:
            policy, bandit_batch = config.policy, batch
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
                groups=clip_of_pull,
                disagreement=pulled.view_disagreement,
            )
            stats.update(
                ddpnet_reward=outcome.rewards.mean().item(),
                ddpnet_baseline=outcome.baseline,
                ddpnet_entropy=outcome.entropy,
                ddpnet_t_mean=outcome.timesteps.float().mean().item(),
            )
        self.step += 1
        return stats

    def _average_gradients(self, module: nn.Module) -> None:
        """DDPNet is not wrapped by accelerate (it is small): average its gradients across processes by hand."""
        if self.accelerator.num_processes == 1:
            return
        for parameter in module.parameters():
            if parameter.grad is not None:
                parameter.grad.copy_(self.accelerator.reduce(parameter.grad, "mean"))

    # -- validation ------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict:
        """One-step student on held-out cached clips: latent MSE to x₀ and, with frames, PSNR of the decoded video
        and of the coarse render against the ground truth. Writes validation/step_XXXXXX.mp4 for the first clip."""
        cache = self.val_cache
        count = min(self.config.train.validation_clips, len(cache))
        device = self.accelerator.device
        self.student.eval()
        records = []
        for index in range(count):
            clip = cache[index]
            batch = LatentBatch(
                clip.render_latents[None], clip.latents[None], clip.condition_latents[None], clip.view_disagreement[None]
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
                if index == 0 and self.accelerator.is_main_process:
                    self._write_video(torch.cat([target, coarse, video], dim=-1))
            records.append(record)
        summary = {
            "step": self.step,
            **{key: float(np.mean([r[key] for r in records])) for key in records[0] if key != "clip"},
        }
        summary["clips"] = records
        if self.accelerator.is_main_process:
            with open(self.out_dir / "validation.jsonl", "a") as log:
                log.write(json.dumps(summary) + "\n")
        logger.info(
            "validation step %d: %s", self.step,
            ", ".join(f"{k}={v:.4g}" for k, v in summary.items() if k not in ("step", "clips")),
        )  # fmt: skip
        return summary

    def policy_timestep(self, render_latents: Tensor, disagreement: Tensor | None = None) -> Tensor:
        """DDPNet's greedy t when it exists, else the configured fixed validation t (T−1 without the leap)."""
        from videoscene.distill.student import start_timestep

        return start_timestep(
            None if self.bandit is None else self.bandit.net.eval(),
            self.config.train.validation_timestep,
            self.config.leap.no_leap,
            self.schedule.num_train_timesteps,
            render_latents,
            disagreement,
        )

    def _write_video(self, frames: Tensor) -> None:
        path = self.out_dir / "validation" / f"step_{self.step:06d}.mp4"
        write_mp4(path, frames)

    # -- the whole run ---------------------------------------------------------------------------------------------------
    def train(self) -> dict:
        train = self.config.train
        progress = tqdm(
            total=train.steps,
            initial=self.step,
            desc="distill",
            unit="step",
            disable=not self.accelerator.is_main_process,
        )
        validation = None
        started = time.perf_counter()
        while self.step < train.steps:
            stats = self.train_step()
            progress.update(1)
            progress.set_postfix(loss=f"{stats['loss']:.4g}")
            if self.accelerator.is_main_process:
                with open(self.out_dir / "train_log.jsonl", "a") as log:
                    log.write(json.dumps(stats) + "\n")
            if self.step % train.checkpoint_every == 0 or self.step == train.steps:
                self.save_checkpoint()
            if self.val_cache is not None and (
                self.step % train.validate_every == 0 or self.step == train.steps
            ):
                validation = self.validate()
        progress.close()
        self.accelerator.wait_for_everyone()
        return self.export(validation, time.perf_counter() - started)

    def export(self, validation: dict | None, seconds: float) -> dict:
        """student/ (VideoBackbone folder), ddpnet.safetensors, run.json, each written atomically."""
        summary = {
            "steps": self.step,
            "seconds_this_session": round(seconds, 1),
            "no_leap": self.config.leap.no_leap,
            "train_cache": str(self.train_cache.folder),
            "val_cache": str(self.val_cache.folder) if self.val_cache is not None else None,
            "validation": {k: v for k, v in validation.items() if k != "clips"} if validation else None,
        }
        if self.accelerator.is_main_process:
            self.student.save_pretrained(self.out_dir / STUDENT_FOLDER, overwrite=True)
            if self.bandit is not None:
                self.bandit.net.save(self.out_dir / DDPNET_FILE)
            write_json_atomic(self.out_dir / "run.json", summary)
            logger.info("student written to %s", self.out_dir / STUDENT_FOLDER)
        return summary


# -- caches and CLI ---------------------------------------------------------------------------------------------------
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
            background = tuple(json.loads(prior_train_config.read_text()).get("background", background))
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
    parser.add_argument(
        "--config", required=True, help="distillation config JSON (e.g. configs/distill_tiny.json)"
    )
    parser.add_argument("--out", default="runs/distill", help="output folder (default: runs/distill)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    parser.add_argument(
        "--no-leap",
        action="store_true",
        help="the paper's ablation: consistency distillation from noised ground truth",
    )
    parser.add_argument("--steps", type=int, default=None, help="override train.steps")


def run(args: argparse.Namespace) -> None:
    config = DistillConfig.load_json(args.config)
    if args.no_leap:
        config = config.with_no_leap()
    if args.steps is not None:
        if args.steps < 1:
            raise VideoSceneError(f"--steps must be ≥ 1, got {args.steps}")
        config = replace(config, train=replace(config.train, steps=args.steps))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    check_output_location(args.out)
    with torch_threads(config.train.num_threads):
        teacher = VideoBackbone.from_pretrained(config.teacher, prompt_embeds_path=config.prompt_embeds).to(device)
        train_cache, val_cache = prepare_caches(config, teacher)
        trainer = DistillTrainer(config, teacher, train_cache, val_cache, args.out, resume=args.resume)
        summary = trainer.train()
    logger.info("distillation finished: %s", json.dumps(summary.get("validation")))
