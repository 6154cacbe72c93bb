"""Speed and memory of the torch rasterizer on the CPU (issue 3, "Performance").

    python benchmarks/bench_rasterizer.py            # table + benchmarks/results/rasterizer.json (~2 min)
    python benchmarks/bench_rasterizer.py --garden   # also render ../shared/data's garden ->
                                                     # docs/images/garden_render.png

Scenes look like the prior's output: Gaussians on a wavy surface, about one per pixel footprint of a
source view, seen by a camera slightly to the side. Each case runs in its own process so that its peak
resident memory (ru_maxrss, minus the process's memory before rendering) is its own. Times are wall-clock
medians of `--repeats` runs after a warm-up, with `--threads` torch threads (default 1); the machine may be
shared, so the load average is recorded too. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from videoscene.gaussians.ply import gaussians_from_points
from videoscene.gaussians.rasterizer import TorchRasterizerConfig, render
from videoscene.image_io import to_uint8
from videoscene.io_utils import atomic_path, write_json_atomic
from videoscene.types import Gaussians

logger = logging.getLogger("bench_rasterizer")
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# (name, Gaussians, views, height, width)
CASES = [
    ("10k @ 128x192", 10_000, 1, 128, 192),
    ("100k @ 128x192", 100_000, 1, 128, 192),
    ("10k @ 256x384", 10_000, 1, 256, 384),
    ("100k @ 256x384", 100_000, 1, 256, 384),
    ("prior step: 2x128x192 -> 15 views", 2 * 128 * 192, 15, 128, 192),
]


def surface_scene(count: int, views: int, sh_degree: int = 4, seed: int = 0):
    """`count` Gaussians on a wavy surface 2.5-3.5 in front of a source camera, sized like one pixel of a
    128x192 source view each (so 2x128x192 of them tile two views, like the prior's), seen from `views`
    cameras swinging ±6° and ±0.3 sideways."""
    generator = torch.Generator().manual_seed(seed)
    u, v = torch.rand(count, generator=generator), torch.rand(count, generator=generator)
    depth = 3 + 0.5 * torch.sin(6 * u) * torch.cos(5 * v) + 0.2 * torch.rand(count, generator=generator)
    focal_x, focal_y = 1.0, 1.5  # normalised, i.e. a 128x192 image with square pixels
    means = torch.stack([(u - 0.5) / focal_x * depth, (v - 0.5) / focal_y * depth, depth], dim=-1)
    pixel = depth / (focal_x * 192) * math.sqrt(128 * 192 / count)  # one footprint, world units
    scales = pixel[:, None] * torch.exp(0.3 * torch.randn(count, 3, generator=generator))
    gaussians = Gaussians(
        means=means[None],
        scales=scales[None],
        rotations=torch.randn(1, count, 4, generator=generator),
        harmonics=0.2 * torch.randn(1, count, (sh_degree + 1) ** 2, 3, generator=generator),
        opacities=0.5 + 0.5 * torch.rand(1, count, generator=generator),
    )
    extrinsics = []
    for i in range(views):
        t = i / max(views - 1, 1) - 0.5 if views > 1 else 0.5
        angle = 0.2 * t
        camera_to_world = torch.eye(4)
        camera_to_world[:3, :3] = torch.tensor(
            [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]]
        )
        camera_to_world[0, 3] = 0.6 * t
        extrinsics.append(camera_to_world)
    intrinsics = torch.tensor([[focal_x, 0, 0.5], [0, focal_y, 0.5], [0, 0, 1.0]]).expand(1, views, 3, 3)
    return gaussians, torch.stack(extrinsics)[None], intrinsics.contiguous()


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(count: int, views: int, height: int, width: int, backward: bool, repeats: int) -> dict:
    gaussians, extrinsics, intrinsics = surface_scene(count, views)
    parameters = [
        gaussians.means,
        gaussians.scales,
        gaussians.rotations,
        gaussians.harmonics,
        gaussians.opacities,
    ]
    for parameter in parameters:
        parameter.requires_grad_(backward)
    config = TorchRasterizerConfig()
    baseline = rss_mb()
    times = []
    for repeat in range(repeats + 1):  # the first run warms up allocators and caches
        start = time.perf_counter()
        output = render(gaussians, extrinsics, intrinsics, (height, width), backend="torch", config=config)
        if backward:
            (output.color.square().mean() + output.depth.mean()).backward()
        if repeat:
            times.append(time.perf_counter() - start)
    return {
        "ms_per_frame": 1000 * statistics.median(times) / views,
        "ms_per_call": 1000 * statistics.median(times),
        "peak_extra_mb": max(peak_rss_mb() - baseline, 0.0),
        "coverage": output.alpha.mean().item(),
    }


def render_garden(out_png: Path) -> dict:
    """Render the garden point cloud as small opaque splats from its second camera at full resolution."""
    import imageio.v3 as iio

    data = np.load(SHARED_DATA / "garden_points_cams" / "test_garden.npz")
    width, height = int(data["width"]), int(data["height"])
    splats = gaussians_from_points(
        torch.from_numpy(data["means3d"]).float(),
        torch.from_numpy(data["colors"]).float() / 255,
        scale_factor=0.5,
        clip_quantile=0.8,
    )
    gaussians = Gaussians(
        *(
            t[None]
            for t in (splats.means, splats.scales, splats.rotations, splats.harmonics, splats.opacities)
        )
    )
    view = 1
    extrinsics = torch.linalg.inv(torch.from_numpy(data["viewmats"][view]).double()).float()
    intrinsics = torch.from_numpy(data["Ks"][view]).float() / torch.tensor([width, height, 1.0])[:, None]
    start = time.perf_counter()
    with torch.no_grad():
        output = render(
            gaussians, extrinsics[None, None], intrinsics[None, None], (height, width), backend="torch"
        )
    seconds = time.perf_counter() - start
    image = to_uint8(output.color[0, 0]).permute(1, 2, 0).numpy()
    with atomic_path(out_png) as tmp:
        iio.imwrite(tmp, image, extension=".png")
    logger.info("wrote %s", out_png)
    return {
        "gaussians": len(splats),
        "height": height,
        "width": width,
        "ms_per_frame": 1000 * seconds,
        "coverage": output.alpha.mean().item(),
        "image": str(out_png.relative_to(REPO)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: on a shared machine, 2+ threads can be 10x slower when "
        "cores are busy)",
    )
    parser.add_argument("--garden", action="store_true", help="also render docs/images/garden_render.png")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "rasterizer.json")
    parser.add_argument("--case", type=str, help=argparse.SUPPRESS)  # internal: one case, JSON on stdout
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    if args.case:
        count, views, height, width, backward = json.loads(args.case)
        sys.stdout.write(json.dumps(run_case(count, views, height, width, backward, args.repeats)) + "\n")
        return

    rows = []
    for name, count, views, height, width in CASES:
        for backward in (False, True):
            case = json.dumps([count, views, height, width, backward])
            completed = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--case",
                    case,
                    "--repeats",
                    str(args.repeats),
                    "--threads",
                    str(args.threads),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            result = json.loads(completed.stdout.strip().splitlines()[-1])
            rows.append(
                {
                    "case": name,
                    "gaussians": count,
                    "views": views,
                    "height": height,
                    "width": width,
                    "pass": "forward+backward" if backward else "forward",
                    **result,
                }
            )
            logger.info("%-36s %-17s %8.0f ms/frame", name, rows[-1]["pass"], result["ms_per_frame"])

    header = f"{'case':<36} {'pass':<17} {'ms/frame':>9} {'ms/call':>9} {'peak MB':>8} {'alpha':>6}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['case']:<36} {row['pass']:<17} {row['ms_per_frame']:>9.0f} {row['ms_per_call']:>9.0f} "
            f"{row['peak_extra_mb']:>8.0f} {row['coverage']:>6.2f}"
        )
    garden = None
    if args.garden:
        if not SHARED_DATA.is_dir():
            raise SystemExit(f"--garden needs {SHARED_DATA}")
        garden = render_garden(REPO / "docs" / "images" / "garden_render.png")
        lines.append(
            f"garden {garden['gaussians']} points @ {garden['height']}x{garden['width']}, forward: "
            f"{garden['ms_per_frame']:.0f} ms/frame"
        )
    print("\n".join(lines))
    write_json_atomic(
        args.out,
        {
            "device": "cpu",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(),
            "config": TorchRasterizerConfig().__dict__,
            "rows": rows,
            "garden": garden,
        },
    )
    logger.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
