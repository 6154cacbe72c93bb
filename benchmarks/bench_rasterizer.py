"""Speed and memory of the torch rasterizer on the CPU (issue 3, "Performance"; issue 16, view chunks).

    python benchmarks/bench_rasterizer.py            # table + benchmarks/results/rasterizer.json (~2 min)
    python benchmarks/bench_rasterizer.py --garden   # also render ../shared/data's garden ->
                                                     # docs/images/garden_render.png
    python benchmarks/bench_rasterizer.py --memory   # peak memory of a paper-scale coarse video: 49 views
        [--views 49 --height 480 --width 720         # at 480x720 from 2x480x720 = 691,200 Gaussians, in
         --gaussians 691200 --backward]              # view chunks -> results/rasterizer_memory.json (~7 min)

`--memory` renders one chunk (the default `views_per_chunk` for that many Gaussians) and then all the views
chunk by chunk, each in its own process, and compares the second's peak with the bound the chunking promises:
one chunk's peak plus twice the images (the chunks' and their concatenation), independent of the view count;
with --backward, plus the images' gradients and twice the Gaussians' gradients (summed over the chunks).
It does so with glibc's default allocator and with MALLOC_MMAP_THRESHOLD_ lowered to 1 MiB, which returns
freed blocks to the system instead of keeping them in the heap for reuse (see ALLOCATORS). Peak memory there
is the process's VmHWM (reset through /proc/self/clear_refs after the scene is built) minus its resident
memory before rendering.

Scenes look like the prior's output: Gaussians on a wavy surface, about one per pixel footprint of a
source view, seen by a camera slightly to the side. Each case runs in its own process so that its peak
resident memory (ru_maxrss, minus the process's memory before rendering) is its own. Times are wall-clock
medians of `--repeats` runs after a warm-up, with `--threads` torch threads (default 1); the machine may be
shared, so the load average is recorded too. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import gc
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
from videoscene.gaussians.rasterizer import VIEW_CHUNK_PAIRS, TorchRasterizerConfig, render
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


def reset_peak_rss() -> bool:
    """Reset the process's high-water mark (VmHWM), so that building the scene does not count."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def high_water_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return peak_rss_mb()


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


def run_memory_case(
    count: int, views: int, height: int, width: int, views_per_chunk: int, backward: bool
) -> dict:
    """Peak memory of one render of `views` views in chunks (and its backward pass), SH degree 3 as the
    pipeline's coarse render uses."""
    if backward:
        # Chunks are checkpointed with gradients, and torch's checkpoint imports some 800 modules (sympy, ...)
        # on first use: ~75 MB and ~2 s once per process, which a tiny render pays here, before measuring.
        tiny = surface_scene(100, 2)
        tiny[0].means.requires_grad_(True)
        render(*tiny, (8, 8), backend="torch", views_per_chunk=1).color.sum().backward()
    gaussians, extrinsics, intrinsics = surface_scene(count, views)
    for name in ("means", "scales", "rotations", "harmonics", "opacities"):
        getattr(gaussians, name).requires_grad_(backward)
    gc.collect()
    reset = reset_peak_rss()
    baseline = rss_mb()
    start = time.perf_counter()
    with torch.set_grad_enabled(backward):
        output = render(
            gaussians,
            extrinsics,
            intrinsics,
            (height, width),
            backend="torch",
            sh_degree=3,
            views_per_chunk=views_per_chunk,
        )
        if backward:
            (output.color.square().mean() + output.depth.mean()).backward()
    return {
        "seconds": time.perf_counter() - start,
        "peak_extra_mb": max((high_water_mb() if reset else peak_rss_mb()) - baseline, 0.0),
        "peak_measure": "VmHWM after reset"
        if reset
        else "ru_maxrss (not reset: includes building the scene)",
        "coverage": output.alpha.mean().item(),
    }


# glibc keeps freed heap memory below its (dynamic, at most 32 MB) mmap threshold for reuse, which the peak
# RSS counts; with this threshold lowered, allocations of 1 MiB or more are returned when freed and the peak
# shows the tensors alone.
ALLOCATORS = {"glibc default": {}, "MALLOC_MMAP_THRESHOLD_=1MiB": {"MALLOC_MMAP_THRESHOLD_": "1048576"}}


def memory_mode(args) -> None:
    """Issue 16: 49 views at 480x720 from 691k Gaussians needed ~16 GB at once (~330 MB a view). Each
    allocator setting renders one chunk and then all views, each in its own process."""
    views_per_chunk = args.views_per_chunk or max(1, VIEW_CHUNK_PAIRS["torch"] // args.gaussians)
    image_mb = args.views * 5 * args.height * args.width * 4 / 2**20  # colour, depth, alpha (float32)
    # With gradients, also the images' gradients, and the Gaussians' gradients from one chunk while the sum
    # over the chunks before it is held (means 3, scales 3, rotations 4, SH 25 x 3, opacity 1 floats each).
    gradient_mb = args.gaussians * (3 + 3 + 4 + 25 * 3 + 1) * 4 / 2**20
    extra_mb, bound = 2 * image_mb, "one chunk's peak + 2 x images (the chunks' and their concatenation)"
    if args.backward:
        extra_mb = 3 * image_mb + 2 * gradient_mb
        bound = "one chunk's peak + 3 x images (+ their gradients) + 2 x the Gaussians' gradients"
    rows, summaries = [], []
    for allocator, environment in ALLOCATORS.items():
        pair = []
        for name, views in (
            ("one chunk", min(views_per_chunk, args.views)),
            ("all views, chunked", args.views),
        ):
            case = json.dumps(
                [args.gaussians, views, args.height, args.width, views_per_chunk, args.backward]
            )
            completed = subprocess.run(
                [sys.executable, __file__, "--memory-case", case, "--threads", str(args.threads)],
                check=True,
                capture_output=True,
                text=True,
                env={**os.environ, **environment},
            )
            result = json.loads(completed.stdout.strip().splitlines()[-1])
            pair.append({"case": name, "allocator": allocator, "views": views, **result})
            logger.info(
                "%-28s %-20s %3d views: peak +%.0f MB, %.0f s",
                allocator,
                name,
                views,
                result["peak_extra_mb"],
                result["seconds"],
            )
        chunk, chunked = pair
        bound_mb = chunk["peak_extra_mb"] + extra_mb
        summaries.append(
            {
                "allocator": allocator,
                "one_chunk_mb": chunk["peak_extra_mb"],
                "all_views_mb": chunked["peak_extra_mb"],
                "bound_mb": bound_mb,
                "within_bound": chunked["peak_extra_mb"] <= bound_mb,
                "unchunked_estimate_mb": chunk["peak_extra_mb"] / chunk["views"] * args.views,
            }
        )
        rows += pair
    setup = {
        "gaussians": args.gaussians,
        "views": args.views,
        "height": args.height,
        "width": args.width,
        "pass": "forward+backward" if args.backward else "forward",
        "views_per_chunk": views_per_chunk,
        "view_chunk_pairs": VIEW_CHUNK_PAIRS["torch"],
        "images_mb": image_mb,
        "gaussian_gradients_mb": gradient_mb if args.backward else 0.0,
        "bound": bound,
    }
    lines = [
        f"{args.views} views at {args.height}x{args.width} from {args.gaussians} Gaussians "
        f"({setup['pass']}), {views_per_chunk} views per chunk; images {image_mb:.0f} MB",
        f"{'allocator':<28} {'one chunk':>10} {'all views':>10} {'bound':>8} {'all at once (est.)':>19}",
    ]
    for summary in summaries:
        lines.append(
            f"{summary['allocator']:<28} {summary['one_chunk_mb']:>7.0f} MB "
            f"{summary['all_views_mb']:>7.0f} MB {summary['bound_mb']:>5.0f} MB "
            f"{summary['unchunked_estimate_mb']:>16.0f} MB"
        )
    print("\n".join(lines))
    write_json_atomic(
        args.out,
        {
            "device": "cpu",
            "torch": torch.__version__,
            "threads": args.threads,
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(),
            "setup": setup,
            "summary": summaries,
            "rows": rows,
        },
    )
    logger.info("wrote %s", args.out)


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
    parser.add_argument(
        "--memory", action="store_true", help="peak memory of many views in view chunks (issue 16)"
    )
    parser.add_argument("--views", type=int, default=49, help="--memory: views to render")
    parser.add_argument("--height", type=int, default=480, help="--memory: image height")
    parser.add_argument("--width", type=int, default=720, help="--memory: image width")
    parser.add_argument("--gaussians", type=int, default=2 * 480 * 720, help="--memory: Gaussian count")
    parser.add_argument(
        "--views-per-chunk", type=int, help="--memory: views per chunk (default: the renderer's own)"
    )
    parser.add_argument("--backward", action="store_true", help="--memory: forward and backward passes")
    parser.add_argument(
        "--out", type=Path, help="results JSON (default: benchmarks/results/rasterizer*.json)"
    )
    parser.add_argument("--case", type=str, help=argparse.SUPPRESS)  # internal: one case, JSON on stdout
    parser.add_argument("--memory-case", type=str, help=argparse.SUPPRESS)  # internal, likewise
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    if args.memory_case:
        sys.stdout.write(json.dumps(run_memory_case(*json.loads(args.memory_case))) + "\n")
        return
    if args.memory:
        suffix = "_backward" if args.backward else ""
        args.out = args.out or REPO / "benchmarks" / "results" / f"rasterizer_memory{suffix}.json"
        memory_mode(args)
        return
    args.out = args.out or REPO / "benchmarks" / "results" / "rasterizer.json"
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
