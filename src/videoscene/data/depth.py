"""Ground-truth z-depth stored beside a split's chunks: `<split>/depth/<scene key>.npz`, one float16 array
`[F, H, W]` in metres (z along the optical axis, docs/conventions.md) under the key "depth", frame f of the
scene's frames at their stored size. `videoscene data synth --depth` writes it; the evaluation reads it to
tell seen from unseen pixels and to choose context pairs by overlap (geometry/visibility.py)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from videoscene.errors import LoadError
from videoscene.io_utils import inside

DEPTH_FOLDER = "depth"


def depth_path(split_dir: str | Path, key: str) -> Path:
    """Where a scene's depth is stored (refused if the key leads outside the split's depth folder)."""
    return inside(Path(split_dir) / DEPTH_FOLDER, f"{key}.npz", "scene key")


def write_depth(path: str | Path, depth: np.ndarray) -> None:
    """float16 z-depth as an .npz (key "depth") with fixed zip metadata, so the bytes are reproducible."""
    buffer = io.BytesIO()
    np.save(buffer, depth.astype(np.float16))
    info = zipfile.ZipInfo("depth.npy", date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(info, buffer.getvalue())


def read_depth(split_dir: str | Path, key: str, frames: int | None = None) -> np.ndarray | None:
    """The scene's z-depth as float32 `[F, H, W]`, or None when the split stores none for it. With `frames`,
    a file with another frame count is refused (it belongs to another version of the scene)."""
    path = depth_path(split_dir, key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            depth = archive["depth"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise LoadError(
            f"cannot read depth file {path} ({error}); regenerate it with `videoscene data synth --depth`"
        ) from None
    if depth.ndim != 3 or (frames is not None and len(depth) != frames):
        expected = f"[{frames}, H, W]" if frames is not None else "[F, H, W]"
        raise LoadError(
            f"depth file {path} holds an array of shape {list(depth.shape)}, expected {expected}; "
            "regenerate it with the scene"
        )
    return depth.astype(np.float32)
