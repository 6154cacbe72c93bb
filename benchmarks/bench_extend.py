"""The web app's "extend" camera path against ground truth: how good are the frames beyond the two views?

    python benchmarks/bench_extend.py [--weights DIR] [--seeds 8 9 10 11] [--rooms 3] [--frames 17]

The video model is conditioned on the two views as its first and last frame; on an extended path
(`geometry.trajectory.extended_cameras`, half the motion between the views continued beyond each) those
frames lie beyond the views, so the conditioning and the render disagree there. This measures what that
costs. Per synthetic room (seeds no dataset of docs/results.md uses; true cameras; the model's resolution)
the pipeline runs on the extended path and, for comparison, on the interpolated path between the views
(the same cameras as the extended path's inner frames), and every frame is scored (PSNR) against the room
rendered at its camera. Rows: frames beyond the views, the path's two end frames, and the frames between
the views on each path; columns: coarse render and generated video.

Prints a table and writes benchmarks/results/extend.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from videoscene.data.synthetic import SynthConfig, render_scene, render_view, sample_scene
from videoscene.geometry.trajectory import extended_cameras
from videoscene.io_utils import write_json_atomic
from videoscene.metrics.image import psnr
from videoscene.pipeline import VideoScenePipeline
from videoscene.types import Cameras

RESULTS = Path(__file__).resolve().parent / "results" / "extend.json"


def score_room(pipeline: VideoScenePipeline, seed: int, index: int, num_frames: int) -> dict[str, float]:
    height, width = pipeline.config.height, pipeline.config.width
    config = SynthConfig()
    room, _ = sample_scene(seed, index, config)
    views, extrinsics, intrinsics, _ = render_scene(seed, index, 2, height, width, config)
    images = torch.from_numpy(views).permute(0, 3, 1, 2).float() / 255
    cameras = Cameras(torch.from_numpy(extrinsics), torch.from_numpy(intrinsics))
    path = Cameras(*extended_cameras(*cameras.extrinsics, *cameras.intrinsics, num_frames))
    truth = torch.stack(
        [
            torch.from_numpy(render_view(room, e.double().numpy(), k.double().numpy(), height, width)[0])
            for e, k in zip(path.extrinsics, path.intrinsics)
        ]
    )
    truth = truth.permute(0, 3, 1, 2).float() / 255
    m = (num_frames - 1) // 4  # the views are frames m and 3m of the extended path
    extended = pipeline(images, cameras, target_cameras=path, seed=seed)
    between = pipeline(images, cameras, num_frames=2 * m + 1, seed=seed)  # the same cameras, frames m..3m
    beyond = [i for i in range(num_frames) if i < m or i > 3 * m]
    inner = list(range(m + 1, 3 * m))

    def mean_psnr(frames: torch.Tensor, indices: list[int], offset: int = 0) -> float:
        return float(psnr(frames[[i - offset for i in indices]], truth[indices]).mean())

    return {
        "beyond_coarse": mean_psnr(extended.coarse_frames, beyond),
        "beyond_generated": mean_psnr(extended.frames, beyond),
        "ends_coarse": mean_psnr(extended.coarse_frames, [0, num_frames - 1]),
        "ends_generated": mean_psnr(extended.frames, [0, num_frames - 1]),
        "between_coarse": mean_psnr(extended.coarse_frames, inner),
        "between_generated_extend": mean_psnr(extended.frames, inner),
        "between_generated_interpolate": mean_psnr(between.frames, inner, offset=m),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", help="weights folder (default: the bundled tiny weights)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[8, 9, 10, 11])
    parser.add_argument("--rooms", type=int, default=3, help="rooms per seed")
    parser.add_argument("--frames", type=int, default=17, help="8k + 1")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipeline = VideoScenePipeline.from_pretrained(args.weights)
    rooms = {
        f"synth-{seed}-{index}": score_room(pipeline, seed, index, args.frames)
        for seed in args.seeds
        for index in range(args.rooms)
    }
    means = {
        key: float(np.mean([scores[key] for scores in rooms.values()])) for key in next(iter(rooms.values()))
    }
    write_json_atomic(
        RESULTS,
        {
            "weights": args.weights or "bundled tiny",
            "frames": args.frames,
            "mean_psnr": means,
            "rooms": rooms,
        },
    )
    print(f"{len(rooms)} rooms, {args.frames} frames, PSNR (dB) against the room rendered at each camera\n")
    print("| frames | coarse render | generated |")
    print("|---|---|---|")
    print(f"| beyond the views | {means['beyond_coarse']:.2f} | {means['beyond_generated']:.2f} |")
    print(f"| the path's two end frames | {means['ends_coarse']:.2f} | {means['ends_generated']:.2f} |")
    print(
        f"| between the views, extended path | {means['between_coarse']:.2f} | "
        f"{means['between_generated_extend']:.2f} |"
    )
    print(
        f"| between the views, interpolated path | {means['between_coarse']:.2f} | "
        f"{means['between_generated_interpolate']:.2f} |"
    )


if __name__ == "__main__":
    main()
