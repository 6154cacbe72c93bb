"""Which pixels of one view other views see, from z-depth maps (docs/evaluation.md, "Seen and unseen pixels").

The paper works where the two input views overlap little, so the coarse render of a view between them has
holes: surfaces neither input saw, which only the video model can fill in. Scoring those pixels apart from
the rest needs to know which they are. With ground-truth z-depth for every frame (the synthetic rooms store
it), a pixel p of view a, at depth D_a(p), is the world point X = unproject(p, D_a(p)); view b *sees* X when

1. X is in front of b (z_b > 0) and projects inside b's image, 0 ≤ u ≤ W and 0 ≤ v ≤ H (pixel coordinates
   with the image's top-left corner at 0, docs/conventions.md), and
2. X is not occluded in b: z_b ≤ (1 + tolerance) · max D_b over the 2×2 pixel centres around (u, v).

Why the maximum of the four neighbours rather than the nearest pixel or a bilinear sample: on a plane 1/z is
affine in pixel coordinates, so the true depth at (u, v) lies between the smallest and largest of the four
surrounding samples; the maximum is therefore never below the surface, however steeply the plane is seen
(a floor at a grazing angle changes depth by several percent per pixel), while a nearest or bilinear sample
can be. A bilinear sample across a silhouette also invents a depth between foreground and background. The
price is a band of at most one context pixel along silhouettes where a hidden point counts as seen.
Why the test is one-sided: a point *in front of* the surface b sees would itself be the first surface along
b's ray; for consistent depth maps that only happens by sampling near silhouettes, and such points are seen.

`VISIBILITY_TOLERANCE` = 1 % covers the float16 storage of depth (relative rounding ≤ 2⁻¹¹ ≈ 0.05 %) and the
curvature of cylinders and spheres between pixel centres, while a surface 5 cm behind another at 4 m is
still occluded. Pixels without a finite positive depth (nothing hit) count as unseen in the view they belong
to; in the viewing camera such a pixel occludes nothing.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from videoscene.errors import VideoSceneError
from videoscene.geometry.epipolar import project, unproject_depth_map

VISIBILITY_TOLERANCE = 0.01  # relative depth margin of the occlusion test (module docstring)


def _check(depth: Tensor, extrinsics: Tensor, intrinsics: Tensor, what: str) -> None:
    if depth.shape[:-2] != extrinsics.shape[:-2] or depth.shape[:-2] != intrinsics.shape[:-2]:
        raise VideoSceneError(
            f"{what}: depth maps {list(depth.shape)} need one camera each, got extrinsics "
            f"{list(extrinsics.shape)} and intrinsics {list(intrinsics.shape)}"
        )


def _has_depth(depth: Tensor) -> Tensor:
    return torch.isfinite(depth) & (depth > 0)


def seen_by(
    points: Float[Tensor, "*batch point 3"],
    depth: Float[Tensor, "*batch height width"],
    extrinsics: Float[Tensor, "*batch 4 4"],
    intrinsics: Float[Tensor, "*batch 3 3"],
    tolerance: float = VISIBILITY_TOLERANCE,
) -> Bool[Tensor, "*batch point"]:
    """Whether the camera with z-depth map `depth` sees each world point (tests 1 and 2 of the module
    docstring). Batch dimensions pair each set of points with one viewing camera."""
    _check(depth, extrinsics, intrinsics, "seen_by")
    if tolerance < 0:
        raise VideoSceneError(f"the visibility tolerance must be >= 0, got {tolerance}")
    height, width = depth.shape[-2:]
    pixels, z = project(points.double(), extrinsics, intrinsics, (height, width))
    u, v = pixels.unbind(-1)
    inside = (z > 0) & (u >= 0) & (u <= width) & (v >= 0) & (v <= height)
    # The 2x2 pixel centres (j + 0.5, i + 0.5) around (u, v), clamped at the border; NaN/inf (points at the
    # camera centre or without depth) are outside already and only need a valid index.
    column = torch.nan_to_num(u - 0.5, nan=0.0, posinf=0.0, neginf=0.0).clamp(-1, width).floor().long()
    row = torch.nan_to_num(v - 0.5, nan=0.0, posinf=0.0, neginf=0.0).clamp(-1, height).floor().long()
    surface = depth.double()
    surface = torch.where(_has_depth(surface), surface, torch.inf).flatten(-2)
    farthest = torch.full_like(z, -torch.inf)
    for dr in (0, 1):
        for dc in (0, 1):
            index = (row + dr).clamp(0, height - 1) * width + (column + dc).clamp(0, width - 1)
            farthest = torch.maximum(farthest, torch.gather(surface, -1, index))
    return inside & (z <= (1 + tolerance) * farthest)


def unseen_mask(
    depth: Float[Tensor, "view height width"],
    extrinsics: Float[Tensor, "view 4 4"],
    intrinsics: Float[Tensor, "view 3 3"],
    context_depth: Float[Tensor, "context context_height context_width"],
    context_extrinsics: Float[Tensor, "context 4 4"],
    context_intrinsics: Float[Tensor, "context 3 3"],
    tolerance: float = VISIBILITY_TOLERANCE,
) -> Bool[Tensor, "view height width"]:
    """True at the pixels of each view (at their ground-truth depth) that no context view sees."""
    _check(depth, extrinsics, intrinsics, "unseen_mask (views)")
    _check(context_depth, context_extrinsics, context_intrinsics, "unseen_mask (context)")
    masks = []
    for view in range(len(depth)):  # one view at a time bounds the memory at large resolutions
        points = unproject_depth_map(depth[view].double(), extrinsics[view], intrinsics[view])
        seen = seen_by(
            points.reshape(1, -1, 3).expand(len(context_depth), -1, -1),
            context_depth,
            context_extrinsics,
            context_intrinsics,
            tolerance,
        )
        masks.append(~(seen.any(dim=0).reshape(depth.shape[1:]) & _has_depth(depth[view])))
    return torch.stack(masks) if masks else torch.zeros(depth.shape, dtype=torch.bool)


def covisible_share(
    depth: Float[Tensor, "height width"],
    extrinsics: Float[Tensor, "4 4"],
    intrinsics: Float[Tensor, "3 3"],
    other_depth: Float[Tensor, "*other other_height other_width"],
    other_extrinsics: Float[Tensor, "*other 4 4"],
    other_intrinsics: Float[Tensor, "*other 3 3"],
    tolerance: float = VISIBILITY_TOLERANCE,
) -> Float[Tensor, "*other"]:
    """The overlap of a view with each other view: the share of its pixels (at their depth) the other view
    sees. Not symmetric: a view sees most of a narrower view of the same wall, not the other way round."""
    _check(other_depth, other_extrinsics, other_intrinsics, "covisible_share")
    points = unproject_depth_map(depth.double(), extrinsics, intrinsics).reshape(-1, 3)
    batch = other_depth.shape[:-2]
    seen = seen_by(points.expand(*batch, -1, -1), other_depth, other_extrinsics, other_intrinsics, tolerance)
    return (seen & _has_depth(depth).reshape(-1)).double().mean(dim=-1)
