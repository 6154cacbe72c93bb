"""DDPNet, the dynamic denoising policy network (docs/method.md §5), and its contextual-bandit
training.

    context   x₀ʳ (the coarse render's latent)                     [B, f, C, h, w]
              and, optionally, the context views' disagreement D      [B, f, 2, h, w]
    action    a ∈ {0..K−1}, the leap timestep t_a from a fixed candidate set on the solver grid
    policy    π_ψ(a | x₀ʳ) = softmax(CNN(x₀ʳ))   (frames folded into channels, 4 convolutions, global pool)
    reward    r = −MSE(f_θ(x_{t_a}ʳ, t_a), x₀)   (one-step student from the leap vs the ground-truth latent;
              against x₀ʳ instead, t → 0 would always win)
    update    REINFORCE with a baseline b:  L_DDP(ψ) = −(π/μ)·(r − b)/s · log π_ψ(a|x₀ʳ) − β·H(π_ψ)

Actions are drawn from the behaviour policy μ = (1−ε)·π + ε/K (ε-exploration); the detached ratio π/μ keeps
the gradient an unbiased estimate of ∇E_π[r]. The baseline is, by default, per clip: each clip is pulled
several times (independent actions and noise) and b for one pull is the mean reward of the clip's other pulls
(leave-one-out). The reward's level differs far more between clips (a clean render against one with holes)
than between timesteps for one clip, so a single running mean over all clips buries the signal that decides
t; the leave-one-out baseline removes the clip's level and stays unbiased because it does not depend on the
pull's own action. `baseline="running_mean"` keeps one exponential mean over all rewards (one pull per clip).
s is a running standard deviation of r − b, so the step size does not depend on the reward's scale.
DDPNet never receives gradients from, nor sends them to, the student ([PN] "decoupled"): rewards are plain
numbers. At inference the policy is greedy: t* = t_{argmax π}.

The paper's DDPNet sees x₀ʳ only (the paper leaves the network's input open). Which t is best is a property
of the clip (the per-clip best t barely changes with the noise draw) and goes with how wrong the render is,
but a render does not show its own errors: at our scale neither this CNN nor summary statistics of x₀ʳ
predict the best t on held-out clips better than one fixed t. `view_disagreement=True` adds what the prior
itself knows: D (`prior.render.view_disagreement`) renders each context view's Gaussians alone at one target
camera per latent frame and measures where the views disagree and how many cover each pixel, pooled to the
latent grid (`policy_inputs`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from videoscene.errors import LoadError, VideoSceneError
from videoscene.io_utils import load_state, read_safetensors, save_safetensors
from videoscene.prior.render import view_disagreement
from videoscene.types import Cameras, Gaussians, Views

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "ddpnet.safetensors"
FORMAT = "videoscene.ddpnet/1"


@dataclass(frozen=True)
class PolicyConfig:
    """DDPNet's actions, width and bandit training (values the paper leaves open: docs/method.md §5)."""

    # Candidate leap timesteps (K actions); each must lie on the distillation grid {k−1, 2k−1, …} and ≤ T′.
    candidates: tuple[int, ...] = (199, 299, 399, 499, 599, 699)
    hidden_channels: int = 64
    # Distillation steps during which DDPNet trains; afterwards it is frozen ([PN]: 4000). 0 = never trained.
    train_steps: int = 4000
    learning_rate: float = 1e-4
    # Bandit pulls per training clip and step (each an independent action and noise draw; 1 = one per clip).
    pulls_per_clip: int = 4
    # Training clips each bandit update pulls, drawn apart from the student's batch; None = the student's
    # batch. One reward is one gradient-free student step, so the bandit can see many more clips than the
    # student's loss does: a few hundred updates on the student's 2 clips are too few to tell clips apart.
    clips_per_step: int | None = None
    exploration: float = 0.05  # ε of the behaviour policy μ = (1−ε)π + ε/K
    entropy_weight: float = 0.01  # β
    baseline_momentum: float = 0.99  # running mean / variance of the reward
    baseline: Literal["per_clip", "running_mean"] = (
        "per_clip"  # leave-one-out over a clip's pulls, or one mean
    )
    # Also give DDPNet the context views' disagreement D (module docstring); False = x₀ʳ only, as in the
    # paper.
    view_disagreement: bool = False

    def __post_init__(self) -> None:
        if self.baseline not in ("per_clip", "running_mean"):
            raise VideoSceneError(
                f"policy.baseline must be 'per_clip' or 'running_mean', got {self.baseline!r}"
            )
        if self.baseline == "per_clip" and self.pulls_per_clip < 2:
            raise VideoSceneError(
                "policy.baseline 'per_clip' compares a clip's pulls with each other: set "
                "policy.pulls_per_clip ≥ 2 "
                "or use baseline 'running_mean'"
            )
        if len(self.candidates) < 2 or len(set(self.candidates)) != len(self.candidates):
            raise VideoSceneError(
                f"policy.candidates must hold at least 2 distinct timesteps, got {list(self.candidates)}"
            )
        if list(self.candidates) != sorted(self.candidates):
            raise VideoSceneError(f"policy.candidates must be increasing, got {list(self.candidates)}")
        if (
            self.hidden_channels < 1
            or self.pulls_per_clip < 1
            or (self.clips_per_step is not None and self.clips_per_step < 1)
            or self.train_steps < 0
            or self.learning_rate <= 0
        ):
            raise VideoSceneError(
                "policy.hidden_channels, policy.pulls_per_clip, policy.clips_per_step and "
                "policy.learning_rate must be "
                "positive, policy.train_steps ≥ 0"
            )
        if not 0 <= self.exploration < 1 or not 0 <= self.baseline_momentum < 1 or self.entropy_weight < 0:
            raise VideoSceneError(
                "policy.exploration and policy.baseline_momentum must be in [0, 1), entropy_weight ≥ 0"
            )


@dataclass(frozen=True)
class DDPNetConfig:
    """Architecture: the input layout (from the video model) plus the policy's actions and width."""

    latent_frames: int
    latent_channels: int
    candidates: tuple[int, ...]
    hidden_channels: int = 64
    view_disagreement: bool = False
    # D's spread is a few hundredths of the colour range; it is multiplied by 1/(its std over the training
    # clips) so that it enters at the unit scale of the standardised latents (`disagreement_scale`).
    disagreement_scale: float = 1.0

    @classmethod
    def from_policy(cls, policy: PolicyConfig, latent_frames: int, latent_channels: int) -> DDPNetConfig:
        return cls(
            latent_frames,
            latent_channels,
            tuple(policy.candidates),
            policy.hidden_channels,
            policy.view_disagreement,
        )


DISAGREEMENT_CHANNELS = 2  # spread, coverage (prior.render.view_disagreement)


def policy_frames(num_frames: int, temporal_compression: int) -> list[int]:
    """One pixel frame per latent frame: frame 0, then the last frame each later latent frame encodes."""
    return list(range(0, num_frames, temporal_compression))


def disagreement_scale(clips: Sequence, max_clips: int = 256) -> float:
    """1/std of D's spread over (the first `max_clips` of) a sequence of cached clips."""
    spreads = torch.stack([clips[i].view_disagreement[:, 0] for i in range(min(len(clips), max_clips))])
    return 1.0 / max(spreads.std().item(), 1e-6)


@torch.no_grad()
def policy_inputs(
    gaussians: Gaussians,
    context: Views,
    cameras: Cameras,
    image_shape: tuple[int, int],
    temporal_compression: int,
    spatial_compression: int,
) -> Float[Tensor, "batch latent_frames 2 latent_height latent_width"]:
    """D on the latent grid: the views' disagreement at `policy_frames` of the video's [B, F] `cameras`
    (frames of `image_shape`), average-pooled by the VAE's spatial factor."""
    frames = torch.tensor(
        policy_frames(cameras.extrinsics.shape[1], temporal_compression), device=cameras.extrinsics.device
    )
    keys = Cameras(cameras.extrinsics[:, frames], cameras.intrinsics[:, frames])
    disagreement = view_disagreement(gaussians, context.image.shape[1], context, keys, image_shape)
    return F.avg_pool2d(disagreement.flatten(0, 1), spatial_compression).unflatten(0, disagreement.shape[:2])


class DDPNet(nn.Module):
    """x₀ʳ [B, f, C, h, w] → logits over K candidate timesteps. Four 3×3 convolutions (the last three with
    stride 2) with SiLU and no normalisation layer: the noise and blur *level* of the render is what decides
    t, and a per-sample normalisation would divide it away."""

    def __init__(self, config: DDPNetConfig):
        super().__init__()
        self.config = config
        width = config.hidden_channels
        in_channels = config.latent_frames * (
            config.latent_channels + DISAGREEMENT_CHANNELS * config.view_disagreement
        )
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.SiLU(),
        )
        self.head = nn.Linear(width, len(config.candidates))
        self.register_buffer(
            "candidates", torch.tensor(config.candidates, dtype=torch.int64), persistent=False
        )

    def forward(
        self,
        render_latents: Float[Tensor, "batch latent_frames channels latent_height latent_width"],
        disagreement: Float[Tensor, "batch latent_frames 2 latent_height latent_width"] | None = None,
    ) -> Float[Tensor, "batch K"]:
        batch, frames, channels, height, width = render_latents.shape
        if (frames, channels) != (self.config.latent_frames, self.config.latent_channels):
            raise VideoSceneError(
                f"DDPNet expects {self.config.latent_frames} latent frames × "
                f"{self.config.latent_channels} channels, "
                f"got {frames} × {channels}; use a DDPNet trained for this video size"
            )
        if self.config.view_disagreement:
            expected = (batch, frames, DISAGREEMENT_CHANNELS, height, width)
            if disagreement is None or tuple(disagreement.shape) != expected:
                got = None if disagreement is None else tuple(disagreement.shape)
                raise VideoSceneError(
                    f"this DDPNet also reads the views' disagreement {list(expected)} (policy_inputs), "
                    f"got {got}"
                )
            scale = torch.tensor(
                [self.config.disagreement_scale, 1.0],
                dtype=render_latents.dtype,
                device=render_latents.device,
            )
            render_latents = torch.cat(
                [render_latents, disagreement.to(render_latents.dtype) * scale[:, None, None]], dim=2
            )
            channels += DISAGREEMENT_CHANNELS
        folded = render_latents.reshape(batch, frames * channels, height, width).to(self.head.weight.dtype)
        return self.head(self.features(folded).mean(dim=(-2, -1)))

    @torch.no_grad()
    def choose_timestep(
        self,
        render_latents: Float[Tensor, "batch latent_frames channels latent_height latent_width"],
        disagreement: Float[Tensor, "batch latent_frames 2 latent_height latent_width"] | None = None,
    ) -> Int[Tensor, " batch"]:
        """The greedy inference policy t* = t_{argmax π_ψ(·|x₀ʳ, D)}.

        A video of another length than DDPNet was trained on (e.g. 9 or 49 frames for a 17-frame DDPNet) is
        resampled linearly along its latent frames to the trained count, first and last frames kept exactly:
        the policy judges the render's degradation, which a resampling in time keeps.
        """
        render_latents = self._to_trained_length(render_latents)
        disagreement = None if disagreement is None else self._to_trained_length(disagreement)
        return self.candidates[self(render_latents, disagreement).argmax(dim=-1)]

    def _to_trained_length(self, x: Float[Tensor, "batch frames channels height width"]) -> Tensor:
        batch, frames, channels, height, width = x.shape
        if frames == self.config.latent_frames:
            return x
        series = x.permute(0, 2, 3, 4, 1).reshape(batch, channels * height * width, frames).float()
        mode = "linear" if frames > 1 else "nearest"
        resampled = F.interpolate(
            series,
            size=self.config.latent_frames,
            mode=mode,
            **({"align_corners": True} if frames > 1 else {}),
        )
        return resampled.reshape(batch, channels, height, width, -1).permute(0, 4, 1, 2, 3).to(x.dtype)

    # -- files -----------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """One safetensors file; the architecture goes in its metadata, so the file alone rebuilds the net."""
        state = {key: value.detach().contiguous().cpu() for key, value in self.state_dict().items()}
        metadata = {"format": FORMAT, "config": json.dumps(asdict(self.config))}
        save_safetensors(path, state, metadata)

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> DDPNet:
        path = Path(path)
        if path.is_dir():
            path = path / WEIGHTS_FILE
        if not path.is_file():
            raise VideoSceneError(
                f"DDPNet weights {path} not found; train them with `videoscene train distill`"
            )
        state, metadata = read_safetensors(path, "DDPNet weights", device=str(device))
        if metadata.get("format") != FORMAT:
            raise LoadError(
                f"{path} is not a DDPNet file (format {metadata.get('format')!r}, expected {FORMAT!r})"
            )
        try:
            raw = json.loads(metadata["config"])
            net = cls(DDPNetConfig(**{**raw, "candidates": tuple(raw["candidates"])}))
        except (KeyError, TypeError, ValueError):
            raise LoadError(
                f"DDPNet weights {path} carry no readable config in their metadata; re-export them"
            ) from None
        load_state(net, state, path, "DDPNet weights")
        return net.to(device)


@dataclass
class BanditStep:
    """What one bandit update saw: the actions, their timesteps and rewards, and the policy's state."""

    actions: Int[Tensor, " batch"]
    timesteps: Int[Tensor, " batch"]
    rewards: Float[Tensor, " batch"]
    loss: float
    entropy: float
    baseline: float


@dataclass
class RewardStatistics:
    """Running mean b and variance of the reward (exponential moving averages, bias-corrected)."""

    momentum: float
    mean: float = 0.0
    second_moment: float = 0.0
    count: int = 0

    def update(self, rewards: Tensor) -> None:
        self.mean = self.momentum * self.mean + (1 - self.momentum) * rewards.mean().item()
        self.second_moment = (
            self.momentum * self.second_moment + (1 - self.momentum) * rewards.square().mean().item()
        )
        self.count += 1

    @property
    def baseline(self) -> float:
        return self.mean / (1 - self.momentum**self.count) if self.count else 0.0

    @property
    def std(self) -> float:
        if not self.count:
            return 1.0
        variance = self.second_moment / (1 - self.momentum**self.count) - self.baseline**2
        return max(variance, 0.0) ** 0.5 + 1e-8


def leave_one_out_baseline(
    rewards: Float[Tensor, " batch"], groups: Int[Tensor, " batch"]
) -> Float[Tensor, " batch"]:
    """b_i = mean of r_j over the other pulls j ≠ i of the same clip (groups[i] = the clip of pull i)."""
    if groups.shape != rewards.shape:
        raise VideoSceneError(
            f"{len(groups)} clip labels for {len(rewards)} rewards; give one clip label per pull"
        )
    _, inverse, counts = torch.unique(groups, return_inverse=True, return_counts=True)
    if (counts < 2).any():
        raise VideoSceneError("a per-clip baseline needs at least 2 pulls of every clip in the batch")
    sums = torch.zeros(len(counts), dtype=rewards.dtype, device=rewards.device).index_add_(
        0, inverse, rewards
    )
    return (sums[inverse] - rewards) / (counts[inverse] - 1).to(rewards.dtype)


@dataclass
class BanditTrainer:
    """REINFORCE on DDPNet with a per-clip (or running-mean) baseline, ε-exploration and an entropy bonus."""

    net: DDPNet
    config: PolicyConfig
    optimizer: torch.optim.Optimizer = field(init=False)
    statistics: RewardStatistics = field(init=False)

    def __post_init__(self) -> None:
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.config.learning_rate)
        self.statistics = RewardStatistics(self.config.baseline_momentum)

    def step(
        self,
        render_latents: Float[Tensor, "batch latent_frames channels latent_height latent_width"],
        reward_fn: Callable[[Int[Tensor, " batch"]], Float[Tensor, " batch"]],
        generator: torch.Generator,
        average_gradients: Callable[[nn.Module], None] | None = None,
        gather_rewards: Callable[[Tensor], Tensor] | None = None,
        groups: Int[Tensor, " batch"] | None = None,
        disagreement: Float[Tensor, "batch latent_frames 2 latent_height latent_width"] | None = None,
    ) -> BanditStep:
        """Act on a batch of contexts, ask `reward_fn(timesteps)` for the rewards, update ψ once.
        `groups[i]` names the clip of row i (needed by the per-clip baseline: rows of one clip are pulls of
        it). Data-parallel training passes `average_gradients(net)`, which runs between backward and the
        optimizer step, and `gather_rewards`, the rows of every process, on which the running reward
        statistics are updated: so that every process keeps the same ψ and the same statistics."""
        if self.config.baseline == "per_clip" and groups is None:
            raise VideoSceneError(
                "the per-clip baseline needs `groups`: which clip each row of the batch pulls"
            )
        gather = gather_rewards or (lambda rewards: rewards)
        self.net.train()
        logits = self.net(render_latents.detach(), None if disagreement is None else disagreement.detach())
        log_pi = logits.log_softmax(dim=-1)
        pi = log_pi.exp()
        num_actions = pi.shape[-1]
        # Behaviour policy μ = (1−ε)π + ε/K, sampled with the caller's generator (reproducible, resumable).
        behaviour = (1 - self.config.exploration) * pi.detach() + self.config.exploration / num_actions
        actions = torch.multinomial(behaviour.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)
        timesteps = self.net.candidates[actions]
        with torch.no_grad():
            rewards = reward_fn(timesteps).detach().float().to(logits.device).reshape(-1)

        # b and s come from earlier batches (or the clip's other pulls), never from the pull's own reward.
        if self.config.baseline == "per_clip":
            baseline = leave_one_out_baseline(rewards, groups.to(rewards.device))
            advantage = (rewards - baseline) / self.statistics.std
            # tracks the scale s of r − b (its mean is ≈ 0)
            self.statistics.update(gather(rewards - baseline))
            reported_baseline = baseline.mean().item()
        else:
            reported_baseline = self.statistics.baseline
            advantage = (rewards - reported_baseline) / self.statistics.std
            self.statistics.update(gather(rewards))
        chosen = actions[:, None]
        importance = (pi.detach().gather(-1, chosen) / behaviour.gather(-1, chosen)).squeeze(-1)
        entropy = -(pi * log_pi).sum(dim=-1)
        loss = -(importance * advantage * log_pi.gather(-1, chosen).squeeze(-1)).mean()
        loss = loss - self.config.entropy_weight * entropy.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if average_gradients is not None:
            average_gradients(self.net)
        self.optimizer.step()
        return BanditStep(actions, timesteps, rewards, loss.item(), entropy.mean().item(), reported_baseline)
