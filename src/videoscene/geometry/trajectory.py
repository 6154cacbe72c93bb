"""Camera trajectories: paths through keyframe cameras, rotations by SO(3) slerp and translations and
intrinsics linearly, with optional cosine easing; the path through two cameras can also be continued beyond
them. torch in and out; float64 inside."""

from __future__ import annotations

import math

import numpy as np
import torch
from jaxtyping import Float
from scipy.spatial.transform import Rotation, Slerp
from torch import Tensor

from videoscene.errors import VideoSceneError
from videoscene.geometry.cameras import check_rigid

EASINGS = ("linear", "cosine")
# How far `offset_path` moves a path by default: sideways, in baselines (and half of it up).
OFF_PATH_OFFSET = 0.25


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


def two_view_path(
    extrinsics_a: Float[Tensor, "4 4"],
    extrinsics_b: Float[Tensor, "4 4"],
    intrinsics_a: Float[Tensor, "3 3"],
    intrinsics_b: Float[Tensor, "3 3"],
    times: Float[Tensor, " frame"],
    *,
    assume_rigid: bool = False,
) -> tuple[Float[Tensor, "frame 4 4"], Float[Tensor, "frame 3 3"]]:
    """Cameras at `times` on the path through a (t = 0) and b (t = 1), at any t, also outside [0, 1]: the
    rotation R_a·exp(t·log(R_aᵀR_b)) (the SO(3) geodesic, i.e. slerp between the two, and its continuation),
    the centre c_a + t·(c_b − c_a), and the intrinsics linear between the two and held at the nearer one's
    beyond them (a zoom is not continued). Frames at t = 0 and t = 1 are exactly a and b. `assume_rigid` as
    for `interpolate_keyframes`."""
    if not assume_rigid:
        check_rigid(torch.stack([extrinsics_a, extrinsics_b]), "keyframe extrinsics")
    t = times.double().numpy()
    if not np.isfinite(t).all():
        raise VideoSceneError("camera path times must be finite")
    c2w_a, c2w_b = extrinsics_a.double().numpy(), extrinsics_b.double().numpy()
    rotation_a = c2w_a[:3, :3]
    step = Rotation.from_matrix(rotation_a.T @ c2w_b[:3, :3]).as_rotvec()
    result = np.tile(np.eye(4), (len(t), 1, 1))
    result[:, :3, :3] = rotation_a @ Rotation.from_rotvec(t[:, None] * step).as_matrix()
    result[:, :3, 3] = c2w_a[:3, 3] + t[:, None] * (c2w_b[:3, 3] - c2w_a[:3, 3])
    k_a, k_b = intrinsics_a.double().numpy(), intrinsics_b.double().numpy()
    k = k_a + np.clip(t, 0, 1)[:, None, None] * (k_b - k_a)
    extrinsics = torch.from_numpy(result).to(extrinsics_a.dtype)
    intrinsics = torch.from_numpy(k).to(intrinsics_a.dtype)
    # Float round-off can move the views by ~1e-16; pin them so they are bit-exact.
    for time, view_extrinsics, view_intrinsics in (
        (0.0, extrinsics_a, intrinsics_a),
        (1.0, extrinsics_b, intrinsics_b),
    ):
        extrinsics[times == time], intrinsics[times == time] = view_extrinsics, view_intrinsics
    return extrinsics, intrinsics


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
    times[0], times[-1] = 0.0, 1.0  # exact ends, whatever the easing's round-off
    return two_view_path(
        extrinsics_a, extrinsics_b, intrinsics_a, intrinsics_b, times, assume_rigid=assume_rigid
    )


def extended_cameras(
    extrinsics_a: Float[Tensor, "4 4"],
    extrinsics_b: Float[Tensor, "4 4"],
    intrinsics_a: Float[Tensor, "3 3"],
    intrinsics_b: Float[Tensor, "3 3"],
    num_frames: int,
    extend: float = 0.5,
    *,
    assume_rigid: bool = False,
) -> tuple[Float[Tensor, "frame 4 4"], Float[Tensor, "frame 3 3"]]:
    """`num_frames` cameras evenly spaced on the path through a and b continued beyond each of them by
    `extend` times the motion from a to b (`two_view_path` at t from −extend to 1 + extend). With the default
    0.5 the path is twice as long, and for num_frames = 4m + 1 (every 8k + 1 frame count) a and b are exactly
    frames m and 3m."""
    if num_frames < 2:
        raise VideoSceneError(f"an extended path needs at least 2 frames, got {num_frames}")
    if not (math.isfinite(extend) and extend >= 0):
        raise VideoSceneError(
            f"extend must be a number from 0 (the fraction of the motion from a to b), got {extend}"
        )
    # i·step − e rather than linspace: for e = 0.5 and N = 4m + 1 this gives exactly 0 and 1 at frames m, 3m.
    times = torch.arange(num_frames, dtype=torch.float64) * ((1 + 2 * extend) / (num_frames - 1)) - extend
    return two_view_path(
        extrinsics_a, extrinsics_b, intrinsics_a, intrinsics_b, times, assume_rigid=assume_rigid
    )


def offset_path(
    extrinsics: Float[Tensor, "frame 4 4"], offset: float = OFF_PATH_OFFSET
) -> Float[Tensor, "frame 4 4"]:
    """A path beside a camera path (camera-to-world `extrinsics`): each camera moved sideways along its own
    x axis by `offset` × the baseline and up (its −y axis, OpenCV) by half that, orientations unchanged. The
    baseline is the distance between the first and last camera centres (the longest distance from the
    first, if those coincide). Views no input frame had, for fly-throughs and off-path scores."""
    centres = extrinsics[:, :3, 3]
    baseline = float((centres[-1] - centres[0]).norm())
    if baseline <= 1e-9:
        baseline = float((centres - centres[0]).norm(dim=-1).max())
    rotations = extrinsics[:, :3, :3]
    moved = extrinsics.clone()
    moved[:, :3, 3] = centres + offset * baseline * (rotations[:, :, 0] - 0.5 * rotations[:, :, 1])
    return moved


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
