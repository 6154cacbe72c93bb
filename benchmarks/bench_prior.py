"""Speed of the feed-forward Gaussian prior on the CPU: parameters, encoder forward time, and training
throughput of the tiny preset (encoder forward + backward, rendering the targets, loss, AdamW step).

    python benchmarks/bench_prior.py                 # everything (the mvsplat forward takes a while)
    python benchmarks/bench_prior.py --skip-mvsplat  # tiny only
    python benchmarks/bench_prior.py --threads 1 2   # torch thread counts to measure

Times are medians over repeats, in seconds. With one thread `cpu_s` (process CPU time) is what one core
delivers whatever else runs on the machine; `wall_s` is the wall clock (it includes waiting for cores).
Writes benchmarks/results/prior.json. Numbers are measurements, never asserted.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import torch

from videoscene.io_utils import write_json_atomic
from videoscene.prior.config import MVSPLAT, TINY, EncoderConfig
from videoscene.prior.encoder import GaussianEncoder
from videoscene.prior.losses import PhotometricLoss, PhotometricLossConfig
from videoscene.prior.train import render_targets
from videoscene.types import Example, Views

RESULTS = Path(__file__).resolve().parent / "results" / "prior.json"


def two_view_example(batch: int, height: int, width: int, targets: int) -> Example:
    """Two context cameras 0.3 apart, slightly verged, and `targets` cameras between them; random images."""

    def views(count: int, positions: list[float]) -> Views:
        extrinsics = torch.eye(4).repeat(batch, count, 1, 1)
        for i, x in enumerate(positions):
            angle = -0.2 * x
            extrinsics[:, i, :3, :3] = torch.tensor(
                [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]]
            )
            extrinsics[:, i, 0, 3] = x
        intrinsics = torch.tensor([[0.9, 0, 0.5], [0, 1.35, 0.5], [0, 0, 1]]).repeat(batch, count, 1, 1)
        near, far = torch.full((batch, count), 0.5), torch.full((batch, count), 20.0)
        return Views(torch.rand(batch, count, 3, height, width), extrinsics, intrinsics, near, far)

    target_positions = [0.3 * (i + 1) / (targets + 1) for i in range(targets)]
    return Example(views(2, [0.0, 0.3]), views(targets, target_positions))


def timed(fn, repeats: int) -> dict:
    fn()  # warm-up (allocator, oneDNN kernels)
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"wall_s": round(statistics.median(walls), 4), "cpu_s": round(statistics.median(cpus), 4)}


def forward_time(config: EncoderConfig, height: int, width: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = GaussianEncoder(config).eval()
    context = two_view_example(1, height, width, 1).context
    with torch.no_grad():
        result = timed(lambda: model(context), repeats)
    return {**result, "gaussians": 2 * height * width * config.gaussians_per_pixel}


def training_step_time(
    config: EncoderConfig, batch: int, height: int, width: int, targets: int, repeats: int
) -> dict:
    torch.manual_seed(0)
    model = GaussianEncoder(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = PhotometricLoss(PhotometricLossConfig())
    example = two_view_example(batch, height, width, targets)
    background = torch.zeros(batch, 3)
    phases: dict[str, list[float]] = {"encoder+render forward": [], "backward": [], "optimizer": []}

    def step():
        start = time.perf_counter()
        loss = loss_fn(render_targets(model, example, background), example.target.image)["total"]
        forward = time.perf_counter()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        backward = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        phases["encoder+render forward"].append(forward - start)
        phases["backward"].append(backward - forward)
        phases["optimizer"].append(time.perf_counter() - backward)

    result = timed(step, repeats)
    breakdown = {name: round(statistics.median(values[1:]), 4) for name, values in phases.items()}
    return {**result, "steps_per_s": round(1 / result["wall_s"], 3), "breakdown_wall_s": breakdown}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-mvsplat", action="store_true")
    args = parser.parse_args()

    results = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "load_average_at_start": os.getloadavg(),
        },
        "parameters": {},
        "forward": [],
        "training": [],
    }
    for name, config in (("tiny", TINY), ("mvsplat", MVSPLAT)):
        with torch.device("meta"):
            results["parameters"][name] = GaussianEncoder(config).parameter_count()

    for threads in args.threads:
        torch.set_num_threads(threads)
        for height, width in ((64, 96), (128, 192)):
            row = {
                "preset": "tiny",
                "threads": threads,
                "size": f"{height}x{width}",
                **forward_time(TINY, height, width, args.repeats),
            }
            results["forward"].append(row)
        row = {
            "preset": "tiny",
            "threads": threads,
            "size": "64x96",
            "batch": 2,
            "targets": 2,
            **training_step_time(TINY, 2, 64, 96, 2, args.repeats),
        }
        results["training"].append(row)
    if not args.skip_mvsplat:
        torch.set_num_threads(min(args.threads))
        row = {
            "preset": "mvsplat",
            "threads": min(args.threads),
            "size": "256x256",
            **forward_time(MVSPLAT, 256, 256, 1),
        }
        row["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
        results["forward"].append(row)
    results["machine"]["load_average_at_end"] = os.getloadavg()

    print(f"parameters: tiny {results['parameters']['tiny']:,}  mvsplat {results['parameters']['mvsplat']:,}")
    print(
        f"\n{'encoder forward (B=1, 2 views)':34} {'threads':>7} {'wall s':>8} {'cpu s':>8} {'Gaussians':>10}"
    )
    for row in results["forward"]:
        print(
            f"{row['preset'] + ' ' + row['size']:34} {row['threads']:>7} {row['wall_s']:>8.3f} "
            f"{row['cpu_s']:>8.3f} {row['gaussians']:>10,}"
        )
    print(
        f"\n{'training step (tiny, B=2, 2 targets)':38} {'threads':>7} {'wall s':>8} {'cpu s':>8} "
        f"{'steps/s':>8}  breakdown (wall s)"
    )
    for row in results["training"]:
        print(
            f"{row['size']:38} {row['threads']:>7} {row['wall_s']:>8.3f} {row['cpu_s']:>8.3f} "
            f"{row['steps_per_s']:>8.2f}  {row['breakdown_wall_s']}"
        )
    print(
        f"\nload average start/end: {results['machine']['load_average_at_start']} / "
        f"{results['machine']['load_average_at_end']}"
    )
    write_json_atomic(RESULTS, results)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
