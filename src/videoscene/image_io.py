"""Reading a photo the same way everywhere (`generate`, the app, `data convert`): one size policy, bit
depths scaled to 8 bits, transparency composited onto a stated background, and one line for any file
that is not a readable image (including decompression bombs, refused from the header before decoding)."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float, UInt8
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from videoscene.errors import InputError
from videoscene.io_utils import atomic_path

logger = logging.getLogger(__name__)

MAX_IMAGE_PIXELS = 40_000_000  # e.g. 7700 × 5200; larger photos are refused before they are decoded
MIN_IMAGE_SIDE = 32  # the prior's backbone downsamples 4×, the cost volume needs a few pixels more
BACKGROUNDS = {"white": 1.0, "black": 0.0}


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) from the header, without decoding the pixels."""
    with _opened(path) as image:
        return image.height, image.width


def read_rgb(
    path: str | Path,
    background: str = "white",
    max_pixels: int = MAX_IMAGE_PIXELS,
    min_side: int = MIN_IMAGE_SIDE,
) -> np.ndarray:
    """An image file -> uint8 [H, W, 3].

    16-bit and 32-bit greyscale (PIL modes I;16, I) are scaled to 8 bits rather than clipped; pixels with
    transparency are composited as rgb·α + bg·(1 − α) onto `background` (white: NeRF-synthetic's convention),
    and a log line says so.
    """
    path = Path(path)
    with _opened(path) as image:
        width, height = image.size
        if width * height > max_pixels:
            raise InputError(
                f"image {path} is {width}x{height} ({width * height / 1e6:.0f} megapixels); the limit is "
                f"{max_pixels / 1e6:.0f} megapixels, so shrink it first"
            )
        if min(width, height) < min_side:
            raise InputError(
                f"image {path} is {width}x{height}; images need at least {min_side} pixels a side"
            )
        try:
            image.load()
            array = _to_rgb_or_rgba(image)
        except (OSError, ValueError, SyntaxError) as error:
            raise InputError(
                f"image {path} cannot be decoded ({type(error).__name__}: {error}); give a PNG or JPEG file"
            ) from None
    return _flatten_alpha(array, background, path.name)


def _flatten_alpha(array: np.ndarray, background: str, name: str) -> np.ndarray:
    """uint8 RGB or RGBA [H, W, 3|4] -> uint8 RGB, transparency composited onto `background`."""
    if array.shape[-1] == 3:
        return array
    if background not in BACKGROUNDS:
        raise InputError(f"unknown background {background!r}; use {' or '.join(BACKGROUNDS)}")
    rgba = array.astype(np.float32) / 255
    alpha = rgba[..., 3:]
    if (alpha < 1).any():
        logger.info("image %s has transparent pixels: composited onto %s", name, background)
    composite = rgba[..., :3] * alpha + BACKGROUNDS[background] * (1 - alpha)
    return to_uint8(torch.from_numpy(composite)).numpy()


def to_uint8(images: Float[Tensor, "*shape"]) -> UInt8[Tensor, "*shape"]:
    """Floats in [0, 1] -> uint8 of the same shape and device: clamped, times 255, rounded to the nearest
    (ties to even). Every float-to-8-bit conversion goes through here, so the same image gives the same bytes
    in a PNG, an mp4, a cache or OpenCV. Half precision is widened to float32 first; float64 is kept."""
    images = images.detach()
    if images.dtype != torch.float64:
        images = images.float()
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


@contextlib.contextmanager
def _opened(path: str | Path) -> Iterator[Image.Image]:
    """`Image.open` with every way it fails (not an image, truncated, a decompression bomb) as one line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"image {path} declares an enormous size (a decompression bomb?); refused") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise InputError(
            f"image {path} cannot be read, it is not an image file ({type(error).__name__}); give a "
            "PNG or JPEG file"
        ) from None
    try:
        yield image
    finally:
        image.close()


def _to_rgb_or_rgba(image: Image.Image) -> np.ndarray:
    if image.mode.startswith("I;16") or image.mode == "I":
        grey = np.asarray(image, dtype=np.float64)
        scale = 255 / 65535 if image.mode.startswith("I;16") or grey.max(initial=0) <= 65535 else 255 / 2**32
        return np.repeat(np.clip(np.round(grey * scale), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    if image.mode == "F":
        grey = to_uint8(torch.from_numpy(np.asarray(image, dtype=np.float64))).numpy()
        return np.repeat(grey[..., None], 3, axis=-1)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    return np.array(image.convert("RGBA" if has_alpha else "RGB"))


def encode_mp4(pixels: np.ndarray, fps: int = 8) -> bytes:
    """uint8 frames [F, H, W, 3] -> H.264 mp4 bytes (yuv420p, odd sides padded by one edge pixel).

    One encoder thread: x264's threaded encoders may decide differently from run to run, and the same
    frames should give the same file (docs/conventions.md §Randomness).
    """
    import av

    if pixels.ndim != 4 or pixels.shape[-1] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [F, H, W, 3], got {pixels.dtype} {pixels.shape}")
    height, width = pixels.shape[1:3]
    pixels = np.pad(pixels, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options={"threads": "1"})
        stream.width, stream.height, stream.pix_fmt = pixels.shape[2], pixels.shape[1], "yuv420p"
        stream.codec_context.thread_count = 1
        for frame in pixels:
            container.mux(
                stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24"))
            )
        container.mux(stream.encode())
    return buffer.getvalue()


def write_mp4(path: str | Path, frames: Tensor, fps: int = 8) -> None:
    """Frames [F, 3, H, W] in [0, 1] -> an H.264 mp4 at `path`, written atomically."""
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"a video must be [frames, 3, height, width], got {tuple(frames.shape)}")
    pixels = to_uint8(frames).permute(0, 2, 3, 1).cpu().numpy()
    encoded = encode_mp4(pixels, fps)
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded)


ImageLike = Image.Image | str | Path | np.ndarray | Tensor


def as_image_tensor(image: ImageLike) -> Float[Tensor, "3 height width"]:
    """One image in any of the forms the pipeline accepts -> float [3, H, W] in [0, 1]: a PIL image, a file
    path (read as `read_rgb` does), an [H, W, 3] array (uint8, or floats in [0, 1]) or a [3, H, W] tensor
    (uint8, or floats in [0, 1])."""
    if isinstance(image, str | Path):
        return torch.from_numpy(read_rgb(image).copy()).permute(2, 0, 1).float() / 255
    if isinstance(image, Image.Image):
        image = _flatten_alpha(_to_rgb_or_rgba(image), "white", "given as a PIL image")
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3:
            raise InputError(f"an image array must be [height, width, 3], got {list(image.shape)}")
        image = torch.from_numpy(np.array(image)).permute(2, 0, 1)  # a copy: arrays may be read-only
    if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] != 3:
        shape = list(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise InputError(
            f"an image must be a PIL image, a path, an [H, W, 3] array or a [3, H, W] tensor; got {shape}"
        )
    if image.dtype == torch.uint8:
        return image.float() / 255
    image = image.float()
    if not torch.isfinite(image).all() or image.min() < 0 or image.max() > 1:
        raise InputError("float images must hold values in [0, 1]; divide 8-bit images by 255")
    return image
