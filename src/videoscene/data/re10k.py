"""RealEstate10K `.torch` chunks, the format pixelSplat/MVSplat/VideoScene read (pixelSplat's chunk layout).

A split folder holds `000000.torch, 000001.torch, ...` (each a `torch.save`d list of scene dicts) and
`index.json` mapping scene key -> chunk file name. A scene dict has "key" (str), "url" (str),
"timestamps" (int64 [N]), "cameras" (float32 [N, 18]) and "images" (N uint8 1-D tensors of encoded
JPEG/PNG bytes). Chunks are only ever read with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float, Int
from PIL import Image
from torch import Tensor

from videoscene.errors import VideoSceneError
from videoscene.geometry.cameras import cameras_from_re10k_vector, cameras_to_re10k_vector
from videoscene.image_io import to_uint8
from videoscene.io_utils import atomic_path, inside, read_json_object, write_json_atomic

INDEX_FILE = "index.json"
_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass
class Scene:
    key: str
    images: list[Tensor]
    cameras: Float[Tensor, "frame 18"]
    timestamps: Int[Tensor, " frame"]
    url: str = ""

    def __len__(self) -> int:
        return len(self.images)

    @property
    def extrinsics(self) -> Float[Tensor, "frame 4 4"]:
        return cameras_from_re10k_vector(self.cameras)[0]

    @property
    def intrinsics(self) -> Float[Tensor, "frame 3 3"]:
        return cameras_from_re10k_vector(self.cameras)[1]

    def frames(self, indices: Sequence[int] | None = None) -> Float[Tensor, "frame 3 height width"]:
        """Decode frames to float [0, 1]; all frames of a scene must share one size."""
        indices = range(len(self)) if indices is None else indices
        decoded = [decode_image(self.images[i]) for i in indices]
        shapes = {tuple(image.shape) for image in decoded}
        if len(shapes) > 1:
            raise VideoSceneError(
                f"scene {self.key} has images of different sizes {sorted(shapes)}; re-convert it at one size"
            )
        return torch.stack(decoded)

    def to_dict(self) -> dict:
        return {
            "key": self.key,
            "url": self.url,
            "timestamps": self.timestamps.to(torch.int64),
            "cameras": self.cameras.to(torch.float32),
            "images": [image.to(torch.uint8) for image in self.images],
        }


def encode_image(image, fmt: str = "png", quality: int = 95) -> Tensor:
    """uint8 [H, W, 3] array or float [3, H, W] tensor in [0, 1] -> uint8 1-D tensor of PNG/JPEG bytes."""
    if isinstance(image, Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise VideoSceneError(f"expected an image tensor [3, H, W], got {list(image.shape)}")
        image = to_uint8(image).permute(1, 2, 0).cpu().numpy()
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise VideoSceneError(f"expected a uint8 image [H, W, 3], got {image.dtype} {list(image.shape)}")
    buffer = io.BytesIO()
    fmt = fmt.lower()
    if fmt == "png":
        # Fixed compression settings keep the bytes identical for identical pixels (bit-identical datasets).
        Image.fromarray(image).save(buffer, format="PNG", compress_level=6, optimize=False)
    elif fmt in ("jpg", "jpeg"):
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    else:
        raise VideoSceneError(f"unknown image format {fmt!r}; use png or jpeg")
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def decode_image(data: Tensor) -> Float[Tensor, "3 height width"]:
    try:
        with Image.open(io.BytesIO(data.numpy().tobytes())) as image:
            array = np.asarray(image.convert("RGB"))
    except Exception as error:  # PIL raises many types for corrupt data
        raise VideoSceneError(
            f"an image in the chunk cannot be decoded ({type(error).__name__}); the chunk is corrupt"
        ) from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255


def scene_from_frames(
    key: str,
    frames,
    extrinsics: Float[Tensor, "frame 4 4"],
    intrinsics: Float[Tensor, "frame 3 3"],
    fmt: str = "png",
    timestamps: Int[Tensor, " frame"] | None = None,
    url: str = "",
) -> Scene:
    """Build a scene from frames (uint8 [F, H, W, 3] array or float [F, 3, H, W] tensor) and cameras."""
    if not _KEY_PATTERN.match(key):
        raise VideoSceneError(f"scene key {key!r} must use only letters, digits, '.', '_' and '-'")
    count = len(frames)
    if extrinsics.shape != (count, 4, 4) or intrinsics.shape != (count, 3, 3):
        raise VideoSceneError(
            f"scene {key}: {count} frames need extrinsics [{count}, 4, 4] and intrinsics [{count}, 3, 3], "
            f"got {list(extrinsics.shape)} and {list(intrinsics.shape)}"
        )
    images = [encode_image(frame, fmt) for frame in frames]
    timestamps = torch.arange(count, dtype=torch.int64) if timestamps is None else timestamps.to(torch.int64)
    return Scene(
        key, images, cameras_to_re10k_vector(extrinsics.float(), intrinsics.float()), timestamps, url
    )


def _validate_scene_dict(raw, source: str) -> Scene:
    if not isinstance(raw, dict):
        raise VideoSceneError(f"{source}: a chunk entry is {type(raw).__name__}, expected a scene dict")
    missing = {"key", "timestamps", "cameras", "images"} - raw.keys()
    if missing:
        raise VideoSceneError(
            f"{source}: scene entry lacks {sorted(missing)}; is this a RealEstate10K chunk?"
        )
    key, cameras, images, timestamps = raw["key"], raw["cameras"], raw["images"], raw["timestamps"]
    if not isinstance(cameras, Tensor) or cameras.ndim != 2 or cameras.shape[1] != 18:
        shape = list(cameras.shape) if isinstance(cameras, Tensor) else type(cameras).__name__
        raise VideoSceneError(f"{source}: scene {key}: cameras must be a [N, 18] tensor, got {shape}")
    if not torch.isfinite(cameras).all():
        raise VideoSceneError(f"{source}: scene {key}: cameras contain NaN or inf")
    if len(images) != cameras.shape[0] or len(timestamps) != cameras.shape[0]:
        raise VideoSceneError(
            f"{source}: scene {key}: {len(images)} images, {len(timestamps)} timestamps and "
            f"{cameras.shape[0]} cameras disagree"
        )
    if not all(
        isinstance(image, Tensor) and image.dtype == torch.uint8 and image.ndim == 1 for image in images
    ):
        raise VideoSceneError(
            f"{source}: scene {key}: images must be uint8 1-D tensors of encoded JPEG/PNG bytes"
        )
    return Scene(str(key), list(images), cameras.float(), timestamps.to(torch.int64), str(raw.get("url", "")))


def read_chunk(path: str | Path) -> list[Scene]:
    path = Path(path)
    if not path.is_file():
        raise VideoSceneError(f"chunk {path} does not exist")
    try:
        raw = torch.load(path, weights_only=True, map_location="cpu")
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError, OSError) as error:
        reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        raise VideoSceneError(
            f"chunk {path} is corrupt or truncated ({reason}); re-create or re-download it"
        ) from None
    if not isinstance(raw, list):
        raise VideoSceneError(f"chunk {path} holds {type(raw).__name__}, expected a list of scene dicts")
    return [_validate_scene_dict(entry, str(path)) for entry in raw]


def write_chunk(path: str | Path, scenes: Sequence[Scene]) -> None:
    # Save through a handle: torch names the zip's inner folder after a *path*, which would embed the random
    # temporary name and break bit-identical datasets.
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save([scene.to_dict() for scene in scenes], handle)


def write_split(split_dir: str | Path, scenes: Iterable[Scene], scenes_per_chunk: int = 16) -> dict[str, str]:
    """Write scenes as numbered chunks plus index.json into `split_dir`; returns the index."""
    if scenes_per_chunk < 1:
        raise VideoSceneError("scenes_per_chunk must be at least 1")
    split_dir = Path(split_dir)
    split_dir.mkdir(parents=True, exist_ok=True)
    index: dict[str, str] = {}
    pending: list[Scene] = []

    def flush() -> None:
        name = f"{len(set(index.values())):06d}.torch"
        write_chunk(split_dir / name, pending)
        index.update({scene.key: name for scene in pending})
        pending.clear()

    for scene in scenes:
        if scene.key in index or any(s.key == scene.key for s in pending):
            raise VideoSceneError(f"scene key {scene.key} appears twice; keys must be unique within a split")
        pending.append(scene)
        if len(pending) == scenes_per_chunk:
            flush()
    if pending:
        flush()
    write_json_atomic(split_dir / INDEX_FILE, index)
    return index


def load_index(split_dir: str | Path) -> dict[str, str]:
    split_dir = Path(split_dir)
    path = split_dir / INDEX_FILE
    if not path.is_file():
        raise VideoSceneError(
            f"{split_dir} has no {INDEX_FILE}; point at a split folder (e.g. DATA/train) of "
            "RealEstate10K chunks"
        )
    holds = "an object mapping scene keys to chunk file names"
    index = read_json_object(path, "scene index", holds=holds)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in index.items()):
        raise VideoSceneError(f"scene index {path} must hold {holds}")
    for chunk_name in set(index.values()):
        inside(split_dir, chunk_name, f"{path}: chunk")
    return index


def iter_scenes(split_dir: str | Path) -> Iterator[Scene]:
    """Every scene of a split, chunk by chunk in index order (each chunk is read once)."""
    split_dir = Path(split_dir)
    index = load_index(split_dir)
    for chunk_name in dict.fromkeys(index.values()):
        for scene in read_chunk(split_dir / chunk_name):
            if scene.key in index:
                yield scene


def load_scene(split_dir: str | Path, key: str) -> Scene:
    split_dir = Path(split_dir)
    index = load_index(split_dir)
    if key not in index:
        raise VideoSceneError(f"scene {key} is not in {split_dir / INDEX_FILE}")
    for scene in read_chunk(split_dir / index[key]):
        if scene.key == key:
            return scene
    raise VideoSceneError(f"scene {key} is listed in {INDEX_FILE} but missing from chunk {index[key]}")
