"""Typed config of 3D-aware leap flow distillation (the paper's §3.3, Eq. 6) and everything the trainer needs.

A config file is JSON with the sections below (configs/distill_tiny.json is the reference); unknown keys
are errors, so a typo never silently falls back to a default. Paths are relative to the working directory.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from videoscene.config_json import check_json_types
from videoscene.errors import VideoSceneError
from videoscene.io_utils import read_json_object, write_json_atomic
from videoscene.policy.ddpnet import PolicyConfig
from videoscene.video.config import NUM_TRAIN_TIMESTEPS

CONFIG_FORMAT = "videoscene.distill/1"


@dataclass(frozen=True)
class LeapConfig:
    """The loss of Eq. 6 and its ablation (docs/method.md §4: the distance, the leap range and the EMA rate
    that the paper leaves open)."""

    skip: int = 20  # k: solver grid {k−1, 2k−1, …, T−1}; teacher steps t_{n+1} → t_n = t_{n+1} − k
    max_timestep: int = 699  # T′: the leap draws t_{n+1} only from grid points ≤ T′
    # The paper's ablation: plain consistency distillation from noised ground truth over the whole grid
    # (t_{n+1} up to T−1); the student is then sampled from pure noise.
    no_leap: bool = False
    distance: Literal["pseudo_huber", "l2"] = "pseudo_huber"
    huber_c: float = 0.001  # d(a, b) = √((a−b)² + c²) − c, averaged over elements (LCM's default c)
    sigma_data: float = 0.5  # c_skip / c_out boundary scalings (LCM, as diffusers' LCMScheduler)
    timestep_scaling: float = 10.0
    teacher_guidance_scale: float = 1.0  # classifier-free guidance of the teacher step (1 = off)
    # L = λ_D·L_D + λ_gt·d(f_θ(x_{t_{n+1}}, t_{n+1}), x₀): the paper distils from the teacher alone
    # (λ_gt = 0); a ground-truth term trains the one-step result on render/ground-truth pairs as Difix3D+
    # (CVPR 2025) trains its one-step fixer. λ_D = 0 leaves the ground-truth term alone (no teacher or EMA
    # target runs).
    leap_weight: float = 1.0
    ground_truth_weight: float = 0.0
    # λ_px: L1 in pixels between the video the pipeline shows with its render skip, r + D(x̂₀) − D(x₀ʳ), and
    # the ground truth (gradients through the frozen VAE decoder; needs the cache's frames). It trains the
    # one-step result for what is seen, where a latent distance weighs every latent alike.
    pixel_weight: float = 0.0
    # λ_ssim: 1 − SSIM of the same video against the ground truth, per frame (the render skip keeps the
    # render's structure only where the student leaves it alone; this term scores the structure it adds).
    ssim_weight: float = 0.0

    @property
    def scores_pixels(self) -> bool:
        """Whether a pixel term is on: the render-skip video is decoded and the cache's frames are needed."""
        return self.pixel_weight > 0 or self.ssim_weight > 0

    def __post_init__(self) -> None:
        if self.skip < 1 or NUM_TRAIN_TIMESTEPS % self.skip:
            raise VideoSceneError(f"leap.skip={self.skip} must divide {NUM_TRAIN_TIMESTEPS}")
        if not self.skip - 1 <= self.max_timestep < NUM_TRAIN_TIMESTEPS:
            raise VideoSceneError(
                f"leap.max_timestep (T′) = {self.max_timestep} must be in "
                f"{self.skip - 1}..{NUM_TRAIN_TIMESTEPS - 1}"
            )
        if self.distance not in ("pseudo_huber", "l2"):
            raise VideoSceneError(f"leap.distance={self.distance!r}; choose 'pseudo_huber' or 'l2'")
        if self.huber_c <= 0 or self.sigma_data <= 0 or self.timestep_scaling <= 0:
            raise VideoSceneError("leap.huber_c, leap.sigma_data and leap.timestep_scaling must be positive")
        weights = (self.leap_weight, self.ground_truth_weight, self.pixel_weight, self.ssim_weight)
        if min(weights) < 0 or sum(weights) == 0:
            raise VideoSceneError(
                f"leap.leap_weight={self.leap_weight}, leap.ground_truth_weight={self.ground_truth_weight}, "
                f"leap.pixel_weight={self.pixel_weight} and leap.ssim_weight={self.ssim_weight} must be ≥ 0 "
                "and not all 0"
            )
        if self.teacher_guidance_scale < 1:
            raise VideoSceneError(
                f"leap.teacher_guidance_scale={self.teacher_guidance_scale} must be ≥ 1 (1 = no guidance)"
            )

    def on_grid(self, timestep: int) -> bool:
        return timestep % self.skip == self.skip - 1


@dataclass(frozen=True)
class DataConfig:
    """Which clips are distilled on, and where their cached latents live (see distill/cache.py)."""

    train_dirs: tuple[str, ...] = ()  # RealEstate10K-format split folders
    val_dirs: tuple[str, ...] = ()
    cache_dir: str = "cache/distill"  # root; each cache is a sub-folder named by the hash of what made it
    # Prebuilt cache folders (written by distill/cache.py) used as they are instead of building them.
    train_cache: str | None = None
    val_cache: str | None = None
    num_frames: int = 17
    min_stride: int = 1
    max_stride: int = 3
    near: float = 1.0
    far: float = 100.0
    clips_per_scene: int = 4  # different strides/starts per training scene
    max_train_clips: int | None = None
    max_val_clips: int | None = 8
    store_frames: bool = True  # keep uint8 frames of the render and ground truth (validation PSNR and videos)
    seed: int = 0

    @property
    def needs_prior(self) -> bool:
        """A cache has to be built (not given prebuilt), which takes the trained prior."""
        return self.train_cache is None or (self.val_cache is None and bool(self.val_dirs))

    def __post_init__(self) -> None:
        if self.train_cache is None and not self.train_dirs:
            raise VideoSceneError(
                "data needs train_dirs (split folders of chunks) or train_cache (a prebuilt cache folder)"
            )
        if self.clips_per_scene < 1:
            raise VideoSceneError(f"data.clips_per_scene must be ≥ 1, got {self.clips_per_scene}")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 2000
    batch_size: int = 2
    learning_rate: float = 1e-5
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    ema_decay: float = 0.95  # μ of θ⁻ ← μθ⁻ + (1−μ)θ (LCM's default; the paper does not state it)
    # "attention": attn1 to_q/to_k/to_v/to_out of every CogVideoX block ([PN]: "only attention layers");
    # "all": every transformer parameter.
    trainable: Literal["attention", "all"] = "attention"
    gradient_checkpointing: bool = False
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    validate_every: int = 500
    validation_clips: int = 4
    # Timestep of validation when DDPNet is not trained (policy.train_steps = 0); ignored without the leap.
    validation_timestep: int = 499
    # CPU threads for torch (None: torch's default). On a shared CPU, 1 is often several times faster.
    num_threads: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "checkpoint_every", "keep_checkpoints", "validate_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise VideoSceneError(f"train.{name} must be ≥ 1, got {getattr(self, name)}")
        if self.learning_rate <= 0 or self.max_grad_norm <= 0:
            raise VideoSceneError("train.learning_rate and train.max_grad_norm must be positive")
        if not 0 <= self.ema_decay < 1:
            raise VideoSceneError(f"train.ema_decay={self.ema_decay} must be in [0, 1)")
        if self.trainable not in ("attention", "all"):
            raise VideoSceneError(f"train.trainable={self.trainable!r}; choose 'attention' or 'all'")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise VideoSceneError(
                f"train.mixed_precision={self.mixed_precision!r}; choose 'no', 'bf16' or 'fp16'"
            )
        if self.num_threads is not None and self.num_threads < 1:
            raise VideoSceneError(f"train.num_threads must be ≥ 1 or null, got {self.num_threads}")
        # At load, before the schedule is: the same range distill.student.start_timestep holds every fixed t
        # to.
        if not 1 <= self.validation_timestep < NUM_TRAIN_TIMESTEPS:
            raise VideoSceneError(f"train.validation_timestep must be in 1..{NUM_TRAIN_TIMESTEPS - 1}")


@dataclass(frozen=True)
class DistillConfig:
    teacher: str  # a VideoBackbone folder (save_pretrained) or a diffusers CogVideoX I2V folder
    data: DataConfig
    prior: str | None = None  # the trained prior's folder; needed only to build caches
    prompt_embeds: str | None = None  # for a diffusers teacher folder: the precomputed prompt embedding
    leap: LeapConfig = field(default_factory=LeapConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        leap = self.leap
        for t in self.policy.candidates:
            if not leap.on_grid(t) or t > leap.max_timestep:
                raise VideoSceneError(
                    f"policy candidate t={t} must lie on the skip-{leap.skip} grid ({leap.skip - 1}, "
                    f"{2 * leap.skip - 1}, …) "
                    f"and be ≤ T′={leap.max_timestep}"
                )
        if self.prior is None and self.data.needs_prior:
            raise VideoSceneError(
                "building the distillation cache needs the trained prior: set `prior` (a folder) in "
                "the config"
            )

    @property
    def trains_policy(self) -> bool:
        """DDPNet only makes sense with the leap (without it the student starts from pure noise)."""
        return not self.leap.no_leap and self.policy.train_steps > 0

    def with_no_leap(self) -> DistillConfig:
        return replace(self, leap=replace(self.leap, no_leap=True))

    # -- JSON ------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": CONFIG_FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> DistillConfig:
        data = dict(data)
        fmt = data.pop("format", CONFIG_FORMAT)
        if fmt != CONFIG_FORMAT:
            raise VideoSceneError(f"{source} has format {fmt!r}; expected {CONFIG_FORMAT!r}")
        sections = {"leap": LeapConfig, "policy": PolicyConfig, "data": DataConfig, "train": TrainConfig}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in sections:
                if not isinstance(value, dict):
                    raise VideoSceneError(f"{source}: section {key!r} must be a JSON object")
                value = _section(sections[key], value, f"{source}: {key}")
            kwargs[key] = value
        return _section(cls, kwargs, source)

    def save_json(self, path: str | os.PathLike) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load_json(cls, path: str | os.PathLike) -> DistillConfig:
        path = Path(path)
        if not path.is_file():  # its own wording, which the CLI tests check
            raise VideoSceneError(
                f"distillation config {path} not found; pass a JSON file such as configs/distill_tiny.json"
            )
        return cls.from_dict(read_json_object(path, "distillation config"), source=str(path))


def load_leap_config(path: str | os.PathLike) -> LeapConfig:
    """The loss settings a student was distilled with: the `leap` section of its distill_config.json. Only
    this section is read, so that an imported student (`videoscene weights import-official`), which has no
    training data or teacher of ours, needs only this section and a note of its source."""
    path = Path(path)
    raw = read_json_object(path, "distillation config")
    fmt = raw.get("format", CONFIG_FORMAT)
    if fmt != CONFIG_FORMAT:
        raise VideoSceneError(f"{path} has format {fmt!r}; expected {CONFIG_FORMAT!r}")
    leap = raw.get("leap", {})
    if not isinstance(leap, dict):
        raise VideoSceneError(f"{path}: section 'leap' must be a JSON object")
    return _section(LeapConfig, leap, f"{path}: leap")


def _section(cls, values: dict[str, Any], where: str):
    """Build a config dataclass from JSON values: unknown or missing keys are one-line errors, lists become
    tuples."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise VideoSceneError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(known)}")
    check_json_types(cls, values, where)
    converted = {key: tuple(value) if isinstance(value, list) else value for key, value in values.items()}
    try:
        return cls(**converted)
    except TypeError as error:
        raise VideoSceneError(f"{where}: {error}") from None
