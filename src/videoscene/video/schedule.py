"""The CogVideoX noise schedule (docs/method.md §3): discrete DDPM, v-prediction, zero terminal SNR.

ᾱ_t comes from diffusers' `CogVideoXDDIMScheduler`; the closed forms below are the v-parameterisation:

    x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε                (forward noising)
    v   = √ᾱ_t·ε  − √(1−ᾱ_t)·x₀               (v target)
    x̂₀ = √ᾱ_t·x_t − √(1−ᾱ_t)·v̂              ε̂ = √ᾱ_t·v̂ + √(1−ᾱ_t)·x_t
    DDIM (η = 0), t → s:  x_s = √ᾱ_s·x̂₀ + √(1−ᾱ_s)·ε̂,  with ᾱ_s = 1 for s < 0

The v-form stays finite at t = 999, where ᾱ = 0 (the ε-form would divide by √ᾱ).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler
from jaxtyping import Float, Int
from torch import Tensor

from videoscene.errors import VideoSceneError
from videoscene.video.config import ScheduleConfig

SolverKind = Literal["ddim", "dpm"]
Timesteps = Int[Tensor, " batch"] | int


class NoiseSchedule:
    """ᾱ and the v-parameterisation helpers; `make_solver` gives a fresh diffusers scheduler for sampling."""

    def __init__(self, config: ScheduleConfig | None = None):
        self.config = config or ScheduleConfig()
        if self.config.prediction_type != "v_prediction":
            raise VideoSceneError(
                f"prediction_type {self.config.prediction_type!r} is not supported; CogVideoX models "
                "predict v"
            )
        # float64 as diffusers computes it; cast to the sample's dtype only when broadcasting.
        self.alphas_cumprod: Float[Tensor, " T"] = self.make_solver("ddim").alphas_cumprod.to(torch.float64)

    @property
    def num_train_timesteps(self) -> int:
        return self.config.num_train_timesteps

    def make_solver(self, kind: SolverKind = "ddim") -> CogVideoXDDIMScheduler | CogVideoXDPMScheduler:
        """A new (stateful) diffusers scheduler with this schedule: DDIM (η = 0) or CogVideoX's
        DPM-Solver++."""
        if kind == "ddim":
            return CogVideoXDDIMScheduler(**self.config.diffusers_kwargs())
        if kind == "dpm":
            return CogVideoXDPMScheduler(**self.config.diffusers_kwargs())
        raise VideoSceneError(f"unknown solver {kind!r}; choose 'ddim' or 'dpm'")

    # -- ᾱ lookup --------------------------------------------------------------------------------------------
    def alpha_bar(self, t: Timesteps, like: Tensor) -> Tensor:
        """ᾱ_t broadcast to `like` ([B, ...]); t < 0 means 'clean' (ᾱ = 1), as diffusers' final step does."""
        t = torch.as_tensor(t, device=self.alphas_cumprod.device).long().reshape(-1)
        if (t >= self.num_train_timesteps).any():
            raise VideoSceneError(f"timestep {t.max().item()} is outside 0..{self.num_train_timesteps - 1}")
        values = torch.where(t >= 0, self.alphas_cumprod[t.clamp(min=0)], torch.ones((), dtype=torch.float64))
        values = values.to(device=like.device, dtype=like.dtype)
        return values.reshape(-1, *([1] * (like.ndim - 1)))

    # -- v-parameterisation ----------------------------------------------------------------------------------
    def add_noise(self, x0: Tensor, noise: Tensor, t: Timesteps) -> Tensor:
        """Forward noising x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε."""
        alpha_bar = self.alpha_bar(t, x0)
        return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise

    def v_target(self, x0: Tensor, noise: Tensor, t: Timesteps) -> Tensor:
        """v = √ᾱ_t·ε − √(1−ᾱ_t)·x₀ (the teacher's training target)."""
        alpha_bar = self.alpha_bar(t, x0)
        return alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * x0

    def x0_from_v(self, x_t: Tensor, v: Tensor, t: Timesteps) -> Tensor:
        """x̂₀ = √ᾱ_t·x_t − √(1−ᾱ_t)·v̂ (v-prediction)."""
        alpha_bar = self.alpha_bar(t, x_t)
        return alpha_bar.sqrt() * x_t - (1 - alpha_bar).sqrt() * v

    def eps_from_v(self, x_t: Tensor, v: Tensor, t: Timesteps) -> Tensor:
        """ε̂ = √ᾱ_t·v̂ + √(1−ᾱ_t)·x_t."""
        alpha_bar = self.alpha_bar(t, x_t)
        return alpha_bar.sqrt() * v + (1 - alpha_bar).sqrt() * x_t

    def ddim_step(self, x_t: Tensor, v: Tensor, t: Timesteps, t_prev: Timesteps) -> Tensor:
        """One deterministic DDIM step t → t_prev (the teacher solver Ψ of Eq. 6); t_prev < 0 gives
        x̂₀."""
        x0 = self.x0_from_v(x_t, v, t)
        eps = self.eps_from_v(x_t, v, t)
        alpha_bar_prev = self.alpha_bar(t_prev, x_t)
        return alpha_bar_prev.sqrt() * x0 + (1 - alpha_bar_prev).sqrt() * eps

    # -- consistency distillation helpers (LCM's parameterisation) ---------------------------------
    def boundary_scalings(
        self, t: Timesteps, like: Tensor, sigma_data: float = 0.5, timestep_scaling: float = 10.0
    ) -> tuple[Tensor, Tensor]:
        """LCM boundary condition f(x, t) = c_skip·x + c_out·x̂₀ with c_skip(0) = 1, c_out(0) = 0:
        c_skip = σ_d² / ((s·t)² + σ_d²),  c_out = s·t / √((s·t)² + σ_d²)."""
        scaled_t = torch.as_tensor(t, device=like.device).reshape(-1).to(torch.float64) * timestep_scaling
        c_skip = sigma_data**2 / (scaled_t**2 + sigma_data**2)
        c_out = scaled_t / (scaled_t**2 + sigma_data**2).sqrt()
        shape = (-1, *([1] * (like.ndim - 1)))
        return c_skip.to(like.dtype).reshape(shape), c_out.to(like.dtype).reshape(shape)

    def skip_grid(self, skip: int) -> Int[Tensor, " n"]:
        """The LCM solver grid {k−1, 2k−1, …, T−1} for skip k (k = 20 ↔ 50 DDIM steps: {19, 39, …, 999})."""
        if skip < 1 or self.num_train_timesteps % skip:
            raise VideoSceneError(f"skip {skip} must divide {self.num_train_timesteps}")
        return torch.arange(skip - 1, self.num_train_timesteps, skip)


def sampling_timesteps(
    schedule: NoiseSchedule, num_steps: int, start_timestep: int | None = None
) -> Int[Tensor, " n"]:
    """Timesteps of an `num_steps`-step trailing schedule, optionally started below T from a noised video.

    From noise: diffusers' trailing spacing, e.g. 4 steps → [999, 749, 499, 249]. From a video noised to
    t (SDEdit-style, "teacher from the render"): the same stride Δ = T // num_steps shifted to pass through t,
    [t, t−Δ, …] down to ≥ 0, so the diffusers step (which goes to t − Δ) stays on the grid and t is used
    exactly; 50 steps from t = 549 → 28 model calls, 1 step → one call giving x̂₀ (the paper's inference).
    """
    total = schedule.num_train_timesteps
    if not 1 <= num_steps <= total:
        raise VideoSceneError(f"num_steps={num_steps} must be between 1 and {total}")
    if start_timestep is None:
        solver = schedule.make_solver("ddim")
        solver.set_timesteps(num_steps)
        return solver.timesteps.clone()
    if not 0 <= start_timestep < total:
        raise VideoSceneError(f"start timestep {start_timestep} must be in 0..{total - 1}")
    stride = total // num_steps
    count = math.floor(start_timestep / stride) + 1
    return start_timestep - stride * torch.arange(count)
