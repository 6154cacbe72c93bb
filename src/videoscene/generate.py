"""`videoscene generate` and `videoscene demo`: two images (+ cameras) in; a folder with the generated video,
the coarse render, the frames, the Gaussians (.ply), a side-by-side comparison and a report out.

Without --cameras, both cameras are estimated from the images (videoscene.geometry.relative_pose,
docs/app.md): camera 0 is the world frame, the baseline is --baseline scene units, the field of view comes
from EXIF or --fov (default 60°), and report.json's "estimated_cameras" records the inlier count and the other
figures.

cams.json (docs/generate.md):
    {"convention": "opencv" | "opengl",          # camera-to-world axes; opengl = NeRF/Blender
     "intrinsics_unit": "normalized" | "pixels",  # pixels: of the input images' size
     "near": 0.5, "far": 20.0,                    # optional depth range of the scene
     "cameras": [{"extrinsics": 4x4, "intrinsics": 3x3}, {...}],
     "targets": [...]}                            # optional: explicit cameras for the F output frames
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from videoscene import arguments
from videoscene.arguments import resolve_device
from videoscene.errors import VideoSceneError
from videoscene.geometry.cameras import normalize_intrinsics, opengl_to_opencv
from videoscene.image_io import MAX_IMAGE_PIXELS, MIN_IMAGE_SIDE, read_rgb
from videoscene.io_utils import check_output_dir, read_json_object
from videoscene.types import Cameras


def load_image(
    path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS, min_side: int = MIN_IMAGE_SIDE
) -> torch.Tensor:
    """An image file -> float [3, H, W] in [0, 1] (transparency composited onto white, docs/generate.md)."""
    return (
        torch.from_numpy(read_rgb(path, "white", max_pixels, min_side).copy()).permute(2, 0, 1).float() / 255
    )


def _camera_list(entries, what: str, convention: str, unit: str, image_size: tuple[int, int]) -> Cameras:
    if not isinstance(entries, list) or not entries:
        raise VideoSceneError(
            f"cameras file: {what!r} must be a non-empty list of {{extrinsics, intrinsics}} objects"
        )
    try:
        extrinsics = torch.tensor([entry["extrinsics"] for entry in entries], dtype=torch.float64)
        intrinsics = torch.tensor([entry["intrinsics"] for entry in entries], dtype=torch.float64)
    except (KeyError, TypeError, ValueError):
        raise VideoSceneError(
            f"cameras file: every entry of {what!r} needs 'extrinsics' (4x4 numbers) and 'intrinsics' "
            "(3x3 numbers)"
        ) from None
    if extrinsics.shape[1:] != (4, 4) or intrinsics.shape[1:] != (3, 3):
        raise VideoSceneError(
            f"cameras file: {what!r} extrinsics must be 4x4 and intrinsics 3x3, got "
            f"{list(extrinsics.shape[1:])} and {list(intrinsics.shape[1:])}"
        )
    if not (torch.isfinite(extrinsics).all() and torch.isfinite(intrinsics).all()):
        raise VideoSceneError(f"cameras file: {what!r} contains NaN or inf")
    if convention == "opengl":
        extrinsics = opengl_to_opencv(extrinsics)
    if unit == "pixels":
        height, width = image_size
        intrinsics = normalize_intrinsics(intrinsics, width, height)
    return Cameras(extrinsics.float(), intrinsics.float())


def load_cameras_file(
    path: str | Path, image_size: tuple[int, int]
) -> tuple[Cameras, Cameras | None, float | None, float | None]:
    holds = "a JSON object with a 'cameras' list (see docs/generate.md)"
    raw = read_json_object(path, "cameras file", holds=holds)
    if "cameras" not in raw:
        raise VideoSceneError(f"cameras file {path} must hold {holds}")
    convention = raw.get("convention", "opencv")
    unit = raw.get("intrinsics_unit", "normalized")
    if convention not in ("opencv", "opengl") or unit not in ("normalized", "pixels"):
        raise VideoSceneError(
            "cameras file: convention must be opencv|opengl and intrinsics_unit normalized|pixels"
        )
    cameras = _camera_list(raw["cameras"], "cameras", convention, unit, image_size)
    if len(cameras) != 2:
        raise VideoSceneError(
            f"cameras file {path} has {len(cameras)} cameras; give exactly one per image (2)"
        )
    targets = (
        _camera_list(raw["targets"], "targets", convention, unit, image_size) if "targets" in raw else None
    )
    near, far = (_depth(path, raw, key) for key in ("near", "far"))
    if near is not None and far is not None and not near < far:
        raise VideoSceneError(f"cameras file {path}: near ({near}) must be less than far ({far})")
    return cameras, targets, near, far


def _depth(path, raw: dict, key: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (value > 0 and math.isfinite(value))
    ):
        raise VideoSceneError(
            f"cameras file {path}: {key!r} must be a positive number of scene units, got {value!r}"
        )
    return float(value)


def generate(args: argparse.Namespace, image_paths: list[str], cameras_path: str | None) -> None:
    from videoscene.pipeline import VideoScenePipeline

    # 1. Check the arguments, the output location and the inputs before loading anything heavy
    if len(image_paths) != 2:
        raise VideoSceneError(f"give exactly two images with --images A B (got {len(image_paths)})")
    out = check_output_dir(args.out, args.overwrite)
    device = resolve_device(args.device)
    # The student starts from the render at DDPNet's t; the teacher, unless told otherwise, from pure noise.
    start = args.timestep if args.timestep is not None else ("none" if args.model == "teacher" else "auto")
    start = None if start == "none" else start
    images = [load_image(path) for path in image_paths]
    if images[0].shape != images[1].shape:
        raise VideoSceneError(
            f"the two images differ in size ({list(images[0].shape[1:])} vs "
            f"{list(images[1].shape[1:])}); give two images of one size"
        )
    images = torch.stack(images)
    fov, baseline = getattr(args, "fov", None), getattr(args, "baseline", None)
    extra_report = {}
    if cameras_path is not None:
        if fov is not None or baseline is not None:
            raise VideoSceneError(
                "--fov and --baseline apply only to estimated cameras; drop them or drop --cameras"
            )
        cameras, targets, near, far = load_cameras_file(cameras_path, tuple(images.shape[-2:]))
    else:  # OpenCV (SIFT, MAGSAC) is imported only here, for unposed input
        from videoscene.geometry.relative_pose import estimate_cameras_for_files

        estimate = estimate_cameras_for_files(images, image_paths, fov, baseline)
        cameras, targets, near, far = estimate.cameras, None, estimate.near, estimate.far
        extra_report["estimated_cameras"] = estimate.summary()

    # 2. Load the weights and run the pipeline
    pipeline = VideoScenePipeline.from_pretrained(args.weights, device=device)
    output = pipeline(
        images,
        cameras,
        target_cameras=targets,
        num_frames=args.frames,
        timestep=start,
        num_steps=args.steps,
        model=args.model,
        seed=args.seed,
        near=near,
        far=far,
        resize=args.resize,
        vae_tiling=False if args.untiled_vae else None,
    )

    # 3. Write everything, or nothing
    record = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    report = {"pipeline": pipeline.describe(), "arguments": record, **extra_report}
    output.save(out, overwrite=args.overwrite, y_up=args.y_up, report=report)
    if getattr(
        args, "reconstruct", None
    ):  # 3D Gaussians fitted to the frames just written, into OUT/reconstruction/
        from videoscene.reconstruct.cli import reconstruct_folder
        from videoscene.reconstruct.optimize import ReconstructConfig

        config = ReconstructConfig(steps=args.reconstruct)
        reconstruct_folder(out, out / "reconstruction", config, args.seed, device)
    timings = ", ".join(f"{k} {v:.2f}s" for k, v in output.timings.items())
    estimated = extra_report.get("estimated_cameras")
    cameras_note = f"; cameras estimated from {estimated['num_inliers']} inlier matches" if estimated else ""
    print(f"wrote {out} ({output.method}, t={output.timestep}; {timings}{cameras_note})")
    print(f"  open first: {out / 'comparison.png'} (inputs, coarse render, generated)")
    print(
        f"  also: video.mp4, coarse.mp4, frames/ ({output.frames.shape[0]} PNGs), gaussians.ply + "
        f"cameras.json{' (y-up world)' if args.y_up else ''}, report.json"
        + (", reconstruction/ (gaussians.ply, flythrough.mp4)" if getattr(args, "reconstruct", None) else "")
    )


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (must not exist, unless --overwrite)")
    parser.add_argument(
        "--frames",
        type=arguments.frame_count,
        help="number of frames, 8k+1 (default: the model's, 17 for tiny)",
    )
    parser.add_argument(
        "--timestep",
        type=arguments.timestep,
        help="'auto' (DDPNet), an integer t from 1 to T-1 of the model's schedule (999 for CogVideoX), or "
        "'none' (pure noise); "
        "default: auto for the student, none for the teacher",
    )
    parser.add_argument(
        "--steps",
        type=arguments.positive_int,
        default=1,
        help="denoising steps (1 for the student; 1/4/50 with --model teacher)",
    )
    parser.add_argument("--model", default="student", choices=["student", "student-noleap", "teacher"])
    parser.add_argument("--seed", type=arguments.seed, default=0)
    parser.add_argument(
        "--resize",
        choices=["crop", "stretch"],
        help="bring the images to the model's size by centre-cropping to its aspect ratio or by stretching "
        "them, as the authors do (docs/generate.md); default: the weights' pipeline.json, else crop",
    )
    parser.add_argument(
        "--y-up",
        action="store_true",
        help="write gaussians.ply and cameras.json in a y-up world (camera 0 turned half about x), which "
        "splat viewers that assume y up show the right way up; default: camera 0's OpenCV axes (y down)",
    )
    parser.add_argument(
        "--untiled-vae",
        action="store_true",
        help="encode and decode whole frames, not overlapping tiles (the authors' setting; more memory; "
        "changes only weights whose VAE tiles, such as CogVideoX folders)",
    )
    from videoscene.reconstruct.optimize import ReconstructConfig

    parser.add_argument(
        "--reconstruct",
        nargs="?",
        const=ReconstructConfig.steps,
        type=arguments.positive_int,
        metavar="STEPS",
        help="then fit 3D Gaussians to the frames (`videoscene reconstruct`, STEPS steps; default "
        f"{ReconstructConfig.steps}) into OUT/reconstruction/",
    )
    parser.add_argument("--device", type=arguments.device, default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--weights", help="weights folder (default: the bundled tiny weights)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing output folder that videoscene wrote"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", nargs="+", required=True, metavar="IMAGE", help="the two input views")
    parser.add_argument(
        "--cameras",
        help="cams.json with the two cameras (docs/generate.md); without it they are estimated from the "
        "images",
    )
    parser.add_argument(
        "--fov",
        type=float,
        metavar="DEG",
        help="horizontal field of view for estimated cameras (default: EXIF, else 60)",
    )
    parser.add_argument(
        "--baseline",
        type=float,
        metavar="B",
        help="distance between estimated cameras, scene units (default 1.0)",
    )
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> None:
    generate(args, args.images, args.cameras)
