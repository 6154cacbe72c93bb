"""`videoscene reconstruct`: a `videoscene generate` folder (frames/, report.json's cameras, gaussians.ply)
in; 3D Gaussians fitted to the generated frames out (docs/reconstruct.md):

    gaussians.ply     the fitted Gaussians (Inria 3DGS layout, the input's world frame)
    cameras.json      the cameras of the frames they were fitted to (Inria layout; img_name = frames/NNN.png)
    flythrough.mp4    the Gaussians rendered along a path off the input one: every camera moved sideways
                      (its x axis) by `offset` × the baseline and up (its −y axis) by half that, where the
                      baseline is the distance between the first and last camera
    report.json       steps, seconds, Gaussian counts, the loss curve, densification events, the confidence
                      weights, PSNR/SSIM of the final renders against the frames, the fly-through cameras

    videoscene reconstruct --input OUT --out OUT_3D --steps 300

The folder is written atomically. `videoscene generate --reconstruct` runs this on its own output and writes
OUT/reconstruction/.
"""

from __future__ import annotations

import argparse
import logging
import math
import platform
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from PIL import Image
from torch import Tensor

from videoscene import __version__, arguments
from videoscene.arguments import resolve_device
from videoscene.errors import InputError
from videoscene.gaussians.ply import load_ply, save_cameras_json, save_ply
from videoscene.geometry.cameras import check_rigid
from videoscene.geometry.trajectory import OFF_PATH_OFFSET, offset_path
from videoscene.image_io import write_mp4
from videoscene.io_utils import check_output_dir, read_json_object, staged_output_dir, write_json_atomic
from videoscene.reconstruct.densify import DensifyConfig
from videoscene.reconstruct.optimize import (
    FitResult,
    ReconstructConfig,
    confidence_weights,
    fit_gaussians,
    render_views,
)
from videoscene.types import Cameras, Gaussians

logger = logging.getLogger(__name__)


@dataclass
class GeneratedScene:
    """What reconstruction reads from a `videoscene generate` folder."""

    frames: Float[Tensor, "frame 3 height width"]
    cameras: Cameras
    gaussians: Gaussians
    background: Float[Tensor, " 3"]
    report: dict


def _not_generate_output(folder: Path, why: str) -> InputError:
    return InputError(
        f"--input {folder} is not a `videoscene generate` output folder ({why}); give the --out folder of "
        "`videoscene generate` or `videoscene demo`"
    )


def load_generated(folder: str | Path) -> GeneratedScene:
    """Frames, cameras (report.json's "cameras"), the prior's Gaussians and the background of a generate
    folder; one line naming what is missing otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise _not_generate_output(folder, "no such folder")
    if not (folder / "report.json").is_file():
        raise _not_generate_output(folder, "it has no report.json")
    report = read_json_object(folder / "report.json", "generate report")
    cameras = report.get("cameras")
    try:
        extrinsics = torch.tensor(cameras["extrinsics"], dtype=torch.float32)
        intrinsics = torch.tensor(cameras["intrinsics"], dtype=torch.float32)
    except (KeyError, TypeError, ValueError):
        raise _not_generate_output(
            folder, 'its report.json has no "cameras" with extrinsics and intrinsics'
        ) from None
    count = len(extrinsics)
    if count < 2 or extrinsics.shape[1:] != (4, 4) or intrinsics.shape != (count, 3, 3):
        raise _not_generate_output(
            folder, f"report.json's cameras are {list(extrinsics.shape)} and {list(intrinsics.shape)}"
        )
    if not (torch.isfinite(extrinsics).all() and torch.isfinite(intrinsics).all()):
        raise InputError(f"{folder / 'report.json'}: the cameras contain NaN or inf")
    check_rigid(extrinsics, f"{folder / 'report.json'} camera extrinsics")
    names = [folder / "frames" / f"{index:03d}.png" for index in range(count)]
    missing = [path.name for path in names if not path.is_file()]
    if missing:
        raise InputError(
            f"{folder / 'frames'} lacks {len(missing)} of the {count} frames report.json lists (e.g. "
            f"{missing[0]}); the folder is incomplete: generate it again"
        )
    if not (folder / "gaussians.ply").is_file():
        raise _not_generate_output(folder, "it has no gaussians.ply")
    images = []
    for path in names:
        try:
            with Image.open(path) as image:
                images.append(np.asarray(image.convert("RGB")))
        except OSError as error:
            raise InputError(f"frame {path} cannot be read ({error}); generate the folder again") from None
    if len({image.shape for image in images}) != 1:
        raise InputError(f"the frames in {folder / 'frames'} differ in size; generate the folder again")
    frames = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    gaussians = load_ply(folder / "gaussians.ply")
    background = report.get("pipeline", {}).get("config", {}).get("background", [0.0, 0.0, 0.0])
    return GeneratedScene(
        frames, Cameras(extrinsics, intrinsics), gaussians, torch.tensor(background), report
    )


def _rounded(values: list[float], digits: int = 4) -> list[float | None]:
    return [round(v, digits) if math.isfinite(v) else None for v in values]


def reconstruction_report(result: FitResult, config: ReconstructConfig, extra: dict) -> dict:
    return {
        "steps": config.steps,
        "seconds": round(result.seconds, 3),
        "gaussians": {
            "initial": result.initial_count,
            "final": len(result.gaussians),
            "cap": config.densify.max_gaussians or 2 * result.initial_count,
        },
        "loss_curve": [{**point, "loss": round(point["loss"], 6)} for point in result.loss_curve],
        "densification": result.densify_events,
        "confidence_weights": _rounded(result.weights.tolist()),
        "psnr": round(float(np.mean(result.psnr)), 4),
        "psnr_per_frame": _rounded(result.psnr),
        "ssim_per_frame": _rounded(result.ssim),
        "initial_psnr": round(float(np.mean(result.initial_psnr)), 4),
        "initial_psnr_per_frame": _rounded(result.initial_psnr),
        "scene_extent": result.extent,
        "config": asdict(config),
        **extra,
        "versions": {
            "videoscene": __version__,
            "torch": torch.__version__,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
    }


def reconstruct_folder(
    input_dir: str | Path,
    out: str | Path,
    config: ReconstructConfig | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    overwrite: bool = False,
    flythrough_offset: float = OFF_PATH_OFFSET,
    progress: bool = True,
) -> dict:
    """Fit, then write the files of the module docstring into `out` atomically; returns report.json's
    content."""
    # 1. Check the arguments and the output location, then read the input.
    config = config or ReconstructConfig()
    input_dir, out = Path(input_dir), Path(out)
    if out.resolve() == input_dir.resolve():
        raise InputError(f"--out {out} is the --input folder; write the reconstruction to another folder")
    check_output_dir(out, overwrite)
    scene = load_generated(input_dir)
    device = torch.device(device)

    # 2. Fit the Gaussians to the frames, the context frames (first and last) at full weight.
    weights = confidence_weights(scene.cameras.extrinsics, config.confidence_tau)
    result = fit_gaussians(
        scene.gaussians,
        scene.frames,
        scene.cameras,
        weights,
        config,
        scene.background,
        seed,
        device,
        progress,
    )

    # 3. The fly-through, then every file or none.
    path = Cameras(offset_path(scene.cameras.extrinsics, flythrough_offset), scene.cameras.intrinsics)
    image_shape = tuple(scene.frames.shape[-2:])
    flythrough = render_views(result.gaussians, path, image_shape, scene.background, config.backend).cpu()
    extra = {
        "input": str(input_dir),
        "device": str(device),
        "seed": seed,
        "resolution": list(image_shape),
        "world_frame": scene.report.get("world_frame", "camera 0, OpenCV axes"),
        "flythrough": {
            "offset_baselines": flythrough_offset,
            "extrinsics": path.extrinsics.tolist(),
            "intrinsics": path.intrinsics.tolist(),
        },
    }
    report = reconstruction_report(result, config, extra)
    names = [f"frames/{index:03d}.png" for index in range(len(scene.frames))]
    with staged_output_dir(out, overwrite=overwrite) as stage:
        save_ply(stage / "gaussians.ply", result.gaussians.to("cpu"))
        save_cameras_json(stage / "cameras.json", scene.cameras, image_shape, names)
        write_mp4(stage / "flythrough.mp4", flythrough)
        write_json_atomic(stage / "report.json", report)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input", required=True, type=Path, help="the output folder of `videoscene generate` (or demo)"
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="output folder (must not exist, unless --overwrite)"
    )
    parser.add_argument(
        "--steps", type=arguments.positive_int, default=ReconstructConfig.steps, help="optimisation steps"
    )
    parser.add_argument(
        "--max-gaussians",
        type=arguments.positive_int,
        default=None,
        help="cap on the Gaussian count while densifying (default: twice the prior's count)",
    )
    parser.add_argument(
        "--confidence-tau",
        type=float,
        default=ReconstructConfig.confidence_tau,
        metavar="TAU",
        help="frame weight exp(-d/TAU), d the path distance to the nearer input view in path lengths "
        "(inf: all frames alike)",
    )
    parser.add_argument(
        "--flythrough-offset",
        type=float,
        default=OFF_PATH_OFFSET,
        metavar="B",
        help="the fly-through's sideways offset from the input path, in baselines (half of it up)",
    )
    parser.add_argument(
        "--log-every",
        type=arguments.positive_int,
        default=ReconstructConfig.log_every,
        help="loss-curve interval",
    )
    parser.add_argument("--seed", type=arguments.seed, default=0)
    parser.add_argument(
        "--device",
        type=arguments.device,
        default="auto",
        help="cpu, cuda, cuda:N or auto (cuda when available)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing output folder that videoscene wrote"
    )


def run(args: argparse.Namespace) -> None:
    if not args.confidence_tau > 0:
        raise InputError(f"--confidence-tau must be > 0 (inf for equal weights), got {args.confidence_tau}")
    if not math.isfinite(args.flythrough_offset):
        raise InputError(f"--flythrough-offset must be a finite number, got {args.flythrough_offset}")
    config = replace(
        ReconstructConfig(),
        steps=args.steps,
        confidence_tau=args.confidence_tau,
        log_every=args.log_every,
        densify=DensifyConfig(max_gaussians=args.max_gaussians),
    )
    device = resolve_device(args.device)
    report = reconstruct_folder(
        args.input, args.out, config, args.seed, device, args.overwrite, args.flythrough_offset
    )
    counts = report["gaussians"]
    print(
        f"wrote {args.out} ({report['steps']} steps in {report['seconds']:.1f}s; Gaussians "
        f"{counts['initial']} -> {counts['final']}; PSNR on the frames {report['initial_psnr']:.2f} -> "
        f"{report['psnr']:.2f} dB)"
    )
    print("  files: gaussians.ply, cameras.json, flythrough.mp4, report.json")
