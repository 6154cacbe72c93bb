"""The distilled one-step student for inference, and the one place that decides where its step starts.

`videoscene train distill` exports a run folder (student/, distill_config.json, ddpnet.safetensors); the
pipeline opens it with `load_distilled`. Where the one step starts is decided by `start_timestep` alone,
for the pipeline, the student and the trainer's validation alike:

    no leap (the ablation)     t = T−1: pure noise, whatever else is given
    a DDPNet                   t* = DDPNet's greedy choice from x₀ʳ (and the views' disagreement D, if it
                               reads it)
    otherwise                  the fixed t (the user's, or a configured fallback), which must lie in [1, T−1]

T is the number of training timesteps of the schedule the student was distilled on.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Int
from torch import Tensor

from videoscene.distill.config import LeapConfig, load_leap_config
from videoscene.distill.leap import Latents, one_step_generate
from videoscene.errors import VideoSceneError
from videoscene.policy.ddpnet import WEIGHTS_FILE as DDPNET_FILE
from videoscene.policy.ddpnet import DDPNet
from videoscene.video.models import VideoBackbone
from videoscene.video.schedule import NoiseSchedule

STUDENT_FOLDER = "student"  # VideoBackbone.save_pretrained of the student, inside a run folder
CONFIG_FILE = "distill_config.json"


@torch.no_grad()
def start_timestep(
    policy: DDPNet | None,
    fixed_timestep: int | None,
    no_leap: bool,
    num_train_timesteps: int,
    render_latents: Latents,
    disagreement: Tensor | None = None,
) -> Int[Tensor, " batch"]:
    """Where the one-step denoising starts, one t per render latent x₀ʳ (module docstring).

    `policy`: DDPNet, or None for the fixed t. `disagreement`: the views' disagreement D, passed on to a
    DDPNet that reads it (`policy.ddpnet.policy_inputs`).
    """
    batch, device = render_latents.shape[0], render_latents.device
    if no_leap:  # the ablation is distilled from, and sampled from, pure noise
        return torch.full((batch,), num_train_timesteps - 1, device=device)
    if policy is not None:
        return policy.choose_timestep(render_latents, disagreement)
    if fixed_timestep is None:
        raise VideoSceneError(
            "this student has no DDPNet (distilled without the leap, or policy.train_steps = 0); pass "
            "a fixed timestep"
        )
    last = num_train_timesteps - 1
    if (
        isinstance(fixed_timestep, bool)
        or not isinstance(fixed_timestep, numbers.Integral)
        or not 1 <= fixed_timestep <= last
    ):
        raise VideoSceneError(
            f"timestep must be 'auto' or a whole number from 1 to {last}, got {fixed_timestep!r}"
        )
    return torch.full((batch,), int(fixed_timestep), device=device)


@dataclass
class DistilledStudent:
    """What `videoscene train distill` exports: the one-step student, DDPNet (absent without the leap) and the
    loss settings the student was trained with (its c_skip/c_out and whether it starts from the render)."""

    student: VideoBackbone
    ddpnet: DDPNet | None
    leap: LeapConfig

    @property
    def schedule(self) -> NoiseSchedule:
        return NoiseSchedule(self.student.config.schedule)

    def start_timestep(
        self, render_latents: Latents, timestep: int | None = None, disagreement: Tensor | None = None
    ) -> Int[Tensor, " batch"]:
        """`start_timestep` for this student: DDPNet's t when `timestep` is None, else `timestep`."""
        policy = self.ddpnet if timestep is None else None
        return start_timestep(
            policy,
            timestep,
            self.leap.no_leap,
            self.schedule.num_train_timesteps,
            render_latents,
            disagreement,
        )

    @torch.no_grad()
    def generate(
        self,
        render_latents: Latents,
        condition_latents: Latents,
        timestep: int | Int[Tensor, " batch"] | None = None,
        generator: torch.Generator | None = None,
        disagreement: Tensor | None = None,
    ) -> Latents:
        """One student step from x₀ʳ noised to t; without the leap, from pure noise. `timestep`: what
        `start_timestep` decided (a [batch] tensor), else a fixed t or None (DDPNet's t, reading the views'
        disagreement D when it was trained with it), decided here."""
        if not isinstance(timestep, Tensor):
            timestep = self.start_timestep(render_latents, timestep, disagreement)
        noise = torch.randn(render_latents.shape, generator=generator, dtype=torch.float32).to(
            render_latents.device
        )
        return one_step_generate(
            self.student.predict_v,
            self.schedule,
            render_latents,
            condition_latents,
            timestep,
            noise,
            self.leap,
        )


def load_distilled(
    folder: str | os.PathLike, device: torch.device | str = "cpu", torch_dtype: torch.dtype = torch.float32
) -> DistilledStudent:
    """Open a `videoscene train distill` output folder (student/, distill_config.json, ddpnet.safetensors)."""
    folder = Path(folder)
    if not (folder / STUDENT_FOLDER).is_dir() or not (folder / CONFIG_FILE).is_file():
        raise VideoSceneError(
            f"{folder} is not a distilled student (needs {STUDENT_FOLDER}/ and {CONFIG_FILE}); run "
            "`videoscene train distill`"
        )
    leap = load_leap_config(folder / CONFIG_FILE)
    student = (
        VideoBackbone.from_pretrained(folder / STUDENT_FOLDER, torch_dtype=torch_dtype).to(device).eval()
    )
    ddpnet = DDPNet.load(folder / DDPNET_FILE, device).eval() if (folder / DDPNET_FILE).is_file() else None
    return DistilledStudent(student, ddpnet, leap)
