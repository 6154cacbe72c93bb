"""Evaluation index JSON, as pixelSplat/MVSplat/VideoScene use it:
`{scene_key: {"context": [i, j], "target": [...]}}` with `null` for skipped scenes, and optionally
`"overlap"`: the measured overlap of the context pair (indexes chosen by overlap record it; readers that do
not know the key ignore it), and `"holdout"`: frames that no method generates, scored off the generated path
by the methods that build a 3D scene (`prior`, `recon-*`; docs/reconstruct.md).

`videoscene data make-index` picks, per scene, a context pair and the frames between them as targets (both
ends included, every `target_stride`-th frame):
- by gap: a pair `gap` frames apart, at a seeded random start (or centred);
- by overlap (`--max-overlap X`, the paper's regime of views that overlap little; needs ground-truth depth,
  `videoscene data synth --depth`): of all pairs (i, j), i < j, more than `target_stride` frames apart (so
  that there is a held-out target between them) and at most `gap` frames apart when a gap is given, the pair
  whose overlap is the largest that is at most X (ties: the shorter gap, then the earlier start). The overlap
  of (i, j) is the smaller of two shares: of frame i's pixels, at their ground-truth depth, that frame j sees
  (inside its image and not occluded, geometry/visibility.py), and of frame j's pixels that frame i sees.
  The smaller one, because one direction alone calls a dolly pair overlapping whichever way the camera moves
  (the wide view sees nearly all of the narrow one, however much of the wide view the narrow one misses),
  and so that (i, j) and (j, i) overlap alike. Scenes without such a pair, or without depth, get null.

With `--holdout` (needs `--target-stride` 2 or more), the frames between the context pair that are not
targets are listed as the scene's holdout frames: with stride 2, every other frame.
"""

from __future__ import annotations

import argparse
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from videoscene.data.depth import read_depth
from videoscene.data.re10k import Scene, iter_scenes
from videoscene.errors import VideoSceneError
from videoscene.geometry.visibility import VISIBILITY_TOLERANCE, covisible_share
from videoscene.io_utils import read_json_object, write_json_atomic

logger = logging.getLogger(__name__)

_VIEWS_PER_BATCH = 16  # other views scored at once by `pair_overlaps` (bounds the memory)


@dataclass(frozen=True)
class IndexEntry:
    context: tuple[int, int]
    target: tuple[int, ...]
    overlap: float | None = None  # the context pair's overlap, when the index was chosen by it
    holdout: tuple[int, ...] = ()  # frames scored off the generated path (docs/reconstruct.md)


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
        overlap = entry.get("overlap") if isinstance(entry, dict) else None
        holdout = entry.get("holdout", []) if isinstance(entry, dict) else []
        valid = (
            isinstance(context, list)
            and len(context) == 2
            and isinstance(target, list)
            and len(target) >= 1
            and all(isinstance(i, int) and i >= 0 for i in context + target)
            and (
                overlap is None
                or (isinstance(overlap, int | float) and not isinstance(overlap, bool) and 0 <= overlap <= 1)
            )
            and isinstance(holdout, list)
            and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in holdout)
        )
        if not valid:
            raise VideoSceneError(
                f'evaluation index {path}: entry {key!r} must be {{"context": [i, j], "target": [k, ...]}} '
                'with non-negative frame indices (and optionally "overlap": a share in [0, 1], "holdout": '
                "[frame, ...])"
            )
        index[key] = IndexEntry(
            tuple(context), tuple(target), None if overlap is None else float(overlap), tuple(holdout)
        )
    return index


def _entry_json(entry: IndexEntry) -> dict:
    values = {"context": list(entry.context), "target": list(entry.target)}
    if entry.overlap is not None:
        values["overlap"] = entry.overlap
    if entry.holdout:
        values["holdout"] = list(entry.holdout)
    return values


def with_holdout(entry: IndexEntry | None) -> IndexEntry | None:
    """The entry with the frames between its context pair that are not targets as holdout frames."""
    if entry is None:
        return None
    first, last = sorted(entry.context)
    holdout = tuple(k for k in range(first + 1, last) if k not in set(entry.target))
    return IndexEntry(entry.context, entry.target, entry.overlap, holdout)


def _check_holdout_stride(target_stride: int) -> None:
    if target_stride < 2:
        raise VideoSceneError(
            "--holdout keeps the frames between the targets out: it needs --target-stride 2 or more "
            "(2: every other frame is a target, the others are held out)"
        )


def write_evaluation_index(path: str | Path, index: dict[str, IndexEntry | None]) -> None:
    write_json_atomic(path, {key: None if e is None else _entry_json(e) for key, e in index.items()})


def make_evaluation_index(
    split_dir: str | Path,
    gap: int,
    target_stride: int = 1,
    seed: int = 0,
    centered: bool = False,
    holdout: bool = False,
) -> dict[str, IndexEntry | None]:
    """One context pair per scene, `gap` frames apart; scenes shorter than gap+1 frames get null. With
    `holdout`, the frames between the targets are the scene's holdout frames."""
    if gap < 1 or target_stride < 1 or gap % target_stride != 0:
        raise VideoSceneError(
            f"need gap >= 1 and target_stride dividing gap, got gap={gap}, target_stride={target_stride}"
        )
    if holdout:
        _check_holdout_stride(target_stride)
    rng = random.Random(seed)
    index: dict[str, IndexEntry | None] = {}
    for scene in iter_scenes(split_dir):
        frames = len(scene)
        if frames <= gap:
            index[scene.key] = None
            continue
        start = (frames - 1 - gap) // 2 if centered else rng.randint(0, frames - 1 - gap)
        entry = IndexEntry((start, start + gap), tuple(range(start, start + gap + 1, target_stride)))
        index[scene.key] = with_holdout(entry) if holdout else entry
    return index


def pair_overlaps(
    depth: np.ndarray,
    extrinsics: torch.Tensor,
    intrinsics: torch.Tensor,
    min_gap: int,
    max_gap: int,
    tolerance: float = VISIBILITY_TOLERANCE,
) -> dict[tuple[int, int], float]:
    """The overlap (module docstring: the smaller of the two covisible shares) of every frame pair (i, j)
    with min_gap <= j - i <= max_gap, from the scene's z-depth `[F, H, W]` and cameras `[F, 4, 4]`,
    `[F, 3, 3]`."""
    depth_maps, count = torch.from_numpy(depth), len(depth)
    shares: dict[tuple[int, int], float] = {}  # (seen, seeing): share of frame `seen` that `seeing` sees
    for seen in range(count):
        seeing = [other for other in range(count) if min_gap <= abs(other - seen) <= max_gap]
        for start in range(0, len(seeing), _VIEWS_PER_BATCH):
            batch = seeing[start : start + _VIEWS_PER_BATCH]
            values = covisible_share(
                depth_maps[seen],
                extrinsics[seen],
                intrinsics[seen],
                depth_maps[batch],
                extrinsics[batch],
                intrinsics[batch],
                tolerance,
            )
            shares |= {(seen, other): value for other, value in zip(batch, values.tolist())}
    return {(i, j): min(value, shares[j, i]) for (i, j), value in shares.items() if i < j}


def overlap_entry(
    scene: Scene,
    depth: np.ndarray,
    max_overlap: float,
    max_gap: int | None = None,
    target_stride: int = 1,
    tolerance: float = VISIBILITY_TOLERANCE,
) -> IndexEntry | None:
    """The scene's context pair chosen by overlap (module docstring), or None when no pair qualifies."""
    if len(depth) != len(scene):
        raise VideoSceneError(f"scene {scene.key} has {len(scene)} frames but depth for {len(depth)}")
    min_gap = max(2, target_stride + 1)  # at least one held-out target between the pair
    overlaps = pair_overlaps(
        depth,
        scene.extrinsics,
        scene.intrinsics,
        min_gap,
        len(scene) - 1 if max_gap is None else max_gap,
        tolerance,
    )
    eligible = [pair for pair, overlap in overlaps.items() if overlap <= max_overlap]
    if not eligible:
        return None
    first, last = max(eligible, key=lambda pair: (overlaps[pair], pair[0] - pair[1], -pair[0]))
    targets = list(range(first, last + 1, target_stride))
    if targets[-1] != last:
        targets.append(last)
    # Rounded so that the index file and the entry in memory hold the same number.
    return IndexEntry((first, last), tuple(targets), round(overlaps[first, last], 4))


def make_overlap_index(
    split_dir: str | Path,
    max_overlap: float,
    max_gap: int | None = None,
    target_stride: int = 1,
    tolerance: float = VISIBILITY_TOLERANCE,
    holdout: bool = False,
) -> dict[str, IndexEntry | None]:
    """One context pair per scene, chosen by overlap (module docstring); needs `<split>/depth/<key>.npz`.
    With `holdout`, the frames between the targets are the scene's holdout frames."""
    if holdout:
        _check_holdout_stride(target_stride)
    if not 0 <= max_overlap <= 1:  # NaN too
        raise VideoSceneError(f"the largest overlap must be a share in [0, 1], got {max_overlap}")
    if target_stride < 1 or (max_gap is not None and max_gap <= max(1, target_stride)):
        raise VideoSceneError(
            f"need target_stride >= 1 and a gap above it (a held-out target between the pair), got "
            f"gap={max_gap}, target_stride={target_stride}"
        )
    index: dict[str, IndexEntry | None] = {}
    without_depth: list[str] = []
    for scene in iter_scenes(split_dir):
        depth = read_depth(split_dir, scene.key, len(scene))
        if depth is None:
            without_depth.append(scene.key)
            index[scene.key] = None
            continue
        index[scene.key] = overlap_entry(scene, depth, max_overlap, max_gap, target_stride, tolerance)
        if holdout:
            index[scene.key] = with_holdout(index[scene.key])
        if index[scene.key] is None:
            logger.info("scene %s: no context pair overlaps %.2f or less; skipped", scene.key, max_overlap)
    if without_depth and len(without_depth) == len(index):
        raise VideoSceneError(
            f"no scene of {split_dir} has ground-truth depth (depth/<key>.npz), which choosing context "
            "pairs by overlap needs; render the split with `videoscene data synth --depth`"
        )
    if without_depth:
        logger.warning(
            "%d scenes have no depth (e.g. %s) and are skipped", len(without_depth), without_depth[0]
        )
    logger.info(
        "%d of %d scenes have a context pair with overlap <= %.2f",
        sum(entry is not None for entry in index.values()),
        len(index),
        max_overlap,
    )
    return index


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, help="split folder of RealEstate10K chunks (holding index.json)"
    )
    parser.add_argument("--out", required=True, help="evaluation index JSON to write")
    parser.add_argument(
        "--gap",
        type=int,
        default=None,
        help="frames between the two context views (with --max-overlap: at most this many; required without)",
    )
    parser.add_argument(
        "--max-overlap",
        type=float,
        default=None,
        metavar="X",
        help="choose each scene's pair by overlap instead: the pair whose share of frame i's pixels that "
        "frame j sees is the largest at most X (needs <data>/depth, `videoscene data synth --depth`)",
    )
    parser.add_argument(
        "--target-stride", type=int, default=1, help="take every Nth frame between them as a target"
    )
    parser.add_argument(
        "--centered",
        action="store_true",
        help="centre the pair in each scene instead of a seeded random start",
    )
    parser.add_argument(
        "--holdout",
        action="store_true",
        help="list the frames between the targets (with --target-stride 2: every other frame) as holdout "
        "frames, scored off the generated path by the prior and recon-* methods",
    )
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> None:
    if args.max_overlap is None and args.gap is None:
        raise VideoSceneError(
            "pass --gap N (pairs N frames apart) or --max-overlap X (pairs chosen by overlap)"
        )
    if args.max_overlap is not None and args.centered:
        raise VideoSceneError("--centered applies to pairs chosen by --gap, not by --max-overlap")
    if Path(args.out).exists():
        raise VideoSceneError(f"{args.out} already exists; choose another --out")
    if args.max_overlap is not None:
        index = make_overlap_index(
            args.data, args.max_overlap, args.gap, args.target_stride, holdout=args.holdout
        )
    else:
        index = make_evaluation_index(
            args.data, args.gap, args.target_stride, args.seed, args.centered, args.holdout
        )
    write_evaluation_index(args.out, index)
