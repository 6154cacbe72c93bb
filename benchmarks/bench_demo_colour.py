"""Does the generated video keep the render's colours? `videoscene demo`'s inputs (the bundled
held-out synthetic pair and its cameras) through the pipeline, one-step student at DDPNet's t: the mean of
each colour channel over all frames and pixels, for the coarse render and for the generated video, and
their difference in 8-bit levels. Target: |difference| ≤ 2/255 per channel. Also the 50-step teacher from
the render and from noise, for comparison. Prints a table and writes benchmarks/results/demo_colour.json.

    python benchmarks/bench_demo_colour.py [--weights src/videoscene/weights/tiny]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from videoscene.demo import DEMO_ASSETS
from videoscene.generate import load_cameras_file, load_image
from videoscene.pipeline import BUNDLED_WEIGHTS, VideoScenePipeline

RESULTS = Path(__file__).parent / "results" / "demo_colour.json"
TARGET_LEVELS = 2.0
RUNS = {  # name: pipeline keyword arguments
    "student (DDPNet t)": {},
    "teacher from the render, 50 steps": {"model": "teacher", "timestep": "auto", "num_steps": 50},
    "teacher from noise, 50 steps": {"model": "teacher", "timestep": None, "num_steps": 50},
}


def channel_means(video: torch.Tensor) -> list[float]:
    """Mean of R, G, B over frames and pixels, in 8-bit levels."""
    return (video.float().mean(dim=(0, 2, 3)) * 255).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(BUNDLED_WEIGHTS))
    args = parser.parse_args()

    images = torch.stack([load_image(DEMO_ASSETS / f"view_{i}.png") for i in (0, 1)])
    cameras, targets, near, far = load_cameras_file(DEMO_ASSETS / "cams.json", tuple(images.shape[-2:]))
    pipeline = VideoScenePipeline.from_pretrained(args.weights)
    rows = []
    for name, kwargs in RUNS.items():
        output = pipeline(images, cameras, target_cameras=targets, near=near, far=far, seed=0, **kwargs)
        coarse, generated = channel_means(output.coarse_frames), channel_means(output.frames)
        difference = [g - c for g, c in zip(generated, coarse)]
        rows.append(
            {
                "method": name,
                "coarse_rgb_mean": coarse,
                "generated_rgb_mean": generated,
                "difference_levels": difference,
                "within_target": max(abs(d) for d in difference) <= TARGET_LEVELS,
            }
        )

    print("| method | coarse mean R, G, B | generated mean R, G, B | difference (levels) |")
    print("|---|---|---|---|")
    for row in rows:
        fmt = ", ".join
        print(
            f"| {row['method']} | {fmt(f'{v:.1f}' for v in row['coarse_rgb_mean'])} | "
            f"{fmt(f'{v:.1f}' for v in row['generated_rgb_mean'])} | "
            f"{fmt(f'{v:+.2f}' for v in row['difference_levels'])} |"
        )
    report = {"weights": args.weights, "target_levels": TARGET_LEVELS, "rows": rows}
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
