"""Seen and unseen pixels from depth, on a hand-made scene whose answer is known: a wall 4 m in front of the
cameras and a 1 m square 2 m in front of them, seen by a context camera at the origin and by a target camera
1 m to its right (both looking along +z, 90° horizontal field of view, 64x48 pixels)."""

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation

from videoscene.geometry.visibility import covisible_share, seen_by, unseen_mask

HEIGHT, WIDTH = 48, 64
FOCAL = 32.0  # pixels: x/z spans [-1, 1] across the image, y/z [-0.75, 0.75]
INTRINSICS = torch.tensor([[FOCAL / WIDTH, 0, 0.5], [0, FOCAL / HEIGHT, 0.5], [0, 0, 1]], dtype=torch.float64)
WALL, OCCLUDER, HALF = 4.0, 2.0, 0.5  # the square spans x, y in [-0.5, 0.5] at z = 2


def camera(x: float) -> torch.Tensor:
    extrinsics = torch.eye(4, dtype=torch.float64)
    extrinsics[0, 3] = x
    return extrinsics


def depth_map(x: float) -> torch.Tensor:
    """Ray-cast z-depth of the scene for the camera at (x, 0, 0) looking along +z."""
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH] + 0.5
    ray_x, ray_y = (u - WIDTH / 2) / FOCAL, (v - HEIGHT / 2) / FOCAL
    hits = (np.abs(x + OCCLUDER * ray_x) <= HALF) & (np.abs(OCCLUDER * ray_y) <= HALF)
    return torch.from_numpy(np.where(hits, OCCLUDER, WALL))


def expected_unseen() -> np.ndarray:
    """Worked out by hand. The context camera's shadow of the square covers the wall at x in [-1, 1]; the
    target camera sees the wall at x in [0, 1] beside the square (its own shadow is [-2, 0]): target columns
    u = 8 (x_wall - 1) + 32 in [24, 32), rows v = 8 y + 24 in [16, 32). And the target sees the wall up to
    x = 5 where the context sees up to x = 4: columns [56, 64), all rows."""
    unseen = np.zeros((HEIGHT, WIDTH), dtype=bool)
    unseen[16:32, 24:32] = True
    unseen[:, 56:] = True
    return unseen


def test_unseen_pixels_of_a_plane_behind_an_occluder_and_beyond_the_field_of_view():
    mask = unseen_mask(
        depth_map(1.0)[None],
        camera(1.0)[None],
        INTRINSICS[None],
        depth_map(0.0)[None],
        camera(0.0)[None],
        INTRINSICS[None],
    )[0].numpy()
    expected = expected_unseen()
    # The occlusion test takes the farthest of the 2x2 context pixels around a projection, so a band of at
    # most one pixel along the occluder's silhouette may count as seen; everywhere else the answer is exact.
    boundary = binary_dilation(expected) & binary_dilation(~expected)
    np.testing.assert_array_equal(mask[~boundary], expected[~boundary])
    assert (mask & ~expected).sum() == 0  # nothing is called unseen that a context view sees
    assert mask[:, 56:].all()  # the field-of-view strip is exact
    assert mask.sum() >= expected.sum() - (16 + 8 - 1)  # at most one column and one row of the 16x8 patch


def test_every_pixel_is_seen_by_its_own_view_and_a_second_context_fills_the_hole():
    depth, extrinsics = depth_map(1.0)[None], camera(1.0)[None]
    assert not unseen_mask(depth, extrinsics, INTRINSICS[None], depth, extrinsics, INTRINSICS[None]).any()
    # A second context camera 2 m to the right sees the wall behind the square and beyond x = 4.
    both = unseen_mask(
        depth,
        extrinsics,
        INTRINSICS[None],
        torch.stack([depth_map(0.0), depth_map(2.0)]),
        torch.stack([camera(0.0), camera(2.0)]),
        INTRINSICS.expand(2, 3, 3),
    )
    assert not both.any()


def test_covisible_share_known_values():
    # Everything the context camera sees, the camera itself sees; a camera turned around sees none of it.
    behind = camera(0.0) @ torch.diag(torch.tensor([-1.0, 1.0, -1.0, 1.0], dtype=torch.float64))
    shares = covisible_share(
        depth_map(0.0),
        camera(0.0),
        INTRINSICS,
        torch.stack([depth_map(0.0), depth_map(0.0)]),
        torch.stack([camera(0.0), behind]),
        INTRINSICS.expand(2, 3, 3),
    )
    assert shares.tolist() == [1.0, 0.0]
    # The context's share seen by the target: its wall left of x = -3 (columns [0, 8)) leaves the target's
    # field of view, and its wall at x in [-2, -1] beside the square (columns [16, 24), rows [16, 32)) is
    # hidden from the target by the square; the target's share seen by the context misses the strip and the
    # hidden patch of the test above. Up to a one-pixel band along silhouettes.
    context_in_target = covisible_share(
        depth_map(0.0), camera(0.0), INTRINSICS, depth_map(1.0), camera(1.0), INTRINSICS
    )
    assert context_in_target.item() == pytest.approx(
        1 - 8 / WIDTH - 8 * 16 / (HEIGHT * WIDTH), abs=24 / (HEIGHT * WIDTH)
    )
    target_in_context = covisible_share(
        depth_map(1.0), camera(1.0), INTRINSICS, depth_map(0.0), camera(0.0), INTRINSICS
    )
    assert target_in_context.item() == pytest.approx(1 - expected_unseen().mean(), abs=24 / (HEIGHT * WIDTH))


def test_tolerance_and_missing_depth():
    # A point 0.5 % behind the wall, right of the square: seen within the default 1 %, occluded without.
    point = torch.tensor([[1.6, 0.2, WALL * 1.005]], dtype=torch.float64)
    assert seen_by(point, depth_map(0.0), camera(0.0), INTRINSICS).item()
    assert not seen_by(point, depth_map(0.0), camera(0.0), INTRINSICS, tolerance=0.0).item()
    # Pixels without depth are unseen; context pixels without depth hide nothing.
    depth = depth_map(1.0)
    depth[0, 0], depth[1, 1] = torch.inf, torch.nan
    mask = unseen_mask(
        depth[None],
        camera(1.0)[None],
        INTRINSICS[None],
        depth_map(1.0)[None],
        camera(1.0)[None],
        INTRINSICS[None],
    )
    assert mask[0, 0, 0] and mask[0, 1, 1] and mask.sum() == 2
    empty = torch.full((HEIGHT, WIDTH), torch.inf, dtype=torch.float64)
    assert seen_by(point, empty, camera(0.0), INTRINSICS).item()
