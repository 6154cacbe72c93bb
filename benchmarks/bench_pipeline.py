"""Per-stage time of one-step generation versus the 50-step teacher, measured in one run (issue 6 item 4).

Stages: prior (feed-forward Gaussians), render (coarse video), VAE encode (render + two condition frames),
denoise (one student step, or the teacher's N steps), VAE decode. Prints a table and writes
benchmarks/results/pipeline_speed.json. The ratio is total(teacher@50 from noise) / total(student).

    python benchmarks/bench_pipeline.py [--weights DIR] [--repeats 3] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
from pathlib import Path

import torch

from videoscene.demo import DEMO_ASSETS
from videoscene.generate import load_cameras_file, load_image
from videoscene.pipeline import VideoScenePipeline

RESULTS = Path(__file__).parent / "results" / "pipeline_speed.json"
STAGES = ("prior", "render", "vae_encode", "policy", "denoise", "vae_decode", "total")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="weights folder (default: bundled tiny weights)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--teacher-steps", type=int, nargs="+", default=[1, 4, 50])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pipe = VideoScenePipeline.from_pretrained(args.weights, device=args.device)
    images = torch.stack([load_image(DEMO_ASSETS / "view_0.png"), load_image(DEMO_ASSETS / "view_1.png")])
    cameras, _, near, far = load_cameras_file(DEMO_ASSETS / "cams.json", tuple(images.shape[-2:]))

    runs = {"student": dict(model="student", timestep="auto", num_steps=1)}
    for steps in args.teacher_steps:
        runs[f"teacher@{steps}"] = dict(model="teacher", timestep=None, num_steps=steps)
    pipe(images, cameras, near=near, far=far, **runs["student"])  # warm-up (allocations, lazy imports)

    results = {}
    for name, settings in runs.items():
        samples = [
            pipe(images, cameras, near=near, far=far, seed=i, **settings).timings for i in range(args.repeats)
        ]
        results[name] = {stage: statistics.median(s[stage] for s in samples) for stage in STAGES}
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    header = f"{'method':<12}" + "".join(f"{stage:>12}" for stage in STAGES)
    print(header)
    for name, timings in results.items():
        print(f"{name:<12}" + "".join(f"{timings[stage]:>12.3f}" for stage in STAGES))
    slowest = f"teacher@{max(args.teacher_steps)}"
    ratio = results[slowest]["total"] / results["student"]["total"]
    print(f"{slowest} / student total time: {ratio:.1f}x   (peak RSS {peak_rss_mib:.0f} MiB)")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "seconds_median": results,
                "ratio_total": {f"{slowest}/student": ratio},
                "peak_rss_mib": peak_rss_mib,
                "resolution": [pipe.config.num_frames, pipe.config.height, pipe.config.width],
                "machine": {
                    "platform": platform.platform(),
                    "processor": platform.processor(),
                    "threads": args.threads,
                    "device": args.device,
                },
                "repeats": args.repeats,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
