"""`videoscene data convert`: a real capture (NeRF / instant-ngp transforms.json, LLFF poses_bounds.npy,
COLMAP text model) -> one RealEstate10K scene in `OUT/<split>/000000.torch` + `index.json`.

Cameras go to the internal convention (geometry/cameras.py) and then to RE10K's 18 numbers. Images are
undistorted to pinhole when the file has lens distortion (instant-ngp, COLMAP), RGBA is composited on a
white background (NeRF-synthetic's convention; `--black-background` for black), and `--max-size` shrinks
them. One input folder is one scene; its key is the folder name made filesystem-safe.
"""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from videoscene.data.re10k import Scene, encode_image, write_split
from videoscene.errors import VideoSceneError
from videoscene.geometry.cameras import (
    CaptureCameras,
    cameras_to_re10k_vector,
    denormalize_intrinsics,
    normalize_intrinsics,
    read_colmap_text,
    read_llff_poses_bounds,
    read_transforms_json,
    resolve_image_path,
)
from videoscene.geometry.image_ops import fit_within, resize, undistort
from videoscene.image_io import read_rgb
from videoscene.io_utils import staged_output_dir

logger = logging.getLogger(__name__)

FORMATS = ("nerf", "instant-ngp", "llff", "colmap")
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg"}
# A stored image whose aspect ratio is within this of the camera file's is taken as a uniformly resized copy
# (normalised intrinsics are resolution-independent), e.g. LLFF's images_4/.
_ASPECT_TOLERANCE = 0.01
_NAME_PATTERN = r"[A-Za-z0-9_.\-]+"  # scene keys and split names (filesystem-safe)


@dataclass
class ConvertConfig:
    format: str
    input: Path
    out: Path
    split: str = "test"
    max_size: int | None = None  # shrink so the longer side is at most this many pixels
    background: str = "white"  # what transparent pixels are composited on
    image_format: str = "png"
    key: str | None = None  # scene key; default: the input folder's name
    overwrite: bool = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", required=True, metavar="|".join(FORMATS), help="layout of the input folder"
    )
    parser.add_argument("--input", required=True, type=Path, help="scene folder (or a transforms*.json file)")
    parser.add_argument("--out", required=True, type=Path, help="output dataset folder (must not exist)")
    parser.add_argument(
        "--split",
        default="test",
        help="split folder to write inside --out; NeRF reads transforms_<split>.json (default: test)",
    )
    parser.add_argument(
        "--max-size", type=int, default=None, help="shrink images so the longer side is at most N px"
    )
    background = parser.add_mutually_exclusive_group()
    background.add_argument(
        "--white-background",
        dest="background",
        action="store_const",
        const="white",
        help="composite transparent pixels on white (default)",
    )
    background.add_argument(
        "--black-background",
        dest="background",
        action="store_const",
        const="black",
        help="composite on black",
    )
    parser.set_defaults(background="white")
    parser.add_argument(
        "--image-format", default="png", choices=["png", "jpeg"], help="encoding of stored frames"
    )
    parser.add_argument("--key", default=None, help="scene key (default: the input folder's name)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def run(args: argparse.Namespace) -> None:
    convert(
        ConvertConfig(
            format=args.format,
            input=args.input,
            out=args.out,
            split=args.split,
            max_size=args.max_size,
            background=args.background,
            image_format=args.image_format,
            key=args.key,
            overwrite=args.overwrite,
        )
    )


def convert(config: ConvertConfig) -> Path:
    """Convert one scene; returns the split folder written."""
    # 1. Check inputs
    if config.format not in FORMATS:
        raise VideoSceneError(f"unknown format {config.format!r}; use one of {', '.join(FORMATS)}")
    if not config.input.exists():
        raise VideoSceneError(f"input {config.input} does not exist")
    if config.max_size is not None and config.max_size < 1:
        raise VideoSceneError(f"--max-size must be positive, got {config.max_size}")
    if not re.fullmatch(_NAME_PATTERN, config.split):
        raise VideoSceneError(
            f"split name {config.split!r} must be a plain folder name such as test or train"
        )
    if config.key is not None and not re.fullmatch(_NAME_PATTERN, config.key):
        raise VideoSceneError(f"scene key {config.key!r} may only use letters, digits, '.', '_' and '-'")
    scene_dir = config.input.parent if config.input.is_file() else config.input
    key = config.key or _sanitize_key(scene_dir.resolve().name)

    # 2. Read the cameras and find the images they belong to
    cameras, image_paths = _read_capture(config)
    logger.info("%s: %d %s cameras", config.input, len(cameras), config.format)

    # 3. Decode, undistort, composite and resize every frame; store encoded bytes
    with staged_output_dir(config.out, overwrite=config.overwrite) as stage:
        images, intrinsics, sizes = [], [], set()
        for index, path in enumerate(image_paths):
            encoded, size, frame_intrinsics = _prepare_frame(path, cameras, index, config)
            images.append(encoded)
            sizes.add(size)
            intrinsics.append(frame_intrinsics)
        if len(sizes) > 1:
            raise VideoSceneError(
                f"images in {config.input} have different sizes {sorted(sizes)}; a scene needs one size"
            )
        scene = Scene(
            key=key,
            images=images,
            cameras=cameras_to_re10k_vector(cameras.extrinsics.float(), torch.stack(intrinsics).float()),
            timestamps=torch.arange(len(images), dtype=torch.int64),
        )
        # 4. Write the chunk and index.json (moved into place only if everything succeeded)
        write_split(stage / config.split, [scene])
    ((height, width),) = sizes
    logger.info(
        "wrote scene %s (%d frames, %dx%d) to %s", key, len(images), width, height, config.out / config.split
    )
    return config.out / config.split


def _sanitize_key(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", name).strip("_.") or "scene"


def _read_capture(config: ConvertConfig) -> tuple[CaptureCameras, list[Path]]:
    if config.format in ("nerf", "instant-ngp"):
        path = _find_transforms(config.input, config.split, prefer_split=config.format == "nerf")
        cameras = read_transforms_json(path)
        return cameras, [resolve_image_path(path.parent, name) for name in cameras.file_names]
    if config.format == "llff":
        return _read_llff(config.input)
    return _read_colmap(config.input)


def _find_transforms(input_path: Path, split: str, prefer_split: bool) -> Path:
    """NeRF-synthetic ships transforms_{train,val,test}.json, instant-ngp a single transforms.json."""
    if input_path.is_file():
        return input_path
    names = [f"transforms_{split}.json", "transforms.json"]
    for name in names if prefer_split else names[::-1]:
        if (input_path / name).is_file():
            return input_path / name
    raise VideoSceneError(f"no {' or '.join(names)} in {input_path}; is it a NeRF/instant-ngp scene folder?")


def _list_images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


def _read_llff(folder: Path) -> tuple[CaptureCameras, list[Path]]:
    """Poses pair with the sorted images of `images/` (full size) or else the least-downsampled
    `images_N/`."""
    candidates = [folder / "images"] + sorted(
        folder.glob("images_*"), key=lambda p: int(p.name[7:]) if p.name[7:].isdigit() else 1 << 30
    )
    image_dir = next((c for c in candidates if c.is_dir()), None)
    if image_dir is None:
        raise VideoSceneError(f"no images/ or images_N/ folder in {folder}; is it an LLFF scene?")
    image_paths = _list_images(image_dir)
    cameras = read_llff_poses_bounds(folder / "poses_bounds.npy")
    if len(image_paths) != len(cameras):
        raise VideoSceneError(
            f"{folder / 'poses_bounds.npy'} has {len(cameras)} poses but {image_dir} has "
            f"{len(image_paths)} images"
        )
    cameras.file_names = [path.name for path in image_paths]
    return cameras, image_paths


def _read_colmap(folder: Path) -> tuple[CaptureCameras, list[Path]]:
    """COLMAP text model in sparse/0/, sparse/ or the folder itself; images in images/ (or the folder)."""
    model_dirs = [folder / "sparse" / "0", folder / "sparse", folder]
    model_dir = next(
        (d for d in model_dirs if (d / "cameras.txt").is_file() and (d / "images.txt").is_file()), None
    )
    if model_dir is None:
        if any((d / "cameras.bin").is_file() for d in model_dirs):
            raise VideoSceneError(
                f"{folder} has a binary COLMAP model; export it as text: colmap model_converter "
                "--output_type TXT"
            )
        raise VideoSceneError(
            f"no cameras.txt + images.txt in {folder}/sparse/0, {folder}/sparse or {folder}"
        )
    cameras = read_colmap_text(model_dir)
    image_root = folder / "images" if (folder / "images").is_dir() else folder
    image_paths = []
    for name in cameras.file_names:
        if not (image_root / name).is_file():
            raise VideoSceneError(
                f"image {name} listed in {model_dir / 'images.txt'} is missing under {image_root}"
            )
        image_paths.append(image_root / name)
    return cameras, image_paths


def _prepare_frame(
    path: Path, cameras: CaptureCameras, index: int, config: ConvertConfig
) -> tuple[torch.Tensor, tuple[int, int], torch.Tensor]:
    """Load one frame and bring it to a pinhole image at the output size. Returns the encoded bytes, the
    stored size (H, W) and the stored image's normalised intrinsics."""
    rgb = read_rgb(path, config.background, min_side=1)
    height, width = rgb.shape[:2]
    expected_height, expected_width = cameras.image_sizes[index].tolist()
    expected_aspect = expected_width / expected_height
    if abs(width / height - expected_aspect) > _ASPECT_TOLERANCE * expected_aspect:
        raise VideoSceneError(
            f"image {path} is {width}x{height} but its camera is for {expected_width}x{expected_height}; "
            "the images do not match the camera file"
        )
    intrinsics = cameras.intrinsics[index]
    if not (cameras.distortion[index] == 0).all():
        rgb, pixel_intrinsics = undistort(
            rgb, denormalize_intrinsics(intrinsics, width, height), cameras.distortion[index]
        )
        intrinsics = normalize_intrinsics(pixel_intrinsics, width, height)
    size = (height, width) if config.max_size is None else fit_within(height, width, config.max_size)
    if size != (height, width):
        image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255
        image, intrinsics = resize(image, intrinsics, size)
        encoded = encode_image(image.clamp(0, 1), config.image_format)
    else:
        encoded = encode_image(rgb, config.image_format)
    return encoded, size, intrinsics
