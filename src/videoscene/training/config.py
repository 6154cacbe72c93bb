"""Training configs: typed dataclasses read from JSON (unknown keys and wrong types are errors), the fields
and checks every run has, and the learning-rate schedule."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields, is_dataclass
from typing import Any, Literal, TypeVar

from videoscene.config_json import check_json_types, with_tuples
from videoscene.errors import VideoSceneError
from videoscene.io_utils import read_json_object

ConfigT = TypeVar("ConfigT")


def config_from_dict(cls: type[ConfigT], data: dict[str, Any], source: str) -> ConfigT:
    """A dataclass from a JSON object; unknown keys are errors so that a typo never falls back to a
    default."""
    if not isinstance(data, dict):
        raise VideoSceneError(f"{source} must hold a JSON object")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise VideoSceneError(f"{source} has unknown keys {unknown}; known keys: {sorted(known)}")
    check_json_types(cls, data, source)
    try:
        return cls(**with_tuples(cls, data))
    except TypeError as error:
        raise VideoSceneError(f"{source} is malformed ({error})") from None


def load_config(cls: type[ConfigT], path: str | os.PathLike) -> ConfigT:
    data = read_json_object(path, "training config", "; pass a JSON file such as configs/vae_tiny_train.json")
    return config_from_dict(cls, data, f"training config {path}")


def config_to_dict(config: Any) -> dict[str, Any]:
    if not is_dataclass(config):
        raise TypeError(f"{type(config).__name__} is not a dataclass")
    return json.loads(json.dumps(asdict(config)))  # tuples → lists, as they read back from JSON


def warmup_cosine(warmup: int, total: int, min_ratio: float):
    """lr multiplier at optimiser step s: linear warm-up over `warmup` steps, then cosine to `min_ratio`."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


@dataclass
class RunConfig:
    """The fields of every `train prior|vae|teacher` config (each redeclares the defaults that suit it):
    AdamW with linear warm-up then cosine decay, gradient clipping, and the loop's cadences."""

    batch_size: int = 8  # per process
    steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # the cosine decays to lr · min_lr_ratio
    grad_clip: float = 1.0
    seed: int = 0
    num_threads: int | None = None  # torch CPU threads (None: torch's default)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"  # accelerate
    log_every: int = 10
    validate_every: int = 250
    checkpoint_every: int = 100
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        for name in (
            "batch_size",
            "steps",
            "log_every",
            "validate_every",
            "checkpoint_every",
            "keep_checkpoints",
        ):
            positive(self, name)
        if self.lr <= 0 or self.grad_clip <= 0 or self.warmup_steps < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise VideoSceneError(
                "training config: need lr > 0, grad_clip > 0, warmup_steps >= 0 and 0 <= min_lr_ratio <= 1"
            )

    def lr_factor(self):
        return warmup_cosine(self.warmup_steps, self.steps, self.min_lr_ratio)


def positive(config: Any, *names: str) -> None:
    """Each named field of `config` must be an integer >= 1."""
    for name in names:
        if getattr(config, name) < 1:
            raise VideoSceneError(f"training config: {name} must be >= 1, got {getattr(config, name)}")
