"""Seconds per reconstruction (`videoscene reconstruct`) on the CPU for the bundled tiny weights' demo output:
3D Gaussians from the prior's, fitted to the 17 generated 64×96 frames, for a few step counts.

    python benchmarks/bench_reconstruct.py                      # steps 50 100 300, one torch thread
    python benchmarks/bench_reconstruct.py --steps 20 --threads 2

Per step count: wall seconds of the optimisation (reading and writing excluded), process CPU seconds,
seconds per step, the Gaussian count before and after (densification, capped at twice the prior's), and
PSNR of the renders against the generated frames before and after. Writes
benchmarks/results/reconstruct.json. Numbers are measurements, never asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from videoscene.cli import main
from videoscene.io_utils import write_json_atomic
from videoscene.reconstruct.cli import load_generated
from videoscene.reconstruct.optimize import ReconstructConfig, confidence_weights, fit_gaussians

RESULTS = Path(__file__).resolve().parent / "results" / "reconstruct.json"


def measure(folder: Path, steps: int) -> dict:
    scene = load_generated(folder)
    config = replace(ReconstructConfig(), steps=steps)
    weights = confidence_weights(scene.cameras.extrinsics, config.confidence_tau)
    wall, cpu = time.perf_counter(), time.process_time()
    result = fit_gaussians(
        scene.gaussians, scene.frames, scene.cameras, weights, config, scene.background, progress=False
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "steps": steps,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "seconds_per_step": round(wall / steps, 4),
        "gaussians_initial": result.initial_count,
        "gaussians_final": len(result.gaussians),
        "psnr_initial": round(float(np.mean(result.initial_psnr)), 3),
        "psnr_final": round(float(np.mean(result.psnr)), 3),
    }


def main_benchmark() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[50, 100, 300])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp) / "demo"
        if main(["demo", "--out", str(demo)]) != 0:
            raise SystemExit("the demo failed")
        rows = [measure(demo, steps) for steps in args.steps]
    print("| steps | wall s | s/step | Gaussians | PSNR on the frames (dB) |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['steps']} | {row['wall_s']:.1f} | {row['seconds_per_step']:.3f} | "
            f"{row['gaussians_initial']} → {row['gaussians_final']} | "
            f"{row['psnr_initial']:.2f} → {row['psnr_final']:.2f} |"
        )
    write_json_atomic(
        args.out,
        {
            "what": "videoscene reconstruct on the bundled demo's output (17 frames, 64x96), CPU, torch",
            "rows": rows,
            "environment": {
                "torch": torch.__version__,
                "threads": args.threads,
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "processor": platform.processor() or platform.machine(),
                "load_average_1min": round(os.getloadavg()[0], 2),
            },
        },
    )


if __name__ == "__main__":
    main_benchmark()
