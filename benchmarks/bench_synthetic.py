"""Speed and camera-motion statistics of the procedural synthetic scenes (videoscene.data.synthetic).

    python benchmarks/bench_synthetic.py                       # speed table + motion statistics
    python benchmarks/bench_synthetic.py --contact-sheet docs/images/synthetic_examples.png

Speed: frames per second on one process (one core, CPU time) at each image size and supersampling
setting, split into scene set-up (room, textures, camera walk), rendering and PNG encoding.
Motion: over many scenes, the camera walk between the first and last frame of a clip: translation,
path length, rotation angle, baseline over median scene depth, and how much of each end view the other
end sees. Writes benchmarks/results/synthetic.json. Numbers are measurements, never asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections import Counter
from pathlib import Path

import numpy as np

from videoscene.data.re10k import encode_image
from videoscene.data.synthetic import (
    SynthConfig,
    coarse_view,
    render_scene,
    render_view,
    sample_scene,
    view_overlap,
)

RESULTS = Path(__file__).resolve().parent / "results" / "synthetic.json"


def measure_speed(sizes, supersamples, scenes: int, frames: int) -> list[dict]:
    """Frames per second of one process. Stage times are CPU time of this process (what one core
    delivers, insensitive to other jobs sharing the machine); `wall_fps` is the wall-clock figure."""
    rows = []
    for height, width in sizes:
        for supersample in supersamples:
            config = SynthConfig(supersample=supersample)
            setup = render = encode = 0.0
            wall_start = time.perf_counter()
            for index in range(scenes):
                start = time.process_time()
                room, path = sample_scene(1000, index, config)
                extrinsics = path.poses(np.linspace(0.0, 1.0, frames))
                intrinsics = path.intrinsics(height, width)
                setup += time.process_time() - start
                start = time.process_time()
                images = [
                    render_view(room, pose, intrinsics, height, width, supersample)[0] for pose in extrinsics
                ]
                render += time.process_time() - start
                start = time.process_time()
                for image in images:
                    encode_image(image)
                encode += time.process_time() - start
            wall = time.perf_counter() - wall_start
            total_frames = scenes * frames
            rows.append(
                {
                    "height": height,
                    "width": width,
                    "supersample": supersample,
                    "scenes": scenes,
                    "frames": frames,
                    "render_fps": total_frames / render,
                    "end_to_end_fps": total_frames / (setup + render + encode),
                    "wall_fps": total_frames / wall,
                    "setup_s_per_scene": setup / scenes,
                    "encode_ms_per_frame": 1000 * encode / total_frames,
                }
            )
    return rows


def motion_statistics(scenes: int) -> dict:
    """Camera-walk statistics over `scenes` scenes of seed 2000 (no rendering needed)."""
    records, motions = [], Counter()
    for index in range(scenes):
        room, path = sample_scene(2000, index)
        poses = path.poses(np.linspace(0.0, 1.0, 49))
        first, last = poses[0], poses[-1]
        relative = first[:3, :3].T @ last[:3, :3]
        angle = math.degrees(math.acos(np.clip((np.trace(relative) - 1) / 2, -1.0, 1.0)))
        intrinsics = path.intrinsics(8, 12)
        rays, depth = coarse_view(room, first, intrinsics)
        rays_last, depth_last = coarse_view(room, last, intrinsics)
        baseline = float(np.linalg.norm(last[:3, 3] - first[:3, 3]))
        steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
        records.append(
            {
                "translation_m": baseline,
                "path_length_m": float(steps.sum()),
                "rotation_deg": angle,
                "baseline_over_median_depth": baseline / float(np.median(depth)),
                "median_depth_m": float(np.median(depth)),
                "overlap_first_in_last": view_overlap(rays, depth, first, last, intrinsics),
                "overlap_last_in_first": view_overlap(rays_last, depth_last, last, first, intrinsics),
                "fov_x_deg": math.degrees(path.fov_x),
                "room_floor_m2": room.size[0] * room.size[2],
                "primitives": len(room.primitives),
            }
        )
        motions[path.motion] += 1
    summary = {}
    for name in records[0]:
        values = np.asarray([r[name] for r in records])
        summary[name] = {
            q: float(np.percentile(values, p)) for q, p in (("p10", 10), ("median", 50), ("p90", 90))
        }
    return {"scenes": scenes, "motions": dict(sorted(motions.items())), "statistics": summary}


def contact_sheet(path: Path, scenes: int, frames: int = 5) -> None:
    """First, middle and last frame (left to right) of the first `scenes` scenes of seed 0 at 128x192."""
    import imageio.v3 as iio

    rows = []
    for index in range(scenes):
        images = render_scene(0, index, frames, 128, 192)[0]
        separator = np.full((128, 4, 3), 255, np.uint8)
        rows.append(
            np.concatenate([images[0], separator, images[frames // 2], separator, images[-1]], axis=1)
        )
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.concatenate(rows[:-1], axis=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=4, help="scenes per speed measurement")
    parser.add_argument("--frames", type=int, default=25, help="frames per scene in the speed measurement")
    parser.add_argument("--motion-scenes", type=int, default=100, help="scenes for the motion statistics")
    parser.add_argument("--contact-sheet", type=Path, help="also write a PNG of example frames here")
    parser.add_argument("--contact-scenes", type=int, default=8)
    args = parser.parse_args()

    speed = measure_speed([(128, 192), (256, 384)], [1, 2, 3], args.scenes, args.frames)
    print(
        "frames per second on one core (CPU time; wall clock shows the effect of other jobs on the machine)"
    )
    print(
        f"{'size':>9} {'ss':>3} {'render fps':>11} {'end-to-end fps':>15} {'wall fps':>9} "
        f"{'setup s/scene':>14} {'png ms/frame':>13}"
    )
    for row in speed:
        print(
            f"{row['height']:>4}x{row['width']:<4} {row['supersample']:>3} {row['render_fps']:>11.1f} "
            f"{row['end_to_end_fps']:>15.1f} {row['wall_fps']:>9.1f} {row['setup_s_per_scene']:>14.2f} "
            f"{row['encode_ms_per_frame']:>13.2f}"
        )

    motion = motion_statistics(args.motion_scenes)
    print(f"\ncamera walks over {motion['scenes']} scenes (first vs last frame): motions {motion['motions']}")
    print(f"{'statistic':>28} {'p10':>8} {'median':>8} {'p90':>8}")
    for name, values in motion["statistics"].items():
        print(f"{name:>28} {values['p10']:>8.2f} {values['median']:>8.2f} {values['p90']:>8.2f}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {
                    "platform": platform.platform(),
                    "processor": platform.processor(),
                    "cpu_count": os.cpu_count(),
                    "load_average_1min": os.getloadavg()[0],
                    "processes": 1,
                },
                "speed": speed,
                "motion": motion,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {RESULTS}")
    if args.contact_sheet:
        contact_sheet(args.contact_sheet, args.contact_scenes)
        print(f"wrote {args.contact_sheet}")


if __name__ == "__main__":
    main()
