"""Procedural synthetic scenes: the fast paths against plain references, and pixels against cameras."""

import copy
import math

import cv2
import numpy as np
import pytest
import torch

from videoscene.data import textures as tex
from videoscene.data.synthetic import (
    Box,
    Cylinder,
    Sphere,
    SynthConfig,
    end_overlaps,
    render_scene,
    render_view,
    sample_path,
    sample_room,
    sample_scene,
    scene_rng,
)
from videoscene.errors import VideoSceneError
from videoscene.geometry.epipolar import project, unproject_depth_map


def _reference_trilinear(atlas: tex.TextureAtlas, texture: int, x: float, y: float, lod: float) -> np.ndarray:
    """One lookup written out: bilinear with wrapping at the two nearest levels, blended linearly."""

    def level_texel(level: int, row: int, column: int) -> np.ndarray:
        side = atlas.size >> level
        return atlas.texels[atlas.offsets[texture, level] + (row % side) * side + (column % side)]

    def bilinear(level: int) -> np.ndarray:
        fx, fy = x / 2**level - 0.5, y / 2**level - 0.5
        x0, y0 = math.floor(fx), math.floor(fy)
        ax, ay = fx - x0, fy - y0
        return (
            level_texel(level, y0, x0) * (1 - ax) * (1 - ay)
            + level_texel(level, y0, x0 + 1) * ax * (1 - ay)
            + level_texel(level, y0 + 1, x0) * (1 - ax) * ay
            + level_texel(level, y0 + 1, x0 + 1) * ax * ay
        )

    lod = min(max(lod, 0.0), atlas.levels - 1)
    lower = int(math.floor(lod))
    upper = min(lower + 1, atlas.levels - 1)
    return bilinear(lower) * (1 - (lod - lower)) + bilinear(upper) * (lod - lower)


def test_atlas_lookup_matches_reference():
    rng = np.random.default_rng(0)
    textures = [rng.random((16, 16, 3), dtype=np.float32) for _ in range(3)]
    atlas = tex.TextureAtlas.build(textures)
    # Level 1 texel (0, 0) is the mean of the four level-0 texels it covers.
    np.testing.assert_allclose(
        atlas.texels[atlas.offsets[1, 1]], textures[1][:2, :2].reshape(4, 3).mean(0), rtol=1e-6
    )
    count = 200
    texture = rng.integers(0, 3, count)
    x, y = rng.uniform(-40, 40, count).astype(np.float32), rng.uniform(-40, 40, count).astype(np.float32)
    lod = rng.uniform(-1, 6, count).astype(np.float32)
    fast = atlas.sample(texture, x, y, lod)
    reference = np.stack(
        [
            _reference_trilinear(atlas, int(k), float(a), float(b), float(l))
            for k, a, b, l in zip(texture, x, y, lod)
        ]
    )
    np.testing.assert_allclose(fast, reference, atol=2e-5)


def test_photo_textures_are_periodic_and_from_the_package():
    rng = np.random.default_rng(1)
    texture = tex.photo_texture(rng, "brick.png", 64, tint=(0.8, 0.5, 0.4))
    assert texture.shape == (64, 64, 3) and texture.dtype == np.float32
    # Seamless: the jump across the wrap-around is like a jump between neighbouring texels.
    inner = np.abs(np.diff(texture, axis=1)).mean()
    wrap = np.abs(texture[:, 0] - texture[:, -1]).mean()
    assert wrap < 2 * inner
    with pytest.raises(VideoSceneError, match="missing"):
        tex.load_package_photo("no_such_image.png")


def _sphere_trace(primitive, origin: np.ndarray, direction: np.ndarray) -> float:
    """Reference intersection: march along the ray by the primitive's distance field."""
    unit = direction / np.linalg.norm(direction)
    travelled = 0.0
    for _ in range(2000):
        distance = float(primitive.distance((origin + travelled * unit)[:, None].astype(np.float32))[0])
        if distance < 1e-5:
            return travelled / np.linalg.norm(direction)
        travelled += distance
        if travelled > 50:
            break
    return math.inf


@pytest.mark.parametrize(
    "primitive",
    [
        Box((1.0, 0.5, 2.0), (0.4, 0.5, 0.3), 0.0, 0),
        Box((1.0, 0.5, 2.0), (0.6, 0.2, 0.3), 0.7, 0),
        Cylinder((1.2, 2.1), 0.35, 0.1, 0.9, 0, 1.0),
        Sphere((0.8, 1.0, 2.5), 0.45, 0, 1.0),
    ],
    ids=["box", "turned_box", "cylinder", "sphere"],
)
@pytest.mark.parametrize(
    "origin", [(0.9, 1.4, -0.5), (1.0, 0.4, -0.4), (3.0, 0.5, 2.2)], ids=["above", "level", "side"]
)
def test_intersections_match_sphere_tracing(primitive, origin):
    origin = np.asarray(origin, np.float64)
    rng = np.random.default_rng(2)
    centre = np.asarray(
        primitive.center
        if hasattr(primitive, "center")
        else (primitive.center_xz[0], 0.5, primitive.center_xz[1])
    )
    directions = (centre[None, :] - origin[None, :]) + rng.normal(0, 0.4, (64, 3))
    directions[0] = 0.0
    directions[0, 1] = -1.0  # an axis-parallel ray (exact zeros in the direction)
    d = directions.T.astype(np.float32)
    fast = primitive.intersect(origin, d, 1.0 / np.where(d == 0, np.float32(1e-20), d))
    reference = np.array(
        [_sphere_trace(primitive, origin, direction) for direction in d.T.astype(np.float64)]
    )
    hits = np.isfinite(reference)
    assert hits.sum() > 10 and (~hits).sum() > 0
    np.testing.assert_array_equal(np.isfinite(fast), hits)
    np.testing.assert_allclose(fast[hits], reference[hits], rtol=1e-3, atol=1e-3)
    # Normals at the hits: unit length, facing the camera, pointing out of the primitive.
    points = (origin[:, None] + fast[hits] * d[:, hits]).astype(np.float32)
    normal, u, v = primitive.surface(points)
    np.testing.assert_allclose(np.linalg.norm(normal, axis=0), 1.0, atol=1e-5)
    assert ((normal * d[:, hits]).sum(axis=0) < 0).all()
    assert (primitive.distance(points + 0.01 * normal) > 0.005).all()
    assert np.isfinite(u).all() and np.isfinite(v).all()


def test_render_scene_is_deterministic_and_depends_on_seed():
    a = render_scene(0, 1, 3, 24, 32)
    b = render_scene(0, 1, 3, 24, 32)
    c = render_scene(1, 1, 3, 24, 32)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    frames, extrinsics, intrinsics, depth = a
    assert frames.shape == (3, 24, 32, 3) and frames.dtype == np.uint8
    assert extrinsics.shape == (3, 4, 4) and intrinsics.shape == (3, 3, 3) and depth.shape == (3, 24, 32)
    assert np.isfinite(depth).all() and depth.min() > 0.3
    np.testing.assert_allclose(
        extrinsics[:, :3, :3] @ extrinsics[:, :3, :3].transpose(0, 2, 1),
        np.broadcast_to(np.eye(3), (3, 3, 3)),
        atol=1e-5,
    )
    # Realistic horizontal field of view, square pixels, centred principal point.
    fov = 2 * np.degrees(np.arctan(0.5 / intrinsics[0, 0, 0]))
    assert 55 <= fov <= 75
    np.testing.assert_allclose(intrinsics[0, 1, 1], intrinsics[0, 0, 0] * 32 / 24, rtol=1e-6)


def test_walk_does_not_depend_on_frame_count_or_size():
    _, short, _, _ = render_scene(0, 2, 5, 16, 24)
    _, long, _, _ = render_scene(0, 2, 9, 24, 32)
    np.testing.assert_allclose(short, long[::2], atol=1e-6)


def test_bad_render_arguments():
    with pytest.raises(VideoSceneError, match="frames"):
        render_scene(0, 0, 1, 24, 32)
    with pytest.raises(VideoSceneError, match="height"):
        render_scene(0, 0, 9, -4, 32)
    with pytest.raises(VideoSceneError, match="supersample"):
        SynthConfig(supersample=0)


def _two_views(seed: int, index: int, height: int, width: int, s=(0.0, 1.0)):
    room, path = sample_scene(seed, index)
    poses = path.poses(np.asarray(s)).astype(np.float32).astype(np.float64)
    intrinsics = path.intrinsics(height, width)
    views = [render_view(room, pose, intrinsics, height, width) for pose in poses]
    return views, poses, intrinsics


def _reprojection_error(views, poses, intrinsics, height, width, target_pose):
    """Warp view 0 into the target camera with view 0's depth; compare colours where view 1's depth agrees."""
    (image0, depth0), (image1, depth1) = views
    points = unproject_depth_map(
        torch.from_numpy(depth0).double(), torch.from_numpy(poses[0]), torch.from_numpy(intrinsics)
    )
    pixels, z = project(
        points.flatten(0, 1), torch.from_numpy(target_pose), torch.from_numpy(intrinsics), (height, width)
    )
    # cv2.remap puts pixel centres at integers.
    map_x, map_y = [
        (pixels[:, axis] - 0.5).reshape(height, width).numpy().astype(np.float32) for axis in (0, 1)
    ]
    z = z.reshape(height, width).numpy()
    warped = cv2.remap(image1.astype(np.float32) / 255, map_x, map_y, cv2.INTER_LINEAR)
    warped_depth = cv2.remap(depth1, map_x, map_y, cv2.INTER_LINEAR)
    inside = (map_x > 1) & (map_x < width - 2) & (map_y > 1) & (map_y < height - 2)
    visible = inside & (np.abs(warped_depth - z) < 0.01 * z)
    error = np.abs(warped - image0.astype(np.float32) / 255).mean(axis=2)
    return float(np.median(error[visible])), float(visible.mean())


def test_depth_and_cameras_agree_with_pixels():
    """Warping frame 0 into the last frame with the stored depth and cameras reproduces the last frame
    where the surface is visible in both; a camera off by 5 cm or 1° does not."""
    height, width = 72, 96
    views, poses, intrinsics = _two_views(0, 3, height, width)
    error, visible = _reprojection_error(views, poses, intrinsics, height, width, poses[1])
    assert visible > 0.3
    assert error < 0.02
    shifted = poses[1].copy()
    shifted[:3, 3] += shifted[:3, 0] * 0.05
    turned = poses[1].copy()
    turned[:3, :3] = turned[:3, :3] @ cv2.Rodrigues(np.array([0.0, math.radians(1.0), 0.0]))[0]
    for wrong in (shifted, turned):
        assert _reprojection_error(views, poses, intrinsics, height, width, wrong)[0] > 2 * error


def test_walk_scale_stretches_the_walk_and_keeps_default_walks():
    """Same draws, twice the travel: where the scaled walk is accepted at the same attempt, its ends are
    twice as far apart (before the hand-held wobble) and it turns twice as much."""
    compared = 0
    for index in range(40):
        rng = scene_rng(7, index)
        room = sample_room(rng, 64)
        plain, scaled = (
            sample_path(copy.deepcopy(rng), room),
            sample_path(copy.deepcopy(rng), room, walk_scale=2.0),
        )
        again = sample_path(copy.deepcopy(rng), room, walk_scale=1.0)
        assert plain is not None and again is not None and np.array_equal(plain.positions, again.positions)
        if (
            scaled is None
            or not np.array_equal(scaled.positions[0], plain.positions[0])
            or plain.motion == "arc"
        ):
            continue
        compared += 1
        travel, scaled_travel = (
            plain.positions[3] - plain.positions[0],
            scaled.positions[3] - scaled.positions[0],
        )
        np.testing.assert_allclose(
            scaled_travel[[0, 2]], 2 * travel[[0, 2]], atol=1e-9
        )  # height drift is not scaled
        np.testing.assert_allclose(
            scaled.yaw[3] - scaled.yaw[0], 2 * (plain.yaw[3] - plain.yaw[0]), atol=1e-9
        )
    assert compared >= 2


def test_min_overlap_admits_lower_overlap_walks_and_keeps_default_walks():
    """Walks are accepted only when each end view sees `min_overlap` of the other's points: the default
    (0.6) holds for every default walk, and with the bar lowered to 0.1 on twice-as-long walks some accepted
    walks fall below 0.6 (the low-overlap regime), none below 0.1; the default bar reproduces the default
    walks exactly."""
    plain_overlaps, low_overlaps = [], []
    for index in range(12):
        rng = scene_rng(11, index)
        room = sample_room(rng, 64)
        plain = sample_path(copy.deepcopy(rng), room)
        again = sample_path(copy.deepcopy(rng), room, min_overlap=0.6)
        assert plain is not None and np.array_equal(plain.positions, again.positions)
        plain_overlaps.append(min(end_overlaps(room, plain)))
        low = sample_path(copy.deepcopy(rng), room, walk_scale=3.0, min_overlap=0.1)
        if low is not None:
            low_overlaps.append(min(end_overlaps(room, low)))
    assert min(plain_overlaps) >= 0.6
    assert len(low_overlaps) >= 8 and min(low_overlaps) >= 0.1
    assert sum(overlap < 0.6 for overlap in low_overlaps) >= 3


def test_min_overlap_must_be_a_share():
    with pytest.raises(VideoSceneError, match="min_overlap must be in"):
        SynthConfig(min_overlap=1.5)
