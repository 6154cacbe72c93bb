"""Clips from RealEstate10K-format chunks: a context pair and F target frames between them.

The targets include both context frames, as in VideoScene's RE10K index (49 targets from frame i to
frame j in steps of 2): F = 8k + 1 so the CogVideoX VAE round-trips (docs/conventions.md).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from videoscene.data.re10k import Scene, load_index, read_chunk
from videoscene.errors import VideoSceneError
from videoscene.types import Example, Views


@dataclass
class ClipSamplerConfig:
    """How a clip is cut out of a scene: `num_frames` targets at a stride drawn from [min_stride,
    max_stride]."""

    num_frames: int = 17
    min_stride: int = 1
    max_stride: int = 1
    near: float = 1.0
    far: float = 100.0

    def __post_init__(self) -> None:
        if self.num_frames < 2 or (self.num_frames - 1) % 8 != 0:
            raise VideoSceneError(
                f"num_frames must be 8k+1 (9, 17, 25, 49) so the VAE round-trips, got {self.num_frames}"
            )
        if not 1 <= self.min_stride <= self.max_stride:
            raise VideoSceneError(
                f"need 1 <= min_stride <= max_stride, got {self.min_stride}, {self.max_stride}"
            )
        if not 0 < self.near < self.far:
            raise VideoSceneError(f"need 0 < near < far, got near={self.near}, far={self.far}")


def views_from_scene(scene: Scene, indices: Sequence[int], near: float, far: float) -> Views:
    indices = list(indices)
    count = len(indices)
    return Views(
        image=scene.frames(indices),
        extrinsics=scene.extrinsics[indices],
        intrinsics=scene.intrinsics[indices],
        # float(): a JSON config may give a whole number, and torch.full would then make an int64 tensor
        near=torch.full((count,), float(near)),
        far=torch.full((count,), float(far)),
        index=torch.tensor(indices, dtype=torch.int64),
    )


def example_from_scene(
    scene: Scene, context: Sequence[int], target: Sequence[int], near: float, far: float
) -> Example:
    for i in list(context) + list(target):
        if not 0 <= i < len(scene):
            raise VideoSceneError(
                f"scene {scene.key} has {len(scene)} frames; frame index {i} is out of range"
            )
    return Example(
        views_from_scene(scene, context, near, far), views_from_scene(scene, target, near, far), scene.key
    )


class SceneStore:
    """Random access to the scenes of one or more split folders, reading each chunk once."""

    def __init__(self, split_dirs: Sequence[str | Path]):
        if not split_dirs:
            raise VideoSceneError(
                "no data folders given; pass at least one split folder of RealEstate10K chunks"
            )
        self.location: dict[str, Path] = {}
        for split_dir in map(Path, split_dirs):
            for key, chunk in load_index(split_dir).items():
                self.location[key] = split_dir / chunk
        if not self.location:
            raise VideoSceneError(f"the index files in {[str(d) for d in split_dirs]} list no scenes")
        self.keys = sorted(self.location)
        self._cache: dict[str, Scene] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, key: str) -> Scene:
        if key not in self._cache:
            chunk = self.location[key]
            for scene in read_chunk(chunk):
                if scene.key in self.location:
                    self._cache[scene.key] = scene
            if key not in self._cache:
                raise VideoSceneError(f"scene {key} is listed in the index but missing from chunk {chunk}")
        return self._cache[key]


class ClipDataset(Dataset):
    """One clip per scene per epoch. Training draws stride and start at random; with `deterministic`
    (validation) each scene always yields the same clip, derived from `seed` and the scene position."""

    def __init__(
        self,
        split_dirs: Sequence[str | Path],
        config: ClipSamplerConfig,
        seed: int = 0,
        deterministic: bool = False,
    ):
        self.store = SceneStore(split_dirs)
        self.config = config
        self.seed = seed
        self.deterministic = deterministic
        shortest = (config.num_frames - 1) * config.min_stride + 1
        self.keys = [key for key in self.store.keys if self._length(key) >= shortest]
        if not self.keys:
            raise VideoSceneError(
                f"no scene has the {shortest} frames a {config.num_frames}-frame clip needs; lower num_frames"
            )

    def _length(self, key: str) -> int:
        return len(self.store[key])

    def __len__(self) -> int:
        return len(self.keys)

    def clip_indices(self, key: str, rng: random.Random) -> list[int]:
        frames = self._length(key)
        span = self.config.num_frames - 1
        max_stride = min(self.config.max_stride, (frames - 1) // span)
        stride = rng.randint(self.config.min_stride, max_stride)
        start = rng.randint(0, frames - 1 - span * stride)
        return [start + stride * i for i in range(self.config.num_frames)]

    def __getitem__(self, position: int) -> Example:
        key = self.keys[position]
        # Training draws from torch's generator so `torch.manual_seed` and DataLoader worker seeding apply.
        seed = hash((self.seed, position)) if self.deterministic else int(torch.randint(0, 2**62, ()).item())
        rng = random.Random(seed)
        target = self.clip_indices(key, rng)
        return example_from_scene(
            self.store[key], [target[0], target[-1]], target, self.config.near, self.config.far
        )


def collate_examples(examples: list[Example]) -> Example:
    """Stack examples into a batch; every field gains a leading batch axis."""
    if len({tuple(e.target.image.shape) for e in examples}) > 1:
        raise VideoSceneError("examples in one batch must share frame count and image size")

    def stack(views: list[Views]) -> Views:
        return Views(
            image=torch.stack([v.image for v in views]),
            extrinsics=torch.stack([v.extrinsics for v in views]),
            intrinsics=torch.stack([v.intrinsics for v in views]),
            near=torch.stack([v.near for v in views]),
            far=torch.stack([v.far for v in views]),
            index=torch.stack([v.index for v in views]) if views[0].index is not None else None,
        )

    return Example(
        stack([e.context for e in examples]),
        stack([e.target for e in examples]),
        ",".join(e.scene for e in examples),
    )
