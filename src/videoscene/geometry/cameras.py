"""Camera conventions and conversions. Internal convention (docs/conventions.md): OpenCV axes
(x right, y down, z forward), camera-to-world 4x4 extrinsics, intrinsics normalised by image size
(fx/W, fy/H, cx/W, cy/H)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from videoscene.errors import VideoSceneError
from videoscene.geometry.rotations import matrix_to_quaternion, quaternion_to_matrix
from videoscene.image_io import image_size
from videoscene.io_utils import atomic_path, inside, read_json_object


def check_rigid(
    extrinsics: Float[Tensor, "*batch 4 4"], name: str = "extrinsics", atol: float = 1e-3
) -> None:
    """Raise one clear line unless every matrix is a finite rigid transform [R t; 0 1] with R ∈ SO(3)."""
    if extrinsics.shape[-2:] != (4, 4):
        raise VideoSceneError(f"{name} must have shape [..., 4, 4], got {list(extrinsics.shape)}")
    if not torch.isfinite(extrinsics).all():
        raise VideoSceneError(f"{name} contains NaN or inf; fix the camera file")
    m = extrinsics.double()
    rotation = m[..., :3, :3]
    identity = torch.eye(3, dtype=m.dtype)
    orthonormal = (rotation @ rotation.transpose(-1, -2) - identity).abs().amax(dim=(-1, -2)) < atol
    proper = (torch.linalg.det(rotation) - 1).abs() < atol
    bottom = (m[..., 3, :] - torch.tensor([0, 0, 0, 1], dtype=m.dtype)).abs().amax(dim=-1) < atol
    if not (orthonormal & proper & bottom).all():
        raise VideoSceneError(
            f"{name} are not rigid transforms (rotation part must be orthonormal with det +1, last row "
            "0 0 0 1); "
            "check the axis convention and units of the camera file"
        )


def cameras_from_re10k_vector(
    vector: Float[Tensor, "*batch 18"],
) -> tuple[Float[Tensor, "*batch 4 4"], Float[Tensor, "*batch 3 3"]]:
    """RealEstate10K's 18 numbers [fx fy cx cy (normalised), 0, 0, world-to-camera 3x4 row-major]
    -> (camera-to-world 4x4, normalised intrinsics)."""
    if vector.shape[-1] != 18:
        raise VideoSceneError(
            f"RealEstate10K cameras must have 18 numbers per frame, got shape {list(vector.shape)}"
        )
    if not torch.isfinite(vector).all():
        raise VideoSceneError("RealEstate10K cameras contain NaN or inf")
    vector = vector.float()
    fx, fy, cx, cy = vector[..., 0], vector[..., 1], vector[..., 2], vector[..., 3]
    intrinsics = torch.zeros(*vector.shape[:-1], 3, 3, dtype=vector.dtype)
    intrinsics[..., 0, 0], intrinsics[..., 1, 1] = fx, fy
    intrinsics[..., 0, 2], intrinsics[..., 1, 2] = cx, cy
    intrinsics[..., 2, 2] = 1
    world_to_camera = torch.zeros(*vector.shape[:-1], 4, 4, dtype=torch.float64)
    world_to_camera[..., :3, :] = vector[..., 6:].double().unflatten(-1, (3, 4))
    world_to_camera[..., 3, 3] = 1
    check_rigid(world_to_camera, "RealEstate10K world-to-camera matrices")
    return torch.linalg.inv(world_to_camera).float(), intrinsics


def cameras_to_re10k_vector(
    extrinsics: Float[Tensor, "*batch 4 4"], intrinsics: Float[Tensor, "*batch 3 3"]
) -> Float[Tensor, "*batch 18"]:
    """Inverse of `cameras_from_re10k_vector`."""
    check_rigid(extrinsics)
    world_to_camera = torch.linalg.inv(extrinsics.double()).float()
    head = torch.stack(
        [intrinsics[..., 0, 0], intrinsics[..., 1, 1], intrinsics[..., 0, 2], intrinsics[..., 1, 2]], dim=-1
    ).float()
    zeros = torch.zeros(*head.shape[:-1], 2)
    return torch.cat([head, zeros, world_to_camera[..., :3, :].flatten(-2)], dim=-1)


def normalize_intrinsics(
    pixel_intrinsics: Float[Tensor, "*batch 3 3"], width: int, height: int
) -> Float[Tensor, "*batch 3 3"]:
    scale = torch.tensor([1 / width, 1 / height, 1.0], dtype=pixel_intrinsics.dtype)
    return pixel_intrinsics * scale[:, None]


def denormalize_intrinsics(
    intrinsics: Float[Tensor, "*batch 3 3"], width: int, height: int
) -> Float[Tensor, "*batch 3 3"]:
    scale = torch.tensor([width, height, 1.0], dtype=intrinsics.dtype)
    return intrinsics * scale[:, None]


# --------------------------------------------------------------------------------------------------
# Axis conventions
# --------------------------------------------------------------------------------------------------

# OpenGL/NeRF/Blender camera axes are (x right, y up, z backward); OpenCV's are (x right, y down, z forward).
# Flipping the camera's y and z axes (right-multiplying the camera-to-world matrix) maps one onto the other.
_FLIP_YZ = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


def opengl_to_opencv(extrinsics: Float[Tensor, "*batch 4 4"]) -> Float[Tensor, "*batch 4 4"]:
    """OpenGL camera-to-world -> OpenCV camera-to-world. The flip is its own inverse, so this also maps
    OpenCV -> OpenGL (`opencv_to_opengl`)."""
    return extrinsics @ _FLIP_YZ.to(extrinsics.dtype)


opencv_to_opengl = opengl_to_opencv


def llff_to_opencv_rotation(rotation: Float[Tensor, "*batch 3 3"]) -> Float[Tensor, "*batch 3 3"]:
    """LLFF camera axes (columns of the camera-to-world rotation) are [down, right, back]; OpenCV's are
    [right, down, forward] = [col1, col0, -col2]."""
    return torch.stack([rotation[..., 1], rotation[..., 0], -rotation[..., 2]], dim=-1)


def opencv_to_llff_rotation(rotation: Float[Tensor, "*batch 3 3"]) -> Float[Tensor, "*batch 3 3"]:
    """Inverse of `llff_to_opencv_rotation`: [down, right, back] = [col1, col0, -col2] of OpenCV."""
    return torch.stack([rotation[..., 1], rotation[..., 0], -rotation[..., 2]], dim=-1)


# --------------------------------------------------------------------------------------------------
# Cameras of a real capture, as the file formats describe them
# --------------------------------------------------------------------------------------------------

DISTORTION_NAMES = ("k1", "k2", "p1", "p2")


@dataclass
class CaptureCameras:
    """Per-frame cameras of one captured scene in the internal convention, plus what file formats add.

    Pixel coordinates (for `pixel_intrinsics`) put the image's top-left corner at (0, 0), so the centre of
    pixel (row i, column j) is (j + 0.5, i + 0.5): COLMAP's and instant-ngp's convention, and the one in which
    normalised intrinsics are resolution-independent. `distortion` is OpenCV/COLMAP (k1, k2, p1, p2) acting on
    normalised image coordinates (x/z, y/z), so it does not change when images are resized.
    """

    extrinsics: Float[Tensor, "frame 4 4"]  # OpenCV camera-to-world, float64
    intrinsics: Float[Tensor, "frame 3 3"]  # normalised, float64
    image_sizes: Int[Tensor, "frame 2"]  # (height, width) in pixels that the file's intrinsics refer to
    distortion: Float[Tensor, "frame 4"]  # (k1, k2, p1, p2); all zero for a pinhole camera
    file_names: list[str] = field(
        default_factory=list
    )  # image paths as the file gives them ([] if it has none)
    bounds: Float[Tensor, "frame 2"] | None = None  # LLFF near/far scene depths

    def __post_init__(self) -> None:
        count = self.extrinsics.shape[0] if self.extrinsics.ndim == 3 else -1
        expected = {
            "extrinsics": (count, 4, 4),
            "intrinsics": (count, 3, 3),
            "image_sizes": (count, 2),
            "distortion": (count, 4),
        }
        for name, shape in expected.items():
            value = getattr(self, name)
            if count < 1 or tuple(value.shape) != shape:
                raise VideoSceneError(
                    f"camera {name} must have shape {list(shape)} for {count} frames, got {list(value.shape)}"
                )
        if self.bounds is not None and tuple(self.bounds.shape) != (count, 2):
            raise VideoSceneError(
                f"camera bounds must have shape [{count}, 2], got {list(self.bounds.shape)}"
            )
        if self.file_names and len(self.file_names) != count:
            raise VideoSceneError(
                f"{len(self.file_names)} image names for {count} cameras; the camera file is inconsistent"
            )
        for name in ("intrinsics", "distortion", "bounds"):
            value = getattr(self, name)
            if value is not None and not torch.isfinite(value).all():
                raise VideoSceneError(f"camera {name} contain NaN or inf; fix the camera file")
        check_rigid(self.extrinsics, "camera-to-world matrices")
        if (self.image_sizes <= 0).any():
            raise VideoSceneError("image sizes in the camera file must be positive")
        if (self.intrinsics[:, 0, 0] <= 0).any() or (self.intrinsics[:, 1, 1] <= 0).any():
            raise VideoSceneError("focal lengths in the camera file must be positive")

    def __len__(self) -> int:
        return self.extrinsics.shape[0]

    @property
    def pixel_intrinsics(self) -> Float[Tensor, "frame 3 3"]:
        return _scale_intrinsics(self.intrinsics, self.image_sizes, inverse=False)

    @property
    def is_pinhole(self) -> bool:
        return bool((self.distortion == 0).all())


def _scale_intrinsics(intrinsics: Tensor, image_sizes: Tensor, inverse: bool) -> Tensor:
    """Per-frame (de)normalisation: rows 0 and 1 of K scale by W and H."""
    height, width = image_sizes.to(intrinsics.dtype).unbind(-1)
    scale = torch.stack([width, height, torch.ones_like(width)], dim=-1)
    return intrinsics / scale[..., :, None] if inverse else intrinsics * scale[..., :, None]


def _pinhole(fx, fy, cx, cy, dtype=torch.float64) -> Tensor:
    """Stack per-frame pixel focal lengths and principal points into [N, 3, 3] matrices."""
    fx, fy, cx, cy = (torch.as_tensor(v, dtype=dtype) for v in (fx, fy, cx, cy))
    matrices = torch.zeros(*fx.shape, 3, 3, dtype=dtype)
    matrices[..., 0, 0], matrices[..., 1, 1], matrices[..., 0, 2], matrices[..., 1, 2] = fx, fy, cx, cy
    matrices[..., 2, 2] = 1
    return matrices


def _as_float64(value, what: str) -> Tensor:
    try:
        tensor = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError):
        raise VideoSceneError(f"{what} must be numbers, got {str(value)[:60]}") from None
    if not torch.isfinite(tensor).all():
        raise VideoSceneError(f"{what} contains NaN or inf; fix the camera file")
    return tensor


def _read_json(path: Path) -> dict:
    return read_json_object(path, "camera file", holds="a JSON object with a 'frames' list")


# --------------------------------------------------------------------------------------------------
# NeRF / instant-ngp transforms.json
# --------------------------------------------------------------------------------------------------

IMAGE_SUFFIXES = ("", ".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")


def resolve_image_path(root: Path, file_path: str) -> Path:
    """A transforms.json `file_path` relative to `root`; NeRF-synthetic omits the '.png' extension."""
    base = inside(root, file_path, "image path")
    for suffix in IMAGE_SUFFIXES:
        candidate = base.with_name(base.name + suffix)
        if candidate.is_file():
            return candidate
    raise VideoSceneError(f"image {file_path!r} listed in the camera file is missing under {root}")


def _transforms_frame_lens(path: Path, values: dict) -> tuple[list[float], list[int], list[float]]:
    """One frame's ([fl_x, fl_y, cx, cy], [height, width], [k1, k2, p1, p2]) from its keys merged over the
    top-level ones."""
    try:
        return _frame_lens_values(path, values)
    except (TypeError, ValueError):
        raise VideoSceneError(
            f"{path}: frame {values.get('file_path')!r} has a lens value that is not a number (w, h, "
            "fl_x, fl_y, cx, cy, "
            "camera_angle_x/y, k1 k2 p1 p2)"
        ) from None


def _frame_lens_values(path: Path, values: dict) -> tuple[list[float], list[int], list[float]]:
    if values.get("w") is not None and values.get("h") is not None:
        width, height = int(values["w"]), int(values["h"])
    else:
        height, width = image_size(resolve_image_path(path.parent, str(values["file_path"])))
    if values.get("fl_x") is not None:
        fl_x = float(values["fl_x"])
    elif values.get("camera_angle_x") is not None:
        fl_x = 0.5 * width / math.tan(0.5 * _field_of_view(path, values, "camera_angle_x"))
    else:
        raise VideoSceneError(f"{path}: frame {values['file_path']} has neither 'fl_x' nor 'camera_angle_x'")
    if values.get("fl_y") is not None:
        fl_y = float(values["fl_y"])
    elif values.get("camera_angle_y") is not None:
        fl_y = 0.5 * height / math.tan(0.5 * _field_of_view(path, values, "camera_angle_y"))
    else:
        fl_y = fl_x  # square pixels
    cx, cy = float(values.get("cx", width / 2)), float(values.get("cy", height / 2))
    if any(float(values.get(key, 0.0)) != 0 for key in ("k3", "k4")):
        raise VideoSceneError(f"{path}: distortion terms k3/k4 are not supported; only k1 k2 p1 p2")
    if not (fl_x > 0 and fl_y > 0 and math.isfinite(fl_x * fl_y * cx * cy)):
        raise VideoSceneError(
            f"{path}: frame {values['file_path']} needs positive, finite focal lengths (fl_x={fl_x}, "
            f"fl_y={fl_y})"
        )
    return [fl_x, fl_y, cx, cy], [height, width], [float(values.get(key, 0.0)) for key in DISTORTION_NAMES]


def _field_of_view(path: Path, values: dict, key: str) -> float:
    """A field of view in radians, which must lie strictly between 0 and π for a pinhole camera."""
    angle = float(values[key])
    if not 0 < angle < math.pi:
        raise VideoSceneError(
            f"{path}: {key} = {values[key]} is not a field of view in radians (0 < angle < π)"
        )
    return angle


def read_transforms_json(path: str | Path) -> CaptureCameras:
    """Read a NeRF (Blender) or instant-ngp `transforms.json`.

    Camera-to-world `transform_matrix` per frame in OpenGL axes. Intrinsics come from `fl_x/fl_y/cx/cy/w/h`
    when present, else from `camera_angle_x` (and `camera_angle_y`) with a centred principal point; missing
    `w/h` are read from the image files. Lens distortion `k1 k2 p1 p2` (instant-ngp). Every key may be given
    at the top level or per frame (per frame wins), as instant-ngp allows.
    """
    path = Path(path)
    meta = _read_json(path)
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise VideoSceneError(f"{path} has no 'frames' list; is it a NeRF/instant-ngp transforms.json?")
    if meta.get("is_fisheye") or any(frame.get("is_fisheye") for frame in frames if isinstance(frame, dict)):
        raise VideoSceneError(
            f"{path} describes fisheye cameras, which are not supported; undistort them to pinhole first"
        )
    extrinsics, pixel_intrinsics, sizes, distortions, names = [], [], [], [], []
    for number, frame in enumerate(frames):
        if not isinstance(frame, dict) or "transform_matrix" not in frame or "file_path" not in frame:
            raise VideoSceneError(f"{path}: frame {number} needs 'file_path' and 'transform_matrix'")
        matrix = _as_float64(frame["transform_matrix"], f"{path}: frame {number} transform_matrix")
        if matrix.shape == (3, 4):
            matrix = torch.cat([matrix, torch.tensor([[0, 0, 0, 1.0]], dtype=torch.float64)])
        if matrix.shape != (4, 4):
            raise VideoSceneError(
                f"{path}: frame {number} transform_matrix must be 4x4, got {list(matrix.shape)}"
            )
        try:
            intrinsics, size, distortion = _transforms_frame_lens(path, {**meta, **frame})
        except (TypeError, ValueError):
            raise VideoSceneError(
                f"{path}: frame {number} has a non-numeric intrinsic or distortion value"
            ) from None
        extrinsics.append(matrix)
        pixel_intrinsics.append(intrinsics)
        sizes.append(size)
        distortions.append(distortion)
        names.append(str(frame["file_path"]))
    fx, fy, cx, cy = _as_float64(pixel_intrinsics, f"{path}: intrinsics").unbind(-1)
    image_sizes = torch.tensor(sizes, dtype=torch.int64)
    return CaptureCameras(
        extrinsics=opengl_to_opencv(torch.stack(extrinsics)),
        intrinsics=_scale_intrinsics(_pinhole(fx, fy, cx, cy), image_sizes, inverse=True),
        image_sizes=image_sizes,
        distortion=_as_float64(distortions, f"{path}: distortion"),
        file_names=names,
    )


def write_transforms_json(path: str | Path, cameras: CaptureCameras, style: str = "nerf") -> None:
    """Write `cameras` as a NeRF (`style="nerf"`: no distortion) or instant-ngp (`style="instant-ngp"`:
    with k1 k2 p1 p2) transforms.json. Intrinsics shared by every frame go to the top level, else per
    frame."""
    if style not in ("nerf", "instant-ngp"):
        raise VideoSceneError(f"unknown transforms.json style {style!r}; use nerf or instant-ngp")
    if style == "nerf" and not cameras.is_pinhole:
        raise VideoSceneError(
            "NeRF transforms.json has no lens distortion; undistort the images or use style instant-ngp"
        )
    if len(cameras.file_names) != len(cameras):
        raise VideoSceneError("writing transforms.json needs one image file name per camera")
    pixel = cameras.pixel_intrinsics
    per_frame = []
    for k, size, distortion in zip(pixel.tolist(), cameras.image_sizes.tolist(), cameras.distortion.tolist()):
        (fl_x, _, cx), (_, fl_y, cy), _ = k
        height, width = size
        values = {
            "camera_angle_x": 2 * math.atan(0.5 * width / fl_x),
            "camera_angle_y": 2 * math.atan(0.5 * height / fl_y),
            "fl_x": fl_x,
            "fl_y": fl_y,
            "cx": cx,
            "cy": cy,
            "w": width,
            "h": height,
        }
        if style == "instant-ngp":
            values.update(zip(DISTORTION_NAMES, distortion))
        per_frame.append(values)
    shared = per_frame[0] if all(values == per_frame[0] for values in per_frame) else {}
    opengl = opencv_to_opengl(cameras.extrinsics.double())
    frames = [
        {"file_path": name, "transform_matrix": matrix.tolist(), **({} if shared else values)}
        for name, matrix, values in zip(cameras.file_names, opengl, per_frame)
    ]
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({**shared, "frames": frames}, indent=2) + "\n")


# --------------------------------------------------------------------------------------------------
# LLFF poses_bounds.npy
# --------------------------------------------------------------------------------------------------


def read_llff_poses_bounds(path: str | Path, file_names: list[str] | None = None) -> CaptureCameras:
    """Read LLFF `poses_bounds.npy`: N x 17 = a 3x5 matrix [R | t | (H, W, focal)] row-major with R's columns
    in [down, right, back] axes, then near and far depth bounds. Principal point centred, square pixels.
    The file lists no images: LLFF pairs poses with the sorted image names, pass them as `file_names`."""
    path = Path(path)
    if not path.is_file():
        raise VideoSceneError(f"camera file {path} does not exist")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise VideoSceneError(f"{path} is not a readable .npy file ({str(error)[:80]})") from None
    if array.ndim != 2 or array.shape[1] != 17 or array.shape[0] == 0:
        raise VideoSceneError(
            f"{path} must hold an N x 17 array (LLFF poses_bounds), got shape {list(array.shape)}"
        )
    data = _as_float64(array, str(path))
    poses = data[:, :15].reshape(-1, 3, 5)
    height, width, focal = poses[:, :, 4].unbind(-1)
    extrinsics = torch.eye(4, dtype=torch.float64).repeat(len(data), 1, 1)
    extrinsics[:, :3, :3] = llff_to_opencv_rotation(poses[:, :, :3])
    extrinsics[:, :3, 3] = poses[:, :, 3]
    image_sizes = torch.stack([height, width], dim=-1).round().to(torch.int64)
    pixel = _pinhole(focal, focal, width / 2, height / 2)
    return CaptureCameras(
        extrinsics=extrinsics,
        intrinsics=_scale_intrinsics(pixel, image_sizes, inverse=True),
        image_sizes=image_sizes,
        distortion=torch.zeros(len(data), 4, dtype=torch.float64),
        file_names=list(file_names or []),
        bounds=data[:, 15:17],
    )


def write_llff_poses_bounds(path: str | Path, cameras: CaptureCameras) -> None:
    """Write LLFF `poses_bounds.npy`. LLFF can only describe centred, square-pixel, undistorted cameras
    and needs near/far bounds."""
    if cameras.bounds is None:
        raise VideoSceneError("LLFF poses_bounds.npy needs near/far bounds per camera; set `bounds`")
    if not cameras.is_pinhole:
        raise VideoSceneError("LLFF has no lens distortion; undistort the images first")
    pixel = cameras.pixel_intrinsics
    height, width = cameras.image_sizes.double().unbind(-1)
    focal = pixel[:, 0, 0]
    centred = torch.allclose(pixel[:, 0, 2], width / 2, atol=1e-6) and torch.allclose(
        pixel[:, 1, 2], height / 2, atol=1e-6
    )
    if not centred or not torch.allclose(pixel[:, 1, 1], focal, rtol=1e-9):
        raise VideoSceneError(
            "LLFF can only store centred principal points and fx == fy; use COLMAP or instant-ngp"
        )
    poses = torch.cat(
        [
            opencv_to_llff_rotation(cameras.extrinsics[:, :3, :3].double()),
            cameras.extrinsics[:, :3, 3:].double(),
            torch.stack([height, width, focal], dim=-1)[..., None],
        ],
        dim=-1,
    )
    array = torch.cat([poses.flatten(1), cameras.bounds.double()], dim=-1).numpy()
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


# --------------------------------------------------------------------------------------------------
# COLMAP text models: cameras.txt + images.txt
# --------------------------------------------------------------------------------------------------

# Parameter order per model; all map onto pinhole (fx, fy, cx, cy) + OpenCV (k1, k2, p1, p2).
COLMAP_MODELS = {
    "SIMPLE_PINHOLE": ("f", "cx", "cy"),
    "PINHOLE": ("fx", "fy", "cx", "cy"),
    "SIMPLE_RADIAL": ("f", "cx", "cy", "k1"),
    "RADIAL": ("f", "cx", "cy", "k1", "k2"),
    "OPENCV": ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2"),
}


def _colmap_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise VideoSceneError(
            f"COLMAP file {path} does not exist; export the model as text (colmap model_converter "
            "--output_type TXT)"
        )
    return [line.rstrip("\n") for line in path.read_text().splitlines() if not line.startswith("#")]


def _read_colmap_cameras(path: Path) -> dict[int, tuple[tuple[int, int], list[float], list[float]]]:
    """cameras.txt -> {camera_id: ((height, width), [fx, fy, cx, cy], [k1, k2, p1, p2])}."""
    cameras = {}
    for line in _colmap_lines(path):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) < 4:
            raise VideoSceneError(f"{path}: malformed camera line {line[:60]!r}")
        camera_id, model, width, height = int(tokens[0]), tokens[1], int(tokens[2]), int(tokens[3])
        if model not in COLMAP_MODELS:
            raise VideoSceneError(
                f"{path}: COLMAP camera model {model} is not supported ({', '.join(COLMAP_MODELS)}); "
                "run colmap image_undistorter to get PINHOLE cameras"
            )
        names = COLMAP_MODELS[model]
        if len(tokens) - 4 != len(names):
            raise VideoSceneError(
                f"{path}: camera {camera_id} ({model}) needs {len(names)} parameters, got {len(tokens) - 4}"
            )
        params = dict(
            zip(names, _as_float64([float(t) for t in tokens[4:]], f"{path}: camera {camera_id}").tolist())
        )
        fx = params.get("fx", params.get("f"))
        fy = params.get("fy", params.get("f"))
        cameras[camera_id] = (
            (height, width),
            [fx, fy, params["cx"], params["cy"]],
            [params.get(n, 0.0) for n in DISTORTION_NAMES],
        )
    return cameras


def read_colmap_text(folder: str | Path) -> CaptureCameras:
    """Read COLMAP `cameras.txt` + `images.txt` from `folder`. images.txt gives per image the world-to-camera
    rotation as a quaternion (QW QX QY QZ) and translation, in OpenCV axes. Frames come sorted by image
    name."""
    folder = Path(folder)
    cameras = _read_colmap_cameras(folder / "cameras.txt")
    images_path = folder / "images.txt"
    lines = _colmap_lines(images_path)
    entries = []
    position = 0
    while position < len(lines):
        tokens = lines[position].split()
        position += 1
        if not tokens:
            continue
        if len(tokens) < 10:
            raise VideoSceneError(f"{images_path}: malformed image line {lines[position - 1][:60]!r}")
        # Each image line is followed by its 2D-points line (x y point_id triples, possibly empty).
        if position < len(lines) and len(lines[position].split()) % 3 == 0:
            position += 1
        camera_id, name = int(tokens[8]), " ".join(tokens[9:])
        if camera_id not in cameras:
            raise VideoSceneError(
                f"{images_path}: image {name} uses camera {camera_id}, which cameras.txt lacks"
            )
        pose = _as_float64([float(t) for t in tokens[1:8]], f"{images_path}: pose of {name}")
        entries.append((name, pose, cameras[camera_id]))
    if not entries:
        raise VideoSceneError(f"{images_path} lists no images")
    entries.sort(key=lambda entry: entry[0])
    poses = torch.stack([pose for _, pose, _ in entries])
    world_to_camera = torch.eye(4, dtype=torch.float64).repeat(len(entries), 1, 1)
    world_to_camera[:, :3, :3] = quaternion_to_matrix(poses[:, :4])
    world_to_camera[:, :3, 3] = poses[:, 4:]
    image_sizes = torch.tensor([camera[0] for _, _, camera in entries], dtype=torch.int64)
    fx, fy, cx, cy = torch.tensor([camera[1] for _, _, camera in entries], dtype=torch.float64).unbind(-1)
    return CaptureCameras(
        extrinsics=torch.linalg.inv(world_to_camera),
        intrinsics=_scale_intrinsics(_pinhole(fx, fy, cx, cy), image_sizes, inverse=True),
        image_sizes=image_sizes,
        distortion=torch.tensor([camera[2] for _, _, camera in entries], dtype=torch.float64),
        file_names=[name for name, _, _ in entries],
    )


def _colmap_model(fx: float, fy: float, distortion: list[float]) -> tuple[str, list[float]]:
    """The simplest COLMAP model that stores a camera exactly, and its distortion parameters."""
    k1, k2, p1, p2 = distortion
    if fx == fy and p1 == 0 and p2 == 0:
        if k1 == 0 and k2 == 0:
            return "SIMPLE_PINHOLE", []
        return ("SIMPLE_RADIAL", [k1]) if k2 == 0 else ("RADIAL", [k1, k2])
    if distortion == [0.0, 0.0, 0.0, 0.0]:
        return "PINHOLE", []
    return "OPENCV", distortion


def write_colmap_text(folder: str | Path, cameras: CaptureCameras) -> None:
    """Write `cameras.txt` and `images.txt` (with empty 2D-point lines) into `folder`; identical cameras share
    one COLMAP camera, stored with the simplest model that holds it exactly."""
    if len(cameras.file_names) != len(cameras):
        raise VideoSceneError("writing COLMAP images.txt needs one image file name per camera")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    camera_ids: dict[tuple, int] = {}
    camera_lines, image_lines = [], []
    world_to_camera = torch.linalg.inv(cameras.extrinsics.double())
    quaternions = matrix_to_quaternion(world_to_camera[:, :3, :3])
    pixel = cameras.pixel_intrinsics
    for index, name in enumerate(cameras.file_names):
        height, width = cameras.image_sizes[index].tolist()
        fx, fy, cx, cy = (
            pixel[index, 0, 0].item(),
            pixel[index, 1, 1].item(),
            pixel[index, 0, 2].item(),
            pixel[index, 1, 2].item(),
        )
        model, distortion = _colmap_model(fx, fy, cameras.distortion[index].tolist())
        focal = [fx] if model.startswith(("SIMPLE", "RADIAL")) else [fx, fy]
        params = (model, width, height, *focal, cx, cy, *distortion)
        if params not in camera_ids:
            camera_ids[params] = len(camera_ids) + 1
            camera_lines.append(" ".join(str(value) for value in (camera_ids[params], *params)))
        pose = [*quaternions[index].tolist(), *world_to_camera[index, :3, 3].tolist()]
        image_lines += [
            " ".join(str(value) for value in (index + 1, *map(repr, pose), camera_ids[params], name)),
            "",
        ]
    header = "# written by videoscene\n"
    with atomic_path(folder / "cameras.txt") as tmp:
        tmp.write_text(header + "\n".join(camera_lines) + "\n")
    with atomic_path(folder / "images.txt") as tmp:
        tmp.write_text(header + "\n".join(image_lines) + "\n")
