"""Camera trajectories: paths through keyframe cameras, rotations by SO(3) slerp and translations and
intrinsics linearly, with optional cosine easing. torch in and out; float64 inside."""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float
from scipy.spatial.transform import Rotation, Slerp
from torch import Tensor

from videoscene.errors import VideoSceneError
from videoscene.geometry.cameras import check_rigid

EASINGS = ("linear", "cosine")


def ease(times: Float[Tensor, " frame"], easing: str) -> Float[Tensor, " frame"]:
    """Map times in [0, 1] to [0, 1]. "cosine" starts and stops smoothly: t' = (1 − cos(πt)) / 2
    (the easing of the pixelSplat/MVSplat interpolation videos)."""
    if easing == "linear":
        return times
    if easing == "cosine":
        return (1 - torch.cos(torch.pi * times)) / 2
    raise VideoSceneError(f"unknown easing {easing!r}; use one of {', '.join(EASINGS)}")


def interpolate_keyframes(
    extrinsics: Float[Tensor, "key 4 4"],
    intrinsics: Float[Tensor, "key 3 3"],
    key_times: Float[Tensor, " key"],
    times: Float[Tensor, " frame"],
    *,
    assume_rigid: bool = False,
) -> tuple[Float[Tensor, "frame 4 4"], Float[Tensor, "frame 3 3"]]:
    """Cameras at `times` on the piecewise path through keyframe cameras at increasing `key_times`:
    between consecutive keyframes the rotation follows the SO(3) geodesic (slerp) and the camera centre and
    intrinsics move linearly. Query times are clamped to [key_times[0], key_times[-1]]. `assume_rigid`: the
    caller has already checked that the keyframe extrinsics are rigid (`check_rigid`)."""
    count = extrinsics.shape[0]
    if extrinsics.shape != (count, 4, 4) or intrinsics.shape != (count, 3, 3) or key_times.shape != (count,):
        raise VideoSceneError(
            "keyframes need extrinsics [K, 4, 4], intrinsics [K, 3, 3] and times [K]; got "
            f"{list(extrinsics.shape)}, "
            f"{list(intrinsics.shape)}, {list(key_times.shape)}"
        )
    if count < 2:
        raise VideoSceneError("a camera path needs at least two keyframe cameras")
    if not assume_rigid:
        check_rigid(extrinsics, "keyframe extrinsics")
    key_t = key_times.double().numpy()
    if not np.isfinite(key_t).all() or not (np.diff(key_t) > 0).all():
        raise VideoSceneError("keyframe times must be finite and strictly increasing")
    query = np.clip(times.double().numpy(), key_t[0], key_t[-1])
    c2w = extrinsics.double().numpy()
    rotations = Slerp(key_t, Rotation.from_matrix(c2w[:, :3, :3]))(query).as_matrix()
    # Piecewise-linear camera centres and intrinsics, one np.interp per matrix entry.
    centers = np.stack([np.interp(query, key_t, c2w[:, i, 3]) for i in range(3)], axis=-1)
    k = intrinsics.double().flatten(1).numpy()
    interpolated_k = np.stack([np.interp(query, key_t, k[:, i]) for i in range(9)], axis=-1).reshape(-1, 3, 3)
    result = np.tile(np.eye(4), (len(query), 1, 1))
    result[:, :3, :3], result[:, :3, 3] = rotations, centers
    return (
        torch.from_numpy(result).to(extrinsics.dtype),
        torch.from_numpy(interpolated_k).to(intrinsics.dtype),
    )


def interpolate_cameras(
    extrinsics_a: Float[Tensor, "4 4"],
    extrinsics_b: Float[Tensor, "4 4"],
    intrinsics_a: Float[Tensor, "3 3"],
    intrinsics_b: Float[Tensor, "3 3"],
    num_frames: int,
    easing: str = "linear",
    *,
    assume_rigid: bool = False,
) -> tuple[Float[Tensor, "frame 4 4"], Float[Tensor, "frame 3 3"]]:
    """`num_frames` cameras from a to b, both ends included (frame 0 is exactly a, the last exactly b).
    `assume_rigid` as for `interpolate_keyframes`."""
    if num_frames < 2:
        raise VideoSceneError(f"an interpolated path needs at least 2 frames, got {num_frames}")
    times = ease(torch.linspace(0, 1, num_frames, dtype=torch.float64), easing)
    extrinsics, intrinsics = interpolate_keyframes(
        torch.stack([extrinsics_a, extrinsics_b]),
        torch.stack([intrinsics_a, intrinsics_b]),
        torch.tensor([0.0, 1.0], dtype=torch.float64),
        times,
        assume_rigid=assume_rigid,
    )
    # Slerp/float round-off can move the ends by ~1e-16; pin them so endpoints are bit-exact.
    extrinsics[0], extrinsics[-1] = extrinsics_a, extrinsics_b
    intrinsics[0], intrinsics[-1] = intrinsics_a, intrinsics_b
    return extrinsics, intrinsics


def camera_path(
    extrinsics: Float[Tensor, "key 4 4"],
    intrinsics: Float[Tensor, "key 3 3"],
    key_times: Float[Tensor, " key"],
    num_frames: int,
    easing: str = "linear",
) -> tuple[Float[Tensor, "frame 4 4"], Float[Tensor, "frame 3 3"], Float[Tensor, " frame"]]:
    """`num_frames` cameras spread evenly in time (eased) from the first to the last given camera, along the
    path through all of them — e.g. the two context cameras and the targets between them at their frame
    indices, resampled to the video model's frame count. Also returns the time of each output frame."""
    if num_frames < 2:
        raise VideoSceneError(f"a camera path needs at least 2 frames, got {num_frames}")
    start, end = key_times[0].double(), key_times[-1].double()
    times = start + (end - start) * ease(torch.linspace(0, 1, num_frames, dtype=torch.float64), easing)
    path_extrinsics, path_intrinsics = interpolate_keyframes(extrinsics, intrinsics, key_times, times)
    return path_extrinsics, path_intrinsics, times
