"""3D Gaussians to and from PLY in the layout of the Inria 3DGS code, which common viewers read:

    x y z · nx ny nz (zeros) · f_dc_0..2 · f_rest_0..3(K-1)-1 · opacity · scale_0..2 · rot_0..3

all float32 in one `vertex` element. `f_rest` is channel-major (every higher-band coefficient of red,
then green, then blue), opacity is a logit, scales are logs, and rot_0..3 is the quaternion w x y z.
Beside it, `cameras.json` in the Inria layout. Also: Gaussians from a coloured point cloud (small
isotropic opaque splats), for quick looks at SfM points.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from plyfile import PlyData, PlyElement
from torch import Tensor

from videoscene.errors import VideoSceneError
from videoscene.gaussians.math import rgb_to_sh0, sh_degree_of
from videoscene.io_utils import atomic_path, write_json_atomic
from videoscene.types import Cameras, Gaussians, check_finite

logger = logging.getLogger(__name__)

# Opacity is stored as a logit; 0 and 1 are pulled this far inside so the file holds finite numbers.
OPACITY_EPS = 1e-7


def _property_names(d_sh: int) -> list[str]:
    rest = 3 * (d_sh - 1)
    return (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(rest)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )


def save_ply(path: str | os.PathLike, gaussians: Gaussians) -> None:
    """Write one scene (Gaussians of shape [G, ...], or a batch of one) atomically."""
    if gaussians.means.ndim == 3:
        if gaussians.means.shape[0] != 1:
            raise VideoSceneError(
                f"a PLY file holds one scene but got a batch of {gaussians.means.shape[0]}; save "
                "gaussians.select(i) each"
            )
        gaussians = gaussians.select(0)
    if gaussians.means.ndim != 2 or gaussians.means.shape[-1] != 3:
        raise VideoSceneError(f"Gaussians.means must have shape [G, 3], got {list(gaussians.means.shape)}")
    for name in ("means", "scales", "rotations", "harmonics", "opacities"):
        check_finite(f"Gaussians.{name}", getattr(gaussians, name))
    if (gaussians.scales <= 0).any():
        raise VideoSceneError("Gaussian scales must be positive to be stored as logarithms")
    d_sh = gaussians.harmonics.shape[-2]
    sh_degree_of(d_sh)

    def numpy64(tensor: Tensor) -> np.ndarray:
        return tensor.detach().to("cpu", torch.float64).numpy()

    count = gaussians.means.shape[0]
    harmonics = numpy64(gaussians.harmonics)  # [G, d_sh, 3]
    opacities = np.clip(numpy64(gaussians.opacities), OPACITY_EPS, 1 - OPACITY_EPS)
    columns = [
        numpy64(gaussians.means),
        np.zeros((count, 3)),
        harmonics[:, 0, :],
        harmonics[:, 1:, :].transpose(0, 2, 1).reshape(count, -1),  # channel-major, as Inria
        np.log(opacities / (1 - opacities))[:, None],
        np.log(numpy64(gaussians.scales)),
        numpy64(gaussians.rotations),  # wxyz, as Inria's rot_0 = w
    ]
    values = np.concatenate(columns, axis=1).astype(np.float32)
    names = _property_names(d_sh)
    vertices = np.empty(count, dtype=[(name, "f4") for name in names])
    for i, name in enumerate(names):
        vertices[name] = values[:, i]
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(vertices, "vertex")]).write(str(tmp))
    # Debug only: `path` may sit in a staging folder; the command that owns the output logs its final place.
    logger.debug("wrote %d Gaussians (SH degree %d) to %s", count, sh_degree_of(d_sh), path)


def save_cameras_json(
    path: str | os.PathLike, cameras: Cameras, image_size: tuple[int, int], names: list[str] | None = None
) -> None:
    """The Inria 3DGS `cameras.json` beside a PLY (SIBR's viewer and web splat viewers read it): per camera
    id, img_name, width, height, position (the camera centre), rotation (camera-to-world, rows; OpenCV
    camera axes, as COLMAP), fx and fy in pixels. `cameras` are camera-to-world with normalised intrinsics."""
    height, width = image_size
    names = names if names is not None else [f"{i:05d}" for i in range(len(cameras))]
    if len(names) != len(cameras):
        raise VideoSceneError(f"{len(names)} image names for {len(cameras)} cameras")
    entries = [
        {
            "id": i,
            "img_name": name,
            "width": width,
            "height": height,
            "position": extrinsics[:3, 3].tolist(),
            "rotation": extrinsics[:3, :3].tolist(),
            "fx": float(intrinsics[0, 0]) * width,
            "fy": float(intrinsics[1, 1]) * height,
        }
        for i, (name, extrinsics, intrinsics) in enumerate(
            zip(names, cameras.extrinsics.double().cpu(), cameras.intrinsics.double().cpu(), strict=True)
        )
    ]
    write_json_atomic(path, entries)


def load_ply(path: str | os.PathLike) -> Gaussians:
    """Read a 3DGS PLY into unbatched Gaussians [G, ...] (float32); one-line errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise VideoSceneError(f"Gaussian PLY file {path} does not exist")
    try:
        ply = PlyData.read(str(path))
    except Exception as error:  # plyfile raises several types for malformed headers and bodies
        raise VideoSceneError(
            f"{path} is not a readable PLY file ({type(error).__name__}: {error})"
        ) from error
    if "vertex" not in ply:
        raise VideoSceneError(f"{path} has no 'vertex' element; it is not a 3D Gaussian splatting PLY")
    vertex = ply["vertex"]
    present = [prop.name for prop in vertex.properties]
    rest = sorted(
        (name for name in present if name.startswith("f_rest_")), key=lambda name: int(name.rsplit("_", 1)[1])
    )
    if len(rest) % 3 != 0:
        raise VideoSceneError(f"{path} has {len(rest)} f_rest_* properties; expected 3·((degree+1)²-1)")
    d_sh = len(rest) // 3 + 1
    try:
        sh_degree_of(d_sh)
    except VideoSceneError as error:
        raise VideoSceneError(f"{path}: {error}") from error
    required = [name for name in _property_names(d_sh) if not name.startswith("n")]
    missing = [name for name in required if name not in present]
    if missing:
        raise VideoSceneError(
            f"{path} lacks 3D Gaussian properties {', '.join(missing)}; is it a plain point cloud?"
        )

    def column(name: str) -> np.ndarray:
        return np.asarray(vertex[name], dtype=np.float64)

    def stack(names: list[str]) -> np.ndarray:
        return np.stack([column(name) for name in names], axis=-1)

    count = vertex.count
    harmonics = np.empty((count, d_sh, 3))
    harmonics[:, 0, :] = stack(["f_dc_0", "f_dc_1", "f_dc_2"])
    if rest:
        harmonics[:, 1:, :] = stack(rest).reshape(count, 3, d_sh - 1).transpose(0, 2, 1)
    values = {
        "means": stack(["x", "y", "z"]),
        "scales": np.exp(stack(["scale_0", "scale_1", "scale_2"])),
        "rotations": stack(["rot_0", "rot_1", "rot_2", "rot_3"]),
        "harmonics": harmonics,
        "opacities": 1 / (1 + np.exp(-column("opacity"))),
    }
    tensors = {name: torch.from_numpy(value).float() for name, value in values.items()}
    for name, tensor in tensors.items():
        if not torch.isfinite(tensor).all():
            raise VideoSceneError(f"{path} holds NaN or inf in the Gaussians' {name}; the file is corrupt")
    if (tensors["rotations"].norm(dim=-1) == 0).any():
        raise VideoSceneError(f"{path} has zero-length rotation quaternions; the file is corrupt")
    return Gaussians(**tensors)


def gaussians_from_points(
    points: Float[Tensor, "gaussian 3"],
    colors: Float[Tensor, "gaussian 3"],
    opacity: float = 1.0,
    neighbours: int = 3,
    scale_factor: float = 1.0,
    clip_quantile: float = 0.95,
) -> Gaussians:
    """Small isotropic splats on a coloured point cloud (colours in [0, 1]): scale = `scale_factor` x the
    mean distance to the `neighbours` nearest points (the 3DGS initialisation), degree-0 SH. Spacings
    above their `clip_quantile` quantile are clipped: isolated far points would otherwise become
    screen-filling fog."""
    from scipy.spatial import cKDTree

    if points.ndim != 2 or points.shape[-1] != 3 or colors.shape != points.shape:
        raise VideoSceneError(
            f"points and colors must both have shape [N, 3], got {list(points.shape)} and "
            f"{list(colors.shape)}"
        )
    if len(points) <= neighbours:
        raise VideoSceneError(f"need more than {neighbours} points to size the splats, got {len(points)}")
    check_finite("points", points)
    cloud = points.detach().cpu().double().numpy()
    distances, _ = cKDTree(cloud).query(cloud, k=neighbours + 1)  # the first neighbour is the point itself
    spacing = torch.from_numpy(distances[:, 1:].mean(axis=1)).to(points)
    positive = spacing[spacing > 0]
    floor = positive.min() if len(positive) else spacing.new_tensor(1e-6)  # duplicated points
    spacing = spacing.clamp(min=floor, max=max(torch.quantile(spacing, clip_quantile), floor))
    count = len(points)
    rotations = torch.zeros(count, 4, dtype=points.dtype, device=points.device)
    rotations[:, 0] = 1
    return Gaussians(
        means=points,
        scales=(scale_factor * spacing)[:, None].expand(count, 3).contiguous(),
        rotations=rotations,
        harmonics=rgb_to_sh0(colors.to(points))[:, None, :],
        opacities=torch.full((count,), opacity, dtype=points.dtype, device=points.device),
    )
