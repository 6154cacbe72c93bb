"""Evaluation index JSON, as pixelSplat/MVSplat/VideoScene use it:
`{scene_key: {"context": [i, j], "target": [...]}}` with `null` for skipped scenes.

`videoscene data make-index` picks, per scene, a context pair `gap` frames apart and the frames
between them as targets (both ends included, every `target_stride`-th frame).
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from pathlib import Path

from videoscene.data.re10k import iter_scenes
from videoscene.errors import VideoSceneError
from videoscene.io_utils import read_json_object, write_json_atomic


@dataclass(frozen=True)
class IndexEntry:
    context: tuple[int, int]
    target: tuple[int, ...]


def read_evaluation_index(path: str | Path) -> dict[str, IndexEntry | None]:
    path = Path(path)
    raw = read_json_object(
        path,
        "evaluation index",
        "; make one with `videoscene data make-index`",
        "a JSON object mapping scene keys to entries",
    )
    index: dict[str, IndexEntry | None] = {}
    for key, entry in raw.items():
        if entry is None:
            index[key] = None
            continue
        context, target = (
            (entry.get("context"), entry.get("target")) if isinstance(entry, dict) else (None, None)
        )
        valid = (
            isinstance(context, list)
            and len(context) == 2
            and isinstance(target, list)
            and len(target) >= 1
            and all(isinstance(i, int) and i >= 0 for i in context + target)
        )
        if not valid:
            raise VideoSceneError(
                f'evaluation index {path}: entry {key!r} must be {{"context": [i, j], "target": [k, ...]}} '
                "with non-negative frame indices"
            )
        index[key] = IndexEntry(tuple(context), tuple(target))
    return index


def write_evaluation_index(path: str | Path, index: dict[str, IndexEntry | None]) -> None:
    write_json_atomic(
        path,
        {
            key: None if e is None else {"context": list(e.context), "target": list(e.target)}
            for key, e in index.items()
        },
    )


def make_evaluation_index(
    split_dir: str | Path, gap: int, target_stride: int = 1, seed: int = 0, centered: bool = False
) -> dict[str, IndexEntry | None]:
    """One context pair per scene, `gap` frames apart; scenes shorter than gap+1 frames get null."""
    if gap < 1 or target_stride < 1 or gap % target_stride != 0:
        raise VideoSceneError(
            f"need gap >= 1 and target_stride dividing gap, got gap={gap}, target_stride={target_stride}"
        )
    rng = random.Random(seed)
    index: dict[str, IndexEntry | None] = {}
    for scene in iter_scenes(split_dir):
        frames = len(scene)
        if frames <= gap:
            index[scene.key] = None
            continue
        start = (frames - 1 - gap) // 2 if centered else rng.randint(0, frames - 1 - gap)
        index[scene.key] = IndexEntry(
            (start, start + gap), tuple(range(start, start + gap + 1, target_stride))
        )
    return index


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, help="split folder of RealEstate10K chunks (holding index.json)"
    )
    parser.add_argument("--out", required=True, help="evaluation index JSON to write")
    parser.add_argument("--gap", type=int, required=True, help="frames between the two context views")
    parser.add_argument(
        "--target-stride", type=int, default=1, help="take every Nth frame between them as a target"
    )
    parser.add_argument(
        "--centered",
        action="store_true",
        help="centre the pair in each scene instead of a seeded random start",
    )
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> None:
    if Path(args.out).exists():
        raise VideoSceneError(f"{args.out} already exists; choose another --out")
    index = make_evaluation_index(args.data, args.gap, args.target_stride, args.seed, args.centered)
    write_evaluation_index(args.out, index)
