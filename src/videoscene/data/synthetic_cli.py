"""`videoscene data synth`: render procedural indoor scenes (videoscene.data.synthetic) to
RealEstate10K chunks: OUT/<split>/000000.torch, ..., OUT/<split>/index.json, optional z-depth in
OUT/<split>/depth/<key>.npz (float16 [F, H, W], metres), and OUT/synthetic.json with the settings.

Scene i of a seed is the same whatever --scenes, --workers or --scenes-per-chunk, and the same
settings give bit-identical chunks. The output folder is built aside and moved into place only when
everything is written.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import torch

from videoscene import __version__
from videoscene.data.depth import DEPTH_FOLDER, write_depth
from videoscene.data.re10k import Scene, scene_from_frames, write_split
from videoscene.data.synthetic import SynthConfig, check_render_size, render_scene
from videoscene.errors import VideoSceneError
from videoscene.io_utils import staged_output_dir, write_json_atomic

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenes", type=int, required=True, help="number of scenes (clips) to render")
    parser.add_argument(
        "--frames", type=int, default=25, help="frames per clip (8k+1 suits the video VAE: 9, 17, 25, 49)"
    )
    parser.add_argument("--height", type=int, default=128, help="image height in pixels")
    parser.add_argument("--width", type=int, default=192, help="image width in pixels")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed; scene i draws from (seed, i)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (must not exist or be empty)")
    parser.add_argument(
        "--split", choices=("train", "test"), default="train", help="split folder name inside --out"
    )
    parser.add_argument(
        "--depth", action="store_true", help="also store float16 z-depth per frame in <split>/depth/<key>.npz"
    )
    parser.add_argument("--scenes-per-chunk", type=int, default=16, help="scenes per .torch chunk")
    parser.add_argument(
        "--supersample",
        type=int,
        default=SynthConfig.supersample,
        help="rays per pixel side at edges (anti-aliasing); 1 = one ray per pixel",
    )
    parser.add_argument("--workers", type=int, default=1, help="processes rendering scenes in parallel")
    parser.add_argument(
        "--walk-scale",
        type=float,
        default=1.0,
        help="scale how far each camera walk travels and turns (2: twice the baseline; walks that "
        "would hit walls are redrawn)",
    )
    parser.add_argument(
        "--min-overlap",
        type=float,
        default=SynthConfig.min_overlap,
        metavar="X",
        help="least share of each end view's points that the walk's other end sees (lower it, with a larger "
        "--walk-scale, for low-overlap pairs whose renders have holes)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")


def scene_key(seed: int, index: int) -> str:
    return f"synth-{seed}-{index:06d}"


def _render_job(job: tuple[int, int, int, int, int, SynthConfig]):
    seed, index, frames, height, width, config = job
    return render_scene(seed, index, frames, height, width, config)


def _init_worker() -> None:
    # Each worker is one core's worth of work; don't let libraries spawn their own thread pools.
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _scenes(args: argparse.Namespace, config: SynthConfig, depth_dir: Path | None) -> Iterator[Scene]:
    jobs = [(args.seed, index, args.frames, args.height, args.width, config) for index in range(args.scenes)]
    start = time.perf_counter()
    pool = (
        multiprocessing.get_context("spawn").Pool(args.workers, initializer=_init_worker)
        if args.workers > 1
        else None
    )
    try:
        results = pool.imap(_render_job, jobs) if pool else map(_render_job, jobs)
        for index, (frames, extrinsics, intrinsics, depth) in enumerate(results):
            key = scene_key(args.seed, index)
            if depth_dir is not None:
                write_depth(depth_dir / f"{key}.npz", depth)
            yield scene_from_frames(
                key,
                frames,
                torch.from_numpy(extrinsics),
                torch.from_numpy(intrinsics),
                url=f"videoscene-synthetic:seed={args.seed}:index={index}",
            )
            done = index + 1
            if done % max(1, args.scenes // 10) == 0 or done == args.scenes:
                elapsed = time.perf_counter() - start
                logger.info(
                    "rendered %d/%d scenes (%.1f frames/s)", done, args.scenes, done * args.frames / elapsed
                )
    finally:
        if pool:
            pool.terminate()


def _check_arguments(args: argparse.Namespace) -> SynthConfig:
    if args.scenes < 1:
        raise VideoSceneError(f"--scenes must be at least 1, got {args.scenes}")
    check_render_size(args.frames, args.height, args.width)
    if args.seed < 0:
        raise VideoSceneError(f"--seed must be non-negative, got {args.seed}")
    if args.scenes_per_chunk < 1:
        raise VideoSceneError(f"--scenes-per-chunk must be at least 1, got {args.scenes_per_chunk}")
    if args.workers < 1:
        raise VideoSceneError(f"--workers must be at least 1, got {args.workers}")
    return SynthConfig(supersample=args.supersample, walk_scale=args.walk_scale, min_overlap=args.min_overlap)


def run(args: argparse.Namespace) -> None:
    config = _check_arguments(args)
    with staged_output_dir(args.out, overwrite=args.overwrite) as stage:
        split_dir = stage / args.split
        depth_dir = split_dir / DEPTH_FOLDER if args.depth else None
        if depth_dir is not None:
            depth_dir.mkdir(parents=True)
        index = write_split(split_dir, _scenes(args, config, depth_dir), args.scenes_per_chunk)
        write_json_atomic(
            stage / "synthetic.json",
            {
                "generator": "videoscene.data.synthetic",
                "version": __version__,
                "seed": args.seed,
                "scenes": args.scenes,
                "frames": args.frames,
                "height": args.height,
                "width": args.width,
                "split": args.split,
                "depth": bool(args.depth),
                **asdict(config),
            },
        )
    logger.info(
        "wrote %d scenes in %d chunks to %s", len(index), len(set(index.values())), args.out / args.split
    )
