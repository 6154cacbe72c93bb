"""Where the generated frames that are compared with ground truth come from (docs/evaluation.md).

An index entry gives a context pair (frames i, j) and target frames k. Target k sits at time
τ = (k − i) / (j − i) ∈ [0, 1] along the clip. A method generates its own number of frames F along a
camera path whose first and last frames are the context cameras; frame m of the video is at time
m / (F − 1), its *slot*.

The rule: every target is given a slot of its own, and the path is built so that the camera at that slot
*is* the target's camera (the path is the piecewise slerp/linear path through the context and target
cameras as keyframes at their slot times; the other slots are interpolated). The generated frame at a
target's slot is therefore rendered for exactly the ground-truth camera and is compared pixel for pixel
with the ground-truth image. What snapping costs is pacing, not geometry: a target shown at slot m instead
of time τ moves by |m / (F − 1) − τ| in time, reported as `max_time_error` (0 whenever every τ·(F − 1) is an
integer, e.g. 17 frames for targets every frame of a gap of 8 or 16 frames).

- Targets at τ = 0 or 1 are the context frames themselves: they take slots 0 and F − 1 and are left out of
  PSNR/SSIM (every method is conditioned on them), but their frames take part in the 3D-consistency pairs.
- Interior targets get distinct interior slots 1 … F − 2, in order, by the order-preserving assignment
  that minimises the total time error (a small dynamic programme), so two targets never share a slot.
- With more interior targets than interior slots (e.g. 47 for a 17-frame model), each interior slot takes
  a target (the order-preserving choice with the least total time error) and the others are listed as
  `dropped` (use a model with more frames, or a sparser index, to evaluate them all).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from videoscene.errors import VideoSceneError
from videoscene.geometry.image_ops import crop_to_aspect_and_resize
from videoscene.geometry.trajectory import interpolate_keyframes
from videoscene.types import Cameras, Views


@dataclass(frozen=True)
class FramePlan:
    """Which generated frame (slot) stands for which target frame of the scene."""

    num_frames: int
    context: tuple[int, int]
    targets: tuple[int, ...]  # evaluated target frame indices, in path order
    slots: tuple[int, ...]  # the generated frame of each target
    times: tuple[float, ...]  # each target's own time τ = (k − i) / (j − i)
    dropped: tuple[int, ...] = ()  # targets that did not get a slot (more targets than slots)

    @property
    def held_out(self) -> tuple[bool, ...]:
        """True for targets that are not context frames: the ones PSNR/SSIM are computed on."""
        return tuple(0 < slot < self.num_frames - 1 for slot in self.slots)

    @property
    def slot_times(self) -> tuple[float, ...]:
        return tuple(slot / (self.num_frames - 1) for slot in self.slots)

    @property
    def max_time_error(self) -> float:
        """Largest |slot time − τ| over the targets, in units of the context pair's span."""
        return max((abs(s - t) for s, t in zip(self.slot_times, self.times)), default=0.0)


def _monotone_matching(small: Sequence[float], large: Sequence[float]) -> list[int]:
    """For sorted `small` (length ≤ len(large)), strictly increasing indices into sorted `large` minimising
    Σ |small[k] − large[index_k]|: order-preserving one-to-one matching, by dynamic programming."""
    count, width = len(small), len(large)
    if count == 0:
        return []
    large = np.asarray(large, dtype=np.float64)
    # cost[k, s]: best total of items 0..k with item k matched to large[s]; choice[k, s]: the match of k − 1.
    cost = np.full((count, width), np.inf)
    choice = np.zeros((count, width), dtype=int)
    cost[0] = np.abs(large - small[0])
    for k in range(1, count):
        best, best_index = np.inf, -1  # best cost of item k − 1 matched anywhere before s
        for s in range(1, width):
            if cost[k - 1, s - 1] < best:
                best, best_index = cost[k - 1, s - 1], s - 1
            cost[k, s] = best + abs(large[s] - small[k])
            choice[k, s] = best_index
    matched = [int(np.argmin(cost[-1]))]
    for k in range(count - 1, 0, -1):
        matched.append(int(choice[k, matched[-1]]))
    return matched[::-1]


def plan_frames(context: Sequence[int], targets: Sequence[int], num_frames: int) -> FramePlan:
    """Give each target frame a slot of the F-frame video (module docstring)."""
    if num_frames < 3:
        raise VideoSceneError(
            "the generated video needs at least 3 frames (two context ends and one between), got "
            f"{num_frames}"
        )
    first, last = (int(c) for c in context)
    if first == last:
        raise VideoSceneError(f"the two context frames must differ, got [{first}, {last}]")
    times = {int(k): (int(k) - first) / (last - first) for k in targets}
    outside = [k for k, tau in times.items() if not 0 <= tau <= 1]
    if outside:
        raise VideoSceneError(
            f"target frames {sorted(outside)} are not between the context frames {first} and {last}; "
            "evaluation interpolates between the context pair"
        )
    ordered = sorted(times, key=times.get)
    ends = [k for k in ordered if times[k] in (0.0, 1.0)]
    interior = [k for k in ordered if 0 < times[k] < 1]
    interior_times = [times[k] for k in interior]
    slot_times = [m / (num_frames - 1) for m in range(1, num_frames - 1)]
    if len(interior) <= len(slot_times):
        interior_slots = [1 + m for m in _monotone_matching(interior_times, slot_times)]
    else:  # more targets than slots: every slot takes a target, the best-fitting ones
        chosen = _monotone_matching(slot_times, interior_times)
        interior, interior_slots = [interior[c] for c in chosen], list(range(1, num_frames - 1))
    dropped = sorted(set(times) - set(ends) - set(interior))
    slot_of = {k: (0 if times[k] == 0 else num_frames - 1) for k in ends} | dict(
        zip(interior, interior_slots)
    )
    evaluated = sorted(slot_of, key=slot_of.get)
    return FramePlan(
        num_frames=num_frames,
        context=(first, last),
        targets=tuple(evaluated),
        slots=tuple(slot_of[k] for k in evaluated),
        times=tuple(times[k] for k in evaluated),
        dropped=tuple(dropped),
    )


def fit_views(views: Views, size: tuple[int, int]) -> Views:
    """Views at the model's resolution: centre crop to its aspect ratio, then resize (intrinsics follow)."""
    image, intrinsics = crop_to_aspect_and_resize(views.image, views.intrinsics, size)
    return Views(image, views.extrinsics, intrinsics, views.near, views.far, views.index)


def path_cameras(
    plan: FramePlan, context: Cameras, targets: Cameras
) -> tuple[Cameras, Float[Tensor, " frame"]]:
    """The F cameras of the video: the context cameras at both ends, each target's own camera at its slot,
    the slots between interpolated along the path through them. `targets` are in `plan.targets` order."""
    if len(context) != 2 or len(targets) != len(plan.targets):
        raise VideoSceneError(
            f"need 2 context cameras and {len(plan.targets)} target cameras, got {len(context)} and "
            f"{len(targets)}"
        )
    last_slot = plan.num_frames - 1
    keys = {
        0: (context.extrinsics[0], context.intrinsics[0]),
        last_slot: (context.extrinsics[1], context.intrinsics[1]),
    }
    for position, slot in enumerate(plan.slots):
        if 0 < slot < last_slot:
            keys[slot] = (targets.extrinsics[position], targets.intrinsics[position])
    key_slots = sorted(keys)
    key_extrinsics = torch.stack([keys[s][0] for s in key_slots]).double()
    key_intrinsics = torch.stack([keys[s][1] for s in key_slots]).double()
    times = torch.arange(plan.num_frames, dtype=torch.float64) / last_slot
    extrinsics, intrinsics = interpolate_keyframes(
        key_extrinsics, key_intrinsics, torch.tensor(key_slots, dtype=torch.float64) / last_slot, times
    )
    # Slerp round-off moves keyframes by ~1e-16: pin them so each target slot has exactly its camera.
    for s in key_slots:
        extrinsics[s], intrinsics[s] = keys[s][0].double(), keys[s][1].double()
    dtype = context.extrinsics.dtype
    return Cameras(extrinsics.to(dtype), intrinsics.to(dtype)), times.to(dtype)
