"""Procedural indoor scenes rendered by exact pinhole ray casting: our stand-in for RealEstate10K.

A scene is a box room (x across, y up, z along; metres; the floor is y = 0) with a different texture on
each wall, the floor and the ceiling, furniture made of boxes (optionally turned about the vertical),
vertical cylinders and spheres, framed pictures, doors, windows, a rug and ceiling lights. Shading is
Lambertian from a few point lights plus ambient, darkened near room corners and near furniture (a
distance-field ambient-occlusion term), so it depends only on the surface point, never on the
viewpoint: every frame of a clip sees the same scene.

Cameras follow the project convention (docs/conventions.md): OpenCV axes (x right, y down, z forward),
camera-to-world extrinsics, intrinsics normalised by image size, pixel (row i, column j) centred at
(j + 0.5, i + 0.5). A pixel's depth is the z-depth of the ray through its centre, and so is its colour,
except at geometric or material edges where the colour is the mean of supersample x supersample rays
on a regular grid inside the pixel (edge anti-aliasing at a fraction of full supersampling's cost).
Textures are in world units (`texels_per_metre`) and mip-mapped, with the lookup level chosen from each
ray's footprint, so texture detail does not alias either.

Camera walks imitate real-estate footage: a smooth cubic spline through four key poses over the clip
parameter s in [0, 1] (frame i of F is s = i / (F - 1)), with one of six motions (dolly forward or
back, sideways truck, pan, arc around a point of interest, diagonal), a little height, pitch and roll
drift, kept inside the room and clear of furniture, starting towards a point of interest. A path is
accepted only if the first, middle and last views see content at a sensible distance and the two end
views overlap (most of each end view is inside the other). The path depends on the seed and scene
index only, not on F or the image size, so a 9-frame clip is every other frame of the 17-frame one.
Measured over 100 scenes (benchmarks/bench_synthetic.py -> benchmarks/results/synthetic.json, `motion`),
first vs last frame, median (10th-90th percentile): translation 0.64 m (0.40-0.95), rotation 10 degrees
(3-22), baseline / median scene depth 0.18 (0.10-0.27), median depth 3.7 m (2.6-4.9), share of one end
view seen by the other 0.75-0.78 (>= 0.6 by construction); horizontal field of view 58-73 degrees.
Per frame that is about 0.64 m / (F - 1): 2.7 cm at F = 25, 1.3 cm at F = 49.
"""

from __future__ import annotations

import colorsys
import logging
import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from jaxtyping import Float, Int, UInt8
from scipy.interpolate import CubicSpline

from videoscene.data import textures as tex
from videoscene.errors import VideoSceneError
from videoscene.image_io import to_uint8

logger = logging.getLogger(__name__)

ROOM_SURFACES = 6  # surface ids 0..5: x = 0, x = W, floor, ceiling, z = 0, z = D; primitives follow
_NO_HIT = np.float32(np.inf)
_RAYS_PER_BLOCK = 32768


# ----------------------------------------------------------------------------------------------
# Materials and primitives
# ----------------------------------------------------------------------------------------------


@dataclass
class Materials:
    """Per-material arrays (indexed by material id) so shading looks them up in one gather."""

    texture: list[int] = field(default_factory=list)
    tint: list[tuple[float, float, float]] = field(default_factory=list)
    texels_per_metre: list[tuple[float, float]] = field(default_factory=list)  # signed: (u, v)
    offset: list[tuple[float, float]] = field(default_factory=list)  # in level-0 texels
    emission: list[float] = field(default_factory=list)  # 0: lit (Lambertian); > 0: self-lit at that strength

    def add(
        self,
        texture: int,
        texels_per_metre: tuple[float, float],
        tint=(1.0, 1.0, 1.0),
        offset=(0.0, 0.0),
        emission: float = 0.0,
    ) -> int:
        self.texture.append(texture)
        self.tint.append(tuple(float(c) for c in tint))
        self.texels_per_metre.append((float(texels_per_metre[0]), float(texels_per_metre[1])))
        self.offset.append((float(offset[0]), float(offset[1])))
        self.emission.append(float(emission))
        return len(self.texture) - 1

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "texture": np.asarray(self.texture, np.int64),
            "tint": np.asarray(self.tint, np.float32),
            "texels_per_metre": np.asarray(self.texels_per_metre, np.float32),
            "offset": np.asarray(self.offset, np.float32),
            "emission": np.asarray(self.emission, np.float32),
        }


@dataclass(frozen=True)
class Box:
    """Box with half extents `half`, turned by `yaw` about the vertical through `center`.

    Local +z maps to world (sin yaw, 0, cos yaw). Face coordinates: (u, v) = (x, -y) on ±z faces,
    (z, -y) on ±x faces, (x, z) on ±y faces, measured from the face corner, so a picture texture
    mapped on the +z face reads upright and unmirrored from the front."""

    center: tuple[float, float, float]
    half: tuple[float, float, float]
    yaw: float
    material: int
    casts_occlusion: bool = True

    def _local(self, p: np.ndarray) -> np.ndarray:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        x, y, z = p[0] - self.center[0], p[1] - self.center[1], p[2] - self.center[2]
        return np.stack([c * x - s * z, y, s * x + c * z])

    def intersect(self, origin: np.ndarray, d: np.ndarray, inv_d: np.ndarray) -> np.ndarray:
        o = self._local(origin[:, None])[:, 0].astype(np.float32)
        if self.yaw == 0.0:
            inv = inv_d
        else:
            c, s = np.float32(math.cos(self.yaw)), np.float32(math.sin(self.yaw))
            inv = 1.0 / _nonzero(np.stack([c * d[0] - s * d[2], d[1], s * d[0] + c * d[2]]))
        half = np.asarray(self.half, np.float32)[:, None]
        t1 = (-half - o[:, None]) * inv
        t2 = (half - o[:, None]) * inv
        t_near = np.minimum(t1, t2).max(axis=0)
        t_far = np.maximum(t1, t2).min(axis=0)
        return np.where((t_near <= t_far) & (t_near > 0), t_near, _NO_HIT)

    def surface(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        local = self._local(p)
        half = np.asarray(self.half, np.float32)[:, None]
        axis = np.argmax(np.abs(local) / half, axis=0)
        sign = np.sign(local[axis, np.arange(local.shape[1])])
        normal_local = np.zeros_like(local)
        normal_local[axis, np.arange(local.shape[1])] = sign
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        x, y, z = normal_local
        normal = np.stack([c * x + s * z, y, -s * x + c * z])
        corner = local + half
        u = np.where(axis == 0, corner[2], corner[0])
        v = np.where(axis == 1, corner[2], 2 * half[1] - corner[1])
        return normal.astype(np.float32), u, v

    def distance(self, p: np.ndarray) -> np.ndarray:
        """Signed distance (negative inside)."""
        q = np.abs(self._local(p)) - np.asarray(self.half, np.float32)[:, None]
        outside = np.sqrt((np.maximum(q, 0.0) ** 2).sum(axis=0))
        return outside + np.minimum(q.max(axis=0), 0.0)

    def footprint(self) -> tuple[float, float, float, float]:
        """Axis-aligned floor rectangle (x0, z0, x1, z1) that contains the box."""
        c, s = abs(math.cos(self.yaw)), abs(math.sin(self.yaw))
        hx = c * self.half[0] + s * self.half[2]
        hz = s * self.half[0] + c * self.half[2]
        return (self.center[0] - hx, self.center[2] - hz, self.center[0] + hx, self.center[2] + hz)


@dataclass(frozen=True)
class Cylinder:
    """Vertical cylinder (axis parallel to y) with a flat cap at each end. `u_period` is the
    circumference rounded to whole texture tiles, so the wrapped texture has no seam."""

    center_xz: tuple[float, float]
    radius: float
    bottom: float
    top: float
    material: int
    u_period: float
    casts_occlusion: bool = True

    def intersect(self, origin: np.ndarray, d: np.ndarray, inv_d: np.ndarray) -> np.ndarray:
        ox, oy, oz = origin[0] - self.center_xz[0], origin[1], origin[2] - self.center_xz[1]
        a = d[0] * d[0] + d[2] * d[2]
        b = np.float32(ox) * d[0] + np.float32(oz) * d[2]
        c = np.float32(ox * ox + oz * oz - self.radius**2)
        discriminant = b * b - a * c
        root = np.sqrt(np.maximum(discriminant, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            t_side = (-b - root) / a
        y = np.float32(oy) + t_side * d[1]
        side_hit = (discriminant >= 0) & (t_side > 0) & (y >= self.bottom) & (y <= self.top)
        t = np.where(side_hit, t_side, _NO_HIT)
        # From outside, a cap can only be the first hit when the camera is above the top or below the bottom.
        if oy > self.top or oy < self.bottom:
            cap_y = self.top if oy > self.top else self.bottom
            t_cap = np.float32(cap_y - oy) * inv_d[1]
            cx, cz = np.float32(ox) + t_cap * d[0], np.float32(oz) + t_cap * d[2]
            cap_hit = (t_cap > 0) & (cx * cx + cz * cz <= self.radius**2)
            t = np.where(cap_hit & (t_cap < t), t_cap, t)
        return t

    def surface(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rx, rz = p[0] - self.center_xz[0], p[2] - self.center_xz[1]
        radial = np.sqrt(rx * rx + rz * rz)
        to_top, to_bottom = np.abs(p[1] - self.top), np.abs(p[1] - self.bottom)
        on_cap = np.minimum(to_top, to_bottom) < np.abs(radial - self.radius)
        cap_sign = np.where(to_top < to_bottom, 1.0, -1.0)
        safe = np.maximum(radial, 1e-6)
        normal = np.stack(
            [
                np.where(on_cap, 0.0, rx / safe),
                np.where(on_cap, cap_sign, 0.0),
                np.where(on_cap, 0.0, rz / safe),
            ]
        ).astype(np.float32)
        angle_u = (np.arctan2(rx, rz) / (2 * np.pi) + 0.5) * self.u_period
        u = np.where(on_cap, rx, angle_u)
        v = np.where(on_cap, rz, self.top - p[1])
        return normal, u, v

    def distance(self, p: np.ndarray) -> np.ndarray:
        rx, rz = p[0] - self.center_xz[0], p[2] - self.center_xz[1]
        qr = np.sqrt(rx * rx + rz * rz) - self.radius
        qy = np.abs(p[1] - 0.5 * (self.top + self.bottom)) - 0.5 * (self.top - self.bottom)
        outside = np.sqrt(np.maximum(qr, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
        return outside + np.minimum(np.maximum(qr, qy), 0.0)

    def footprint(self) -> tuple[float, float, float, float]:
        x, z, r = self.center_xz[0], self.center_xz[1], self.radius
        return (x - r, z - r, x + r, z + r)


@dataclass(frozen=True)
class Sphere:
    center: tuple[float, float, float]
    radius: float
    material: int
    u_period: float
    casts_occlusion: bool = True

    def intersect(self, origin: np.ndarray, d: np.ndarray, inv_d: np.ndarray) -> np.ndarray:
        oc = (origin - np.asarray(self.center)).astype(np.float32)
        a = (d * d).sum(axis=0)
        b = oc[0] * d[0] + oc[1] * d[1] + oc[2] * d[2]
        c = np.float32(oc @ oc - self.radius**2)
        discriminant = b * b - a * c
        t = (-b - np.sqrt(np.maximum(discriminant, 0.0))) / a
        return np.where((discriminant >= 0) & (t > 0), t, _NO_HIT)

    def surface(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        normal = ((p - np.asarray(self.center, np.float32)[:, None]) / self.radius).astype(np.float32)
        u = (np.arctan2(normal[0], normal[2]) / (2 * np.pi) + 0.5) * self.u_period
        v = self.radius * np.arccos(np.clip(normal[1], -1.0, 1.0))
        return normal, u, v

    def distance(self, p: np.ndarray) -> np.ndarray:
        return np.sqrt(((p - np.asarray(self.center, np.float32)[:, None]) ** 2).sum(axis=0)) - self.radius

    def footprint(self) -> tuple[float, float, float, float]:
        x, _, z = self.center
        r = self.radius
        return (x - r, z - r, x + r, z + r)


Primitive = Box | Cylinder | Sphere


@dataclass(frozen=True)
class Light:
    position: tuple[float, float, float]
    colour: tuple[float, float, float]  # intensity times colour
    falloff: float  # distance (m) at which the light has dropped to half


@dataclass
class Room:
    """A procedurally furnished room, ready to render: geometry, materials, textures and lights."""

    size: tuple[float, float, float]  # (width x, height y, depth z)
    surface_materials: tuple[int, int, int, int, int, int]
    trim_height: float  # skirting board height on the walls
    trim_material: int
    primitives: list[Primitive]
    lights: list[Light]
    ambient: tuple[float, float, float]
    materials: Materials
    atlas: tex.TextureAtlas
    exposure: float
    blockers: list[tuple[float, float, float, float]]  # floor rectangles the camera must keep clear of
    points_of_interest: list[tuple[float, float, float]]
    material_arrays: dict[str, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.material_arrays = self.materials.arrays()


def _nonzero(d: np.ndarray) -> np.ndarray:
    """Replace exact zeros by a tiny value so reciprocals stay finite (slab tests need no infinities)."""
    return np.where(d == 0, np.float32(1e-20), d)


# ----------------------------------------------------------------------------------------------
# Ray casting and shading
# ----------------------------------------------------------------------------------------------


def cast_rays(
    room: Room, origin: Float[np.ndarray, 3], d: Float[np.ndarray, "3 n"]
) -> tuple[Float[np.ndarray, " n"], Int[np.ndarray, " n"]]:
    """Nearest hit along rays origin + t d (d need not be unit; t is in units of d). Returns t and the
    surface id: 0..5 room faces, 6 + k primitive k. The camera is inside the room, so every ray hits."""
    d = _nonzero(d.astype(np.float32))
    inv_d = (1.0 / d).astype(np.float32)
    size = np.asarray(room.size, np.float64)
    # Room exit: per axis the plane the ray moves towards.
    t_axes = np.where(d > 0, (size - origin)[:, None], -origin[:, None]).astype(np.float32) * inv_d
    axis = np.argmin(t_axes, axis=0)
    columns = np.arange(d.shape[1])
    t_best = t_axes[axis, columns]
    surface = 2 * axis + (d[axis, columns] > 0)
    for k, primitive in enumerate(room.primitives):
        t = primitive.intersect(origin, d, inv_d)
        closer = t < t_best
        np.copyto(t_best, t, where=closer)
        np.copyto(surface, ROOM_SURFACES + k, where=closer)
    return t_best, surface


def _room_surface(
    room: Room, face: int, p: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    axis, high = divmod(face, 2)
    normal = np.zeros_like(p)
    normal[axis] = -1.0 if high else 1.0  # inward
    if axis == 0:
        u, v = p[2], room.size[1] - p[1]
    elif axis == 1:
        u, v = p[0], p[2]
    else:
        u, v = p[0], room.size[1] - p[1]
    material = np.full(p.shape[1], room.surface_materials[face], np.int64)
    if axis != 1:
        material[p[1] < room.trim_height] = room.trim_material
    return normal, u, v, material


def _occlusion(room: Room, p: np.ndarray) -> np.ndarray:
    """View-independent ambient-occlusion factor in (0, 1] for room-surface points: darker into the
    room's corners and next to furniture (from the primitives' distance fields)."""
    size = np.asarray(room.size, np.float32)[:, None]
    plane_distance = np.concatenate([p, size - p])  # [6, n]: x=0, y=0, z=0, x=W, y=H, z=D
    # Each point's own plane is at distance ~0: drop it by taking the second smallest.
    nearest_other = np.partition(plane_distance, 1, axis=0)[1]
    factor = 1.0 - 0.35 * np.exp(-nearest_other / 0.3)
    for primitive in room.primitives:
        if primitive.casts_occlusion:
            distance = np.maximum(primitive.distance(p), 0.0)
            factor *= 1.0 - 0.45 * np.clip(1.0 - distance / 0.4, 0.0, 1.0) ** 2
    return factor.astype(np.float32)


def shade(
    room: Room,
    origin: Float[np.ndarray, 3],
    d: Float[np.ndarray, "3 n"],
    t: Float[np.ndarray, " n"],
    surface: Int[np.ndarray, " n"],
    texel_angle: float,
) -> tuple[Float[np.ndarray, "n 3"], Float[np.ndarray, "3 n"], Int[np.ndarray, " n"]]:
    """Radiance of the hit points (before tone mapping), with their normals and material ids.
    `texel_angle` is a ray's footprint per unit of t on a surface facing the camera
    (1 / (focal length in pixels x rays per pixel side)); it sets the mip level."""
    count = t.shape[0]
    p = (origin[:, None] + t[None, :] * d).astype(np.float32)
    normal = np.empty((3, count), np.float32)
    u = np.empty(count, np.float32)
    v = np.empty(count, np.float32)
    material = np.empty(count, np.int64)
    occlusion = np.ones(count, np.float32)

    order = np.argsort(surface, kind="stable")
    bounds = np.searchsorted(surface[order], np.arange(ROOM_SURFACES + len(room.primitives) + 1))
    for surface_id in range(ROOM_SURFACES + len(room.primitives)):
        index = order[bounds[surface_id] : bounds[surface_id + 1]]
        if index.size == 0:
            continue
        points = p[:, index]
        if surface_id < ROOM_SURFACES:
            n, uu, vv, m = _room_surface(room, surface_id, points)
        else:
            primitive = room.primitives[surface_id - ROOM_SURFACES]
            n, uu, vv = primitive.surface(points)
            m = primitive.material
        normal[:, index], u[index], v[index], material[index] = n, uu, vv, m
    on_room = surface < ROOM_SURFACES
    occlusion[on_room] = _occlusion(room, p[:, on_room])

    mats = room.material_arrays
    scale = mats["texels_per_metre"][material]
    ray_length = np.sqrt((d * d).sum(axis=0))
    cosine = np.abs((normal * d).sum(axis=0)) / ray_length
    # Footprint: t * texel_angle across on a facing surface, stretched by 1/cos along the slant; the
    # geometric mean of the two axes balances blur against aliasing at grazing angles.
    footprint = t * np.float32(texel_angle) / np.sqrt(np.maximum(cosine, 0.02))
    lod = np.log2(np.maximum(footprint * np.sqrt(np.abs(scale[:, 0] * scale[:, 1])), 1e-8))
    albedo = (
        room.atlas.sample(
            mats["texture"][material],
            u * scale[:, 0] + mats["offset"][material, 0],
            v * scale[:, 1] + mats["offset"][material, 1],
            lod,
        )
        * mats["tint"][material]
    )

    irradiance = np.asarray(room.ambient, np.float32)[None, :] * occlusion[:, None]
    direct_occlusion = np.sqrt(occlusion)
    for light in room.lights:
        to_light = np.asarray(light.position, np.float32)[:, None] - p
        distance = np.sqrt((to_light * to_light).sum(axis=0))
        lambert = np.maximum((normal * to_light).sum(axis=0) / distance, 0.0)
        strength = lambert * direct_occlusion / (1.0 + (distance / light.falloff) ** 2)
        irradiance += strength[:, None] * np.asarray(light.colour, np.float32)[None, :]
    emission = mats["emission"][material]
    radiance = np.where(emission[:, None] > 0, albedo * emission[:, None], albedo * irradiance)
    return radiance, normal, material


def tone_map(radiance: np.ndarray, exposure: float) -> np.ndarray:
    """Smooth shoulder instead of clipping: 1 - exp(-exposure x radiance)."""
    return 1.0 - np.exp(-np.float32(exposure) * radiance)


def camera_rays(intrinsics: Float[np.ndarray, "3 3"], height: int, width: int) -> Float[np.ndarray, "3 n"]:
    """Camera-space ray directions (x, y, 1) through every pixel centre (j + 0.5, i + 0.5), row-major."""
    x, y = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    return pixel_rays(intrinsics, height, width, x.ravel(), y.ravel())


def pixel_rays(
    intrinsics: Float[np.ndarray, "3 3"],
    height: int,
    width: int,
    x: Float[np.ndarray, " n"],
    y: Float[np.ndarray, " n"],
) -> Float[np.ndarray, "3 n"]:
    """Camera-space directions (x, y, 1) through pixel coordinates (x, y) (pixel centres at +0.5)."""
    fx, fy = intrinsics[0, 0] * width, intrinsics[1, 1] * height
    cx, cy = intrinsics[0, 2] * width, intrinsics[1, 2] * height
    return np.stack([(x - cx) / fx, (y - cy) / fy, np.ones(x.shape)]).astype(np.float64)


def _edge_pixels(surface: np.ndarray, normal: np.ndarray, material: np.ndarray) -> np.ndarray:
    """Pixels on either side of a change of surface, face (normal) or material: where one ray per
    pixel would alias. Inputs are per pixel, [H, W] (normal [3, H, W])."""
    edges = np.zeros(surface.shape, bool)
    for axis in (0, 1):
        head = (slice(None, -1), slice(None)) if axis == 0 else (slice(None), slice(0, -1))
        tail = (slice(1, None), slice(None)) if axis == 0 else (slice(None), slice(1, None))
        bend = (normal[(slice(None), *head)] * normal[(slice(None), *tail)]).sum(axis=0) < 0.98
        change = (surface[head] != surface[tail]) | (material[head] != material[tail]) | bend
        edges[head] |= change
        edges[tail] |= change
    return edges


def render_view(
    room: Room,
    camera_to_world: Float[np.ndarray, "4 4"],
    intrinsics: Float[np.ndarray, "3 3"],
    height: int,
    width: int,
    supersample: int = 3,
) -> tuple[UInt8[np.ndarray, "height width 3"], Float[np.ndarray, "height width"]]:
    """One frame: colour (tone-mapped, rounded to uint8) and the z-depth of the ray through each pixel
    centre. Every pixel gets a ray through its centre, texture-filtered over the pixel footprint (mip
    level from the footprint). Pixels at geometric or material edges, where that would alias, are
    re-rendered as the mean of supersample x supersample rays on a regular grid inside the pixel."""
    rotation, origin = camera_to_world[:3, :3].astype(np.float64), camera_to_world[:3, 3].astype(np.float64)
    focal_pixels = intrinsics[0, 0] * width

    def trace(camera_directions: np.ndarray, footprint_scale: int):
        outputs = []
        # Blocks of rays keep the working arrays in cache (several times faster at large sizes).
        for start in range(0, camera_directions.shape[1], _RAYS_PER_BLOCK):
            rays = (rotation @ camera_directions[:, start : start + _RAYS_PER_BLOCK]).astype(np.float32)
            t, surface = cast_rays(room, origin, rays)
            radiance, normal, material = shade(
                room, origin, rays, t, surface, texel_angle=1.0 / (focal_pixels * footprint_scale)
            )
            outputs.append((tone_map(radiance, room.exposure), t, surface, normal, material))
        colour, t, surface, normal, material = zip(*outputs)
        return (
            np.concatenate(colour),
            np.concatenate(t),
            np.concatenate(surface),
            np.concatenate(normal, axis=1),
            np.concatenate(material),
        )

    colour, t, surface, normal, material = trace(_centre_rays(intrinsics, height, width), 1)
    # Directions have z = 1 in camera space, so t along (R d) is exactly the z-depth.
    depth = t.reshape(height, width)
    if supersample > 1:
        edges = np.flatnonzero(
            _edge_pixels(
                surface.reshape(height, width),
                normal.reshape(3, height, width),
                material.reshape(height, width),
            )
        )
        if edges.size:
            offsets = (np.arange(supersample) + 0.5) / supersample
            sub_x = (edges % width)[:, None, None] + offsets[None, None, :]
            sub_y = (edges // width)[:, None, None] + offsets[None, :, None]
            sub_x, sub_y = np.broadcast_arrays(sub_x, sub_y)
            sub_colour = trace(
                pixel_rays(intrinsics, height, width, sub_x.ravel(), sub_y.ravel()), supersample
            )[0]
            colour[edges] = sub_colour.reshape(edges.size, supersample * supersample, 3).mean(axis=1)
    image = to_uint8(torch.from_numpy(colour.reshape(height, width, 3))).numpy()
    return image, depth.astype(np.float32)


@lru_cache(maxsize=16)
def _centre_rays_cached(intrinsics_key: tuple[float, ...], height: int, width: int) -> np.ndarray:
    rays = camera_rays(np.asarray(intrinsics_key).reshape(3, 3), height, width)
    rays.setflags(write=False)
    return rays


def _centre_rays(intrinsics: np.ndarray, height: int, width: int) -> np.ndarray:
    return _centre_rays_cached(tuple(np.asarray(intrinsics, np.float64).ravel().tolist()), height, width)


# ----------------------------------------------------------------------------------------------
# Room sampling
# ----------------------------------------------------------------------------------------------


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))


class _RoomBuilder:
    """Draws one room from an RNG: palette, textures, materials, furniture, lights."""

    def __init__(self, rng: np.random.Generator, texture_size: int):
        self.rng = rng
        self.size = texture_size
        self.textures: list[np.ndarray] = []
        self.materials = Materials()
        self.primitives: list[Primitive] = []
        self.blockers: list[tuple[float, float, float, float]] = []
        self.points_of_interest: list[tuple[float, float, float]] = []
        self.wall_spans: dict[int, list[tuple[float, float]]] = {0: [], 1: [], 2: [], 3: []}
        self.base_hue = rng.random()

    # --- colours and textures ---------------------------------------------------------------

    def colour(self, saturation: tuple[float, float], value: tuple[float, float], hue_spread: float = 0.5):
        rng = self.rng
        return _hsv(
            self.base_hue + rng.uniform(-hue_spread, hue_spread),
            rng.uniform(*saturation),
            rng.uniform(*value),
        )

    def texture(self, image: np.ndarray) -> int:
        self.textures.append(np.clip(image, 0.0, 1.0).astype(np.float32))
        return len(self.textures) - 1

    def tiled(
        self,
        image: np.ndarray,
        tile_metres: float,
        tint=(1.0, 1.0, 1.0),
        emission: float = 0.0,
        stretch: float = 1.0,
    ) -> int:
        """A material tiling `image` once per `tile_metres` (times `stretch` along u), randomly shifted."""
        tpm = self.size / tile_metres
        offset = tuple(self.rng.uniform(0, self.size, 2))
        return self.materials.add(self.texture(image), (tpm / stretch, tpm), tint, offset, emission)

    def paint(self, light: bool = True) -> np.ndarray:
        a = self.colour((0.03, 0.25), (0.65, 0.92) if light else (0.35, 0.75))
        b = tuple(c * self.rng.uniform(0.85, 0.97) for c in a)
        return tex.noise_texture(
            self.rng, self.size, a, b, cells=int(self.rng.integers(3, 9)), contrast=self.rng.uniform(0.6, 1.2)
        )

    def wall_material(self) -> int:
        rng, size = self.rng, self.size
        kind = rng.choice(
            ["paint", "stripes", "brick", "plaster", "tiles", "photo"], p=[0.3, 0.2, 0.15, 0.15, 0.1, 0.1]
        )
        if kind == "paint":
            return self.tiled(self.paint(), rng.uniform(1.0, 2.5))
        if kind == "stripes":
            a = self.colour((0.05, 0.35), (0.6, 0.92))
            b = self.colour((0.05, 0.45), (0.45, 0.85))
            image = tex.stripes_texture(
                rng, size, a, b, stripes=int(rng.choice([4, 8, 16])), duty=rng.uniform(0.3, 0.7)
            )
            return self.tiled(image, rng.uniform(0.8, 2.0))
        if kind == "brick":
            tint = self.colour((0.1, 0.5), (0.55, 0.95), hue_spread=0.08)
            return self.tiled(tex.photo_texture(rng, "brick.png", size, tint=tint), rng.uniform(0.8, 1.6))
        if kind == "plaster":
            name = str(rng.choice(["gravel.png", "moon.png", "coins.png"]))
            tint = self.colour((0.03, 0.2), (0.7, 0.95))
            return self.tiled(tex.photo_texture(rng, name, size, tint=tint), rng.uniform(0.8, 2.0))
        if kind == "tiles":
            tile, grout = self.colour((0.05, 0.4), (0.6, 0.95)), self.colour((0.0, 0.1), (0.3, 0.7))
            image = tex.tiles_texture(rng, size, tile, grout, tiles=int(rng.choice([4, 8])))
            return self.tiled(image, rng.uniform(0.6, 1.6))
        name = str(rng.choice(tex.MATERIAL_PHOTOS_COLOUR))
        return self.tiled(tex.photo_texture(rng, name, size), rng.uniform(0.5, 1.0))

    def floor_material(self) -> int:
        rng, size = self.rng, self.size
        kind = rng.choice(["wood", "tiles", "carpet", "checker", "pavers"], p=[0.35, 0.2, 0.25, 0.1, 0.1])
        if kind == "wood":
            light = _hsv(rng.uniform(0.05, 0.11), rng.uniform(0.35, 0.65), rng.uniform(0.55, 0.9))
            dark = tuple(c * rng.uniform(0.45, 0.7) for c in light)
            return self.tiled(
                tex.wood_texture(rng, size, light, dark, planks=int(rng.choice([4, 8]))),
                rng.uniform(1.2, 2.4),
            )
        if kind == "tiles":
            tile, grout = self.colour((0.0, 0.35), (0.5, 0.9)), self.colour((0.0, 0.1), (0.2, 0.5))
            image = tex.tiles_texture(rng, size, tile, grout, tiles=4)
            return self.tiled(image, rng.uniform(1.2, 2.4))
        if kind == "carpet":
            name = str(rng.choice(["gravel.png", "grass.png"]))
            return self.tiled(
                tex.photo_texture(rng, name, size, tint=self.colour((0.1, 0.5), (0.35, 0.8))),
                rng.uniform(0.5, 1.2),
            )
        if kind == "checker":
            light, dark = self.colour((0.0, 0.2), (0.75, 0.95)), self.colour((0.0, 0.4), (0.1, 0.4))
            image = tex.checker_texture(rng, size, light, dark, squares=4)
            return self.tiled(image, rng.uniform(1.2, 2.4))
        tint = self.colour((0.05, 0.35), (0.5, 0.85), hue_spread=0.1)
        return self.tiled(tex.photo_texture(rng, "brick.png", size, tint=tint), rng.uniform(1.0, 2.0))

    def ceiling_material(self) -> int:
        rng = self.rng
        if rng.random() < 0.2:
            image = tex.tiles_texture(rng, self.size, (0.9, 0.9, 0.88), (0.6, 0.6, 0.6), tiles=2, grout=0.03)
            return self.tiled(image, rng.uniform(1.0, 1.4))
        a = _hsv(self.base_hue, rng.uniform(0.0, 0.08), rng.uniform(0.82, 0.97))
        b = tuple(c * 0.9 for c in a)
        return self.tiled(tex.noise_texture(rng, self.size, a, b, cells=4), rng.uniform(1.5, 3.0))

    def furniture_material(self) -> int:
        rng, size = self.rng, self.size
        kind = rng.choice(
            ["wood", "fabric", "photo", "grey_photo", "stripes", "checker"],
            p=[0.3, 0.25, 0.15, 0.15, 0.1, 0.05],
        )
        if kind == "wood":
            light = _hsv(rng.uniform(0.04, 0.12), rng.uniform(0.3, 0.7), rng.uniform(0.4, 0.9))
            dark = tuple(c * rng.uniform(0.4, 0.7) for c in light)
            return self.tiled(
                tex.wood_texture(rng, size, light, dark, planks=int(rng.choice([2, 4]))),
                rng.uniform(0.6, 1.2),
            )
        if kind == "fabric":
            a = self.colour((0.2, 0.7), (0.3, 0.85), hue_spread=0.5)
            b = tuple(c * rng.uniform(0.6, 0.85) for c in a)
            return self.tiled(
                tex.noise_texture(rng, size, a, b, cells=int(rng.integers(6, 16)), contrast=1.3),
                rng.uniform(0.3, 0.8),
            )
        if kind == "photo":
            name = str(rng.choice(tex.MATERIAL_PHOTOS_COLOUR))
            return self.tiled(tex.photo_texture(rng, name, size), rng.uniform(0.5, 1.2))
        if kind == "grey_photo":
            name = str(rng.choice(tex.MATERIAL_PHOTOS_GREY))
            return self.tiled(
                tex.photo_texture(rng, name, size, tint=self.colour((0.1, 0.6), (0.4, 0.9))),
                rng.uniform(0.4, 1.0),
            )
        if kind == "stripes":
            a, b = self.colour((0.2, 0.6), (0.5, 0.9)), self.colour((0.2, 0.6), (0.2, 0.6))
            image = tex.stripes_texture(rng, size, a, b, stripes=int(rng.choice([4, 8])))
            return self.tiled(image, rng.uniform(0.4, 0.9))
        light, dark = self.colour((0.1, 0.5), (0.6, 0.9)), self.colour((0.1, 0.5), (0.15, 0.45))
        image = tex.checker_texture(rng, size, light, dark, squares=8)
        return self.tiled(image, rng.uniform(0.5, 1.0))

    def u_period(self, material: int, circumference: float) -> float:
        """Circumference rounded to a whole number of texture tiles (so wrapping has no seam)."""
        tile = abs(self.size / self.materials.texels_per_metre[material][0])
        return max(1, round(circumference / tile)) * tile

    # --- placement ----------------------------------------------------------------------------

    def free(self, rect: tuple[float, float, float, float], gap: float = 0.08) -> bool:
        x0, z0, x1, z1 = rect
        return all(
            x1 + gap <= b[0] or b[2] + gap <= x0 or z1 + gap <= b[1] or b[3] + gap <= z0
            for b in self.blockers
        )

    def wall_frame(
        self, wall: int, along: float, out: float, room: tuple[float, float, float]
    ) -> tuple[float, float, float]:
        """(x, z, yaw) of a point `along` the wall and `out` from it, facing into the room (local +z inward).
        Walls: 0 x=0, 1 x=W, 2 z=0, 3 z=D; `along` runs in the wall's local +x direction."""
        width, _, depth = room
        if wall == 0:
            return out, depth - along, math.pi / 2
        if wall == 1:
            return width - out, along, -math.pi / 2
        if wall == 2:
            return along, out, 0.0
        return width - along, depth - out, math.pi

    @staticmethod
    def wall_length(wall: int, room: tuple[float, float, float]) -> float:
        return room[2] if wall in (0, 1) else room[0]

    def add_box(self, center, half, yaw, material, blocks: bool = True, casts_occlusion: bool = True) -> Box:
        box = Box(
            tuple(float(c) for c in center),
            tuple(float(h) for h in half),
            float(yaw),
            material,
            casts_occlusion,
        )
        self.primitives.append(box)
        if blocks:
            self.blockers.append(box.footprint())
        return box

    def add_cylinder(
        self, x, z, radius, bottom, top, material, blocks: bool = True, casts_occlusion: bool = True
    ) -> Cylinder:
        cylinder = Cylinder(
            (float(x), float(z)),
            float(radius),
            float(bottom),
            float(top),
            material,
            self.u_period(material, 2 * math.pi * radius),
            casts_occlusion,
        )
        self.primitives.append(cylinder)
        if blocks:
            self.blockers.append(cylinder.footprint())
        return cylinder

    def add_sphere(self, center, radius, material, blocks: bool = True) -> Sphere:
        sphere = Sphere(
            tuple(float(c) for c in center),
            float(radius),
            material,
            self.u_period(material, 2 * math.pi * radius),
        )
        self.primitives.append(sphere)
        if blocks:
            self.blockers.append(sphere.footprint())
        return sphere

    def against_wall(self, room, width: float, depth: float, margin: float = 0.3):
        """Try a few spots along random walls for a width x depth footprint; returns (x, z, yaw, wall) or
        None."""
        for _ in range(12):
            wall = int(self.rng.integers(0, 4))
            length = self.wall_length(wall, room)
            if length < width + 2 * margin:
                continue
            along = self.rng.uniform(margin + width / 2, length - margin - width / 2)
            x, z, yaw = self.wall_frame(wall, along, depth / 2 + 0.02, room)
            c, s = abs(math.cos(yaw)), abs(math.sin(yaw))
            hx, hz = c * width / 2 + s * depth / 2, s * width / 2 + c * depth / 2
            if self.free((x - hx, z - hz, x + hx, z + hz)):
                return x, z, yaw, wall
        return None

    def in_room(self, room, radius: float, margin: float = 0.5):
        """A free floor point at least `margin` from the walls for a footprint of this radius, or None."""
        for _ in range(12):
            x = self.rng.uniform(margin + radius, room[0] - margin - radius)
            z = self.rng.uniform(margin + radius, room[2] - margin - radius)
            if self.free((x - radius, z - radius, x + radius, z + radius)):
                return x, z
        return None

    def add_furniture(self, kind: str, room) -> None:
        rng = self.rng
        if kind in ("cabinet", "wardrobe"):
            width = rng.uniform(0.6, 1.6) if kind == "cabinet" else rng.uniform(0.8, 1.8)
            depth = rng.uniform(0.35, 0.6)
            height = (
                rng.uniform(0.45, 1.1) if kind == "cabinet" else rng.uniform(1.7, min(2.2, room[1] - 0.3))
            )
            spot = self.against_wall(room, width, depth)
            if spot is None:
                return
            x, z, yaw, _ = spot
            self.add_box(
                (x, height / 2, z), (width / 2, height / 2, depth / 2), yaw, self.furniture_material()
            )
            self.points_of_interest.append((x, height * 0.7, z))
            if kind == "cabinet" and rng.random() < 0.6:
                radius = rng.uniform(0.06, 0.14)
                offset = rng.uniform(-0.3, 0.3) * width
                ox, oz = x + offset * math.cos(yaw), z - offset * math.sin(yaw)
                if rng.random() < 0.5:
                    self.add_sphere(
                        (ox, height + radius, oz), radius, self.furniture_material(), blocks=False
                    )
                else:
                    self.add_cylinder(
                        ox,
                        oz,
                        radius,
                        height,
                        height + rng.uniform(0.15, 0.4),
                        self.furniture_material(),
                        blocks=False,
                    )
        elif kind == "sofa":
            width, depth = rng.uniform(1.3, 2.2), rng.uniform(0.75, 1.0)
            spot = self.against_wall(room, width, depth)
            if spot is None:
                return
            x, z, yaw, _ = spot
            seat, back, back_depth = rng.uniform(0.38, 0.5), rng.uniform(0.75, 0.95), rng.uniform(0.15, 0.25)
            material = self.furniture_material()
            self.add_box((x, seat / 2, z), (width / 2, seat / 2, depth / 2), yaw, material)
            # The back sits along the wall side of the seat (local -z).
            shift = depth / 2 - back_depth / 2
            bx, bz = x - shift * math.sin(yaw), z - shift * math.cos(yaw)
            self.add_box(
                (bx, back / 2, bz), (width / 2, back / 2, back_depth / 2), yaw, material, blocks=False
            )
            self.points_of_interest.append((x, seat, z))
        elif kind == "table":
            width, depth = rng.uniform(0.8, 1.6), rng.uniform(0.6, 1.0)
            radius = 0.5 * math.hypot(width, depth)
            spot = self.in_room(room, radius)
            if spot is None:
                return
            x, z = spot
            height, thickness = rng.uniform(0.7, 0.78), rng.uniform(0.035, 0.06)
            top = self.add_box(
                (x, height - thickness / 2, z),
                (width / 2, thickness / 2, depth / 2),
                rng.uniform(-math.pi, math.pi),
                self.furniture_material(),
                blocks=False,
            )
            self.blockers.append(top.footprint())
            self.add_cylinder(
                x, z, rng.uniform(0.05, 0.1), 0.0, height - thickness, self.furniture_material(), blocks=False
            )
            self.points_of_interest.append((x, height, z))
            if rng.random() < 0.6:
                r = rng.uniform(0.07, 0.15)
                center = (x + rng.uniform(-0.2, 0.2), height + r, z + rng.uniform(-0.2, 0.2))
                self.add_sphere(center, r, self.furniture_material(), blocks=False)
        elif kind == "round_table":
            radius = rng.uniform(0.35, 0.6)
            spot = self.in_room(room, radius)
            if spot is None:
                return
            x, z = spot
            height = rng.uniform(0.55, 0.78)
            material = self.furniture_material()
            self.add_cylinder(x, z, radius, height - 0.04, height, material)
            self.add_cylinder(x, z, rng.uniform(0.04, 0.09), 0.0, height - 0.04, material, blocks=False)
            self.points_of_interest.append((x, height, z))
        elif kind == "pillar":
            radius = rng.uniform(0.12, 0.3)
            spot = self.in_room(room, radius, margin=0.6)
            if spot is None:
                return
            self.add_cylinder(spot[0], spot[1], radius, 0.0, room[1], self.furniture_material())
            self.points_of_interest.append((spot[0], 1.2, spot[1]))
        elif kind == "lamp":
            spot = self.in_room(room, 0.25, margin=0.3)
            if spot is None:
                return
            x, z = spot
            height = rng.uniform(1.3, 1.7)
            self.add_cylinder(
                x, z, rng.uniform(0.015, 0.03), 0.0, height, self.furniture_material(), casts_occlusion=False
            )
            shade_colour = _hsv(rng.uniform(0.05, 0.15), rng.uniform(0.1, 0.5), 1.0)
            shade_material = self.tiled(
                tex.noise_texture(
                    rng, self.size, shade_colour, tuple(c * 0.9 for c in shade_colour), cells=8
                ),
                0.5,
                emission=rng.uniform(0.9, 1.3),
            )
            if rng.random() < 0.5:
                self.add_sphere((x, height + 0.15, z), rng.uniform(0.13, 0.2), shade_material, blocks=False)
            else:
                self.add_cylinder(
                    x, z, rng.uniform(0.15, 0.25), height - 0.1, height + 0.2, shade_material, blocks=False
                )
            self.blockers.append((x - 0.25, z - 0.25, x + 0.25, z + 0.25))
            self.points_of_interest.append((x, height, z))
        elif kind == "pouf":
            radius = rng.uniform(0.2, 0.4)
            spot = self.in_room(room, radius, margin=0.3)
            if spot is None:
                return
            if rng.random() < 0.5:
                self.add_sphere((spot[0], radius, spot[1]), radius, self.furniture_material())
            else:
                self.add_cylinder(
                    spot[0], spot[1], radius, 0.0, rng.uniform(0.35, 0.5), self.furniture_material()
                )
            self.points_of_interest.append((spot[0], radius, spot[1]))
        elif kind == "plant":
            radius = rng.uniform(0.14, 0.24)
            spot = self.in_room(room, radius + 0.15, margin=0.25)
            if spot is None:
                return
            x, z = spot
            pot = rng.uniform(0.3, 0.5)
            self.add_cylinder(x, z, radius, 0.0, pot, self.furniture_material())
            green = _hsv(rng.uniform(0.22, 0.38), rng.uniform(0.4, 0.8), rng.uniform(0.35, 0.7))
            leaves = self.tiled(
                tex.photo_texture(rng, "grass.png", self.size, tint=green), rng.uniform(0.3, 0.6)
            )
            foliage = rng.uniform(0.25, 0.45)
            self.add_sphere((x, pot + foliage * 0.85, z), foliage, leaves, blocks=False)
            self.blockers.append((x - foliage, z - foliage, x + foliage, z + foliage))
            self.points_of_interest.append((x, pot + foliage, z))

    def add_wall_panel(self, kind: str, room) -> None:
        """Pictures, doors and windows: thin boxes flat on a wall, kept apart along each wall."""
        rng = self.rng
        if kind == "picture":
            width, height = rng.uniform(0.4, 1.2), rng.uniform(0.35, 0.9)
            bottom = rng.uniform(1.5, 1.9) - height / 2
        elif kind == "door":
            width, height, bottom = rng.uniform(0.8, 0.95), rng.uniform(1.95, min(2.1, room[1] - 0.15)), 0.0
        else:
            width, height = rng.uniform(0.8, 1.6), rng.uniform(0.8, min(1.4, room[1] - 1.2))
            bottom = rng.uniform(0.8, room[1] - height - 0.25)
        wall = int(rng.integers(0, 4))
        length = self.wall_length(wall, room)
        if length < width + 0.6:
            return
        along = rng.uniform(0.3 + width / 2, length - 0.3 - width / 2)
        span = (along - width / 2 - 0.1, along + width / 2 + 0.1)
        if any(span[0] < hi and lo < span[1] for lo, hi in self.wall_spans[wall]):
            return
        thickness = {"picture": 0.03, "door": 0.04, "window": 0.02}[kind]
        x, z, yaw = self.wall_frame(wall, along, thickness / 2, room)
        if kind == "picture":
            photo = tex.load_package_photo(str(rng.choice(tex.PICTURE_PHOTOS)))
            frame = _hsv(rng.uniform(0.0, 0.12), rng.uniform(0.0, 0.6), rng.uniform(0.1, 0.8))
            image = tex.picture_texture(photo, self.size, frame, _hsv(0, 0, rng.uniform(0.85, 0.97)))
            material = self.materials.add(self.texture(image), (self.size / width, self.size / height))
        elif kind == "door":
            light = _hsv(rng.uniform(0.04, 0.12), rng.uniform(0.2, 0.6), rng.uniform(0.35, 0.85))
            image = tex.wood_texture(rng, self.size, light, tuple(c * 0.6 for c in light), planks=2)
            material = self.materials.add(self.texture(image), (self.size / width, self.size / height))
        else:
            frame = _hsv(0.0, 0.0, rng.uniform(0.8, 0.98))
            panes = (int(rng.integers(1, 3)), int(rng.integers(1, 4)))
            image = tex.window_texture(rng, self.size, frame, panes)
            material = self.materials.add(
                self.texture(image), (self.size / width, self.size / height), emission=rng.uniform(1.1, 1.5)
            )
        center, half = (x, bottom + height / 2, z), (width / 2, height / 2, thickness / 2)
        self.add_box(center, half, yaw, material, blocks=False, casts_occlusion=False)
        self.wall_spans[wall].append(span)
        self.points_of_interest.append((x, bottom + height / 2, z))


def sample_room(rng: np.random.Generator, texture_size: int = 256) -> Room:
    """Draw a furnished, lit room."""
    builder = _RoomBuilder(rng, texture_size)
    size = (float(rng.uniform(3.5, 7.0)), float(rng.uniform(2.4, 3.2)), float(rng.uniform(4.0, 9.0)))
    surfaces = (
        builder.wall_material(),
        builder.wall_material(),
        builder.floor_material(),
        builder.ceiling_material(),
        builder.wall_material(),
        builder.wall_material(),
    )
    trim_colour = _hsv(rng.uniform(0.0, 0.12), rng.uniform(0.0, 0.3), rng.uniform(0.2, 0.95))
    trim = builder.tiled(
        tex.noise_texture(rng, texture_size, trim_colour, tuple(c * 0.92 for c in trim_colour), cells=8), 1.0
    )

    if rng.random() < 0.5:  # a rug: flat on the floor, so it blocks nothing
        width, depth = rng.uniform(1.2, min(2.6, size[0] - 1.0)), rng.uniform(0.8, min(1.8, size[2] - 1.0))
        x, z = (
            rng.uniform(0.5 + width / 2, size[0] - 0.5 - width / 2),
            rng.uniform(0.5 + depth / 2, size[2] - 0.5 - depth / 2),
        )
        rug = builder.furniture_material() if rng.random() < 0.5 else builder.floor_material()
        yaw = float(rng.choice([0.0, math.pi / 2])) if rng.random() < 0.7 else rng.uniform(0, math.pi)
        builder.add_box(
            (x, 0.006, z), (width / 2, 0.006, depth / 2), yaw, rug, blocks=False, casts_occlusion=False
        )
    for kind in (
        ["door"] * int(rng.random() < 0.7)
        + ["window"] * int(rng.integers(0, 3))
        + ["picture"] * int(rng.integers(1, 4))
    ):
        builder.add_wall_panel(kind, size)

    kinds = ["cabinet", "wardrobe", "sofa", "table", "round_table", "pillar", "lamp", "pouf", "plant"]
    weights = np.asarray([0.18, 0.1, 0.14, 0.14, 0.08, 0.06, 0.1, 0.1, 0.1])
    for kind in rng.choice(kinds, size=int(rng.integers(4, 11)), p=weights / weights.sum()):
        builder.add_furniture(str(kind), size)

    lights = []
    warmth = rng.uniform(-1, 1)
    for _ in range(int(rng.integers(1, 4))):
        x, z = rng.uniform(0.2, 0.8) * size[0], rng.uniform(0.2, 0.8) * size[2]
        colour = np.asarray([1.0 + 0.08 * warmth, 1.0, 1.0 - 0.12 * warmth]) * rng.uniform(0.45, 0.8)
        lights.append(Light((x, size[1] - 0.08, z), tuple(colour), falloff=float(rng.uniform(2.0, 3.5))))
        fixture = builder.tiled(
            tex.noise_texture(rng, texture_size, (1.0, 0.97, 0.9), (0.95, 0.93, 0.88), cells=4),
            0.5,
            emission=1.4,
        )
        radius, thickness = rng.uniform(0.1, 0.22), rng.uniform(0.03, 0.08)
        builder.add_cylinder(
            x, z, radius, size[1] - thickness, size[1], fixture, blocks=False, casts_occlusion=False
        )
    ambient = tuple(np.asarray(_hsv(builder.base_hue, rng.uniform(0.0, 0.12), 1.0)) * rng.uniform(0.3, 0.45))
    # Brighter rooms would clip: scale exposure by the light the middle of the room receives.
    middle_light = ambient[1] + sum(l.colour[1] / (1 + (0.5 * size[1] / l.falloff) ** 2) for l in lights)
    exposure = float(rng.uniform(1.4, 1.8) / max(middle_light, 0.4))
    builder.points_of_interest.append((size[0] / 2, 1.0, size[2] / 2))
    return Room(
        size=size,
        surface_materials=surfaces,
        trim_height=float(rng.uniform(0.06, 0.14)),
        trim_material=trim,
        primitives=builder.primitives,
        lights=lights,
        ambient=ambient,
        materials=builder.materials,
        atlas=tex.TextureAtlas.build(builder.textures),
        exposure=exposure,
        blockers=builder.blockers,
        points_of_interest=builder.points_of_interest,
    )


# ----------------------------------------------------------------------------------------------
# Camera walks
# ----------------------------------------------------------------------------------------------

MOTIONS = ("dolly_forward", "dolly_back", "truck", "pan", "arc", "diagonal")
_MOTION_PROBABILITIES = (0.25, 0.1, 0.2, 0.1, 0.2, 0.15)
_KEY_S = np.array([0.0, 1 / 3, 2 / 3, 1.0])
_WALL_MARGIN, _FURNITURE_MARGIN = 0.35, 0.3
_CHECK_GRID = (8, 12)  # rows, columns of the coarse rays used to accept a path (aspect 2:3)


def camera_rotation(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> Float[np.ndarray, "n 3 3"]:
    """OpenCV camera-to-world rotations [right, down, forward] for a camera looking along
    (sin yaw cos pitch, sin pitch, cos yaw cos pitch) in the y-up world, rolled about its view axis."""
    forward = np.stack([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)], axis=-1)
    right0 = np.cross(forward, np.array([0.0, 1.0, 0.0]))
    right0 /= np.linalg.norm(right0, axis=-1, keepdims=True)
    down0 = np.cross(forward, right0)
    cos_r, sin_r = np.cos(roll)[:, None], np.sin(roll)[:, None]
    right = cos_r * right0 + sin_r * down0
    down = -sin_r * right0 + cos_r * down0
    return np.stack([right, down, forward], axis=-1)


@dataclass(frozen=True)
class CameraPath:
    """Key poses at s = 0, 1/3, 2/3, 1 joined by natural cubic splines (C2-smooth position and angles)."""

    motion: str
    positions: Float[np.ndarray, "4 3"]
    yaw: Float[np.ndarray, 4]
    pitch: Float[np.ndarray, 4]
    roll: Float[np.ndarray, 4]
    fov_x: float  # horizontal field of view, radians

    def poses(self, s: Float[np.ndarray, " n"]) -> Float[np.ndarray, "n 4 4"]:
        def spline(values):
            return CubicSpline(_KEY_S, values, bc_type="natural", axis=0)(s)

        camera_to_world = np.tile(np.eye(4), (len(s), 1, 1))
        camera_to_world[:, :3, :3] = camera_rotation(spline(self.yaw), spline(self.pitch), spline(self.roll))
        camera_to_world[:, :3, 3] = spline(self.positions)
        return camera_to_world

    def intrinsics(self, height: int, width: int) -> Float[np.ndarray, "3 3"]:
        """Normalised pinhole intrinsics, square pixels, principal point at the image centre."""
        fx = 0.5 / math.tan(self.fov_x / 2)
        return np.array([[fx, 0.0, 0.5], [0.0, fx * width / height, 0.5], [0.0, 0.0, 1.0]])


def _rotate_xz(vector: np.ndarray, angle: float) -> np.ndarray:
    """Turn a horizontal offset by `angle` the same way a yaw increase turns the view direction."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([vector[0] * c + vector[2] * s, vector[1], -vector[0] * s + vector[2] * c])


def _position_is_clear(room: Room, position: np.ndarray) -> bool:
    x, y, z = position
    if not (
        _WALL_MARGIN <= x <= room.size[0] - _WALL_MARGIN and _WALL_MARGIN <= z <= room.size[2] - _WALL_MARGIN
    ):
        return False
    if not 0.5 <= y <= room.size[1] - 0.3:
        return False
    m = _FURNITURE_MARGIN
    return all(not (b[0] - m < x < b[2] + m and b[1] - m < z < b[3] + m) for b in room.blockers)


def coarse_view(
    room: Room, camera_to_world: np.ndarray, intrinsics: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Camera-space ray directions of the acceptance grid and their z-depths."""
    rows, columns = _CHECK_GRID
    rays = camera_rays(intrinsics, rows, columns)
    depth, _ = cast_rays(room, camera_to_world[:3, 3], (camera_to_world[:3, :3] @ rays).astype(np.float32))
    return rays, depth


def view_overlap(
    rays: np.ndarray, depth: np.ndarray, source: np.ndarray, target: np.ndarray, intrinsics: np.ndarray
) -> float:
    """Share of the source view's coarse points (at their depth) that land inside the target view."""
    points = source[:3, :3] @ (rays * depth[None, :]) + source[:3, 3:4]
    local = target[:3, :3].T @ (points - target[:3, 3:4])
    with np.errstate(divide="ignore", invalid="ignore"):
        u = intrinsics[0, 0] * local[0] / local[2] + intrinsics[0, 2]
        v = intrinsics[1, 1] * local[1] / local[2] + intrinsics[1, 2]
    inside = (local[2] > 0.05) & (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
    return float(inside.mean())


def end_overlaps(room: Room, path: CameraPath) -> tuple[float, float]:
    """Share of the first view's points that the last view sees, and the reverse (coarse grid)."""
    first, last = path.poses(np.array([0.0, 1.0]))
    intrinsics = path.intrinsics(*_CHECK_GRID)
    return (
        view_overlap(*coarse_view(room, first, intrinsics), first, last, intrinsics),
        view_overlap(*coarse_view(room, last, intrinsics), last, first, intrinsics),
    )


def path_is_acceptable(room: Room, path: CameraPath, min_overlap: float = 0.6) -> bool:
    """Clear of walls and furniture along the whole walk; content at a sensible distance in the first,
    middle and last views; and the two ends overlapping (each sees >= `min_overlap` of the other's
    points)."""
    dense = path.poses(np.linspace(0.0, 1.0, 33))
    if not all(_position_is_clear(room, pose[:3, 3]) for pose in dense):
        return False
    intrinsics = path.intrinsics(*_CHECK_GRID)
    views = {}
    for index in (0, 16, 32):
        rays, depth = coarse_view(room, dense[index], intrinsics)
        if depth.min() < 0.5 or np.median(depth) < 1.4 or depth.max() < 1.5 * depth.min():
            return False
        views[index] = (rays, depth)
    first, last = dense[0], dense[-1]
    return (
        view_overlap(*views[0], first, last, intrinsics) >= min_overlap
        and view_overlap(*views[32], last, first, intrinsics) >= min_overlap
    )


def sample_path(
    rng: np.random.Generator,
    room: Room,
    attempts: int = 200,
    walk_scale: float = 1.0,
    min_overlap: float = 0.6,
) -> CameraPath | None:
    """Draw camera walks until one is acceptable (None if `attempts` run out). `walk_scale` multiplies how
    far the camera travels and turns (wider baselines between the walk's ends); the draws stay the same.
    `min_overlap`: the least share of each end view's points that the other end must see."""
    fov_x = math.radians(rng.uniform(55.0, 75.0))
    for _ in range(attempts):
        height = rng.uniform(1.15, min(1.65, room.size[1] - 0.5))
        start = np.array([rng.uniform(0, room.size[0]), height, rng.uniform(0, room.size[2])])
        if not _position_is_clear(room, start):
            continue
        target = np.asarray(room.points_of_interest[int(rng.integers(len(room.points_of_interest)))])
        offset = target - start
        if math.hypot(offset[0], offset[2]) < 1.2:
            continue
        yaw0 = math.atan2(offset[0], offset[2]) + math.radians(rng.normal(0.0, 8.0))
        pitch0 = math.radians(rng.uniform(-14.0, 2.0))
        forward = np.array([math.sin(yaw0), 0.0, math.cos(yaw0)])
        right = np.array([math.cos(yaw0), 0.0, -math.sin(yaw0)])  # viewer's right (OpenCV x) at this yaw
        motion = str(rng.choice(MOTIONS, p=_MOTION_PROBABILITIES))
        fractions = _KEY_S
        if motion == "arc":
            radius, sweep = (
                rng.uniform(1.8, 3.5),
                math.radians(rng.uniform(12.0, 28.0)) * rng.choice([-1, 1]) * walk_scale,
            )
            centre = start + radius * forward
            positions = np.stack([centre + _rotate_xz(start - centre, sweep * f) for f in fractions])
            yaw = yaw0 + sweep * fractions
        else:
            if motion == "dolly_forward":
                travel, turn = rng.uniform(0.5, 1.2) * forward, rng.uniform(-10.0, 10.0)
            elif motion == "dolly_back":
                travel, turn = -rng.uniform(0.4, 1.0) * forward, rng.uniform(-10.0, 10.0)
            elif motion == "truck":
                travel, turn = rng.choice([-1, 1]) * rng.uniform(0.4, 1.0) * right, rng.uniform(-12.0, 12.0)
            elif motion == "pan":
                heading = rng.uniform(-math.pi, math.pi)
                travel = rng.uniform(0.1, 0.35) * np.array([math.sin(heading), 0.0, math.cos(heading)])
                turn = rng.choice([-1, 1]) * rng.uniform(12.0, 28.0)
            else:
                angle = math.radians(rng.uniform(-60.0, 60.0)) + (math.pi if rng.random() < 0.25 else 0.0)
                travel = rng.uniform(0.4, 1.0) * (math.cos(angle) * forward + math.sin(angle) * right)
                turn = rng.uniform(-20.0, 20.0)
            positions = start + fractions[:, None] * (walk_scale * travel)[None, :]
            yaw = yaw0 + math.radians(walk_scale * turn) * fractions
        # Handheld-like wobble on the inner keys, slow height and pitch drift, a little roll.
        positions = positions.copy()
        positions[1:3] += rng.normal(0.0, 0.03, (2, 3))
        positions[:, 1] = start[1] + fractions * rng.uniform(-0.15, 0.15)
        yaw = yaw + np.radians(np.concatenate([[0.0], rng.normal(0.0, 1.5, 2), [0.0]]))
        pitch = pitch0 + fractions * math.radians(rng.uniform(-6.0, 6.0))
        roll = np.radians(rng.normal(0.0, 0.8, 4))
        path = CameraPath(motion, positions, yaw, pitch, roll, fov_x)
        if path_is_acceptable(room, path, min_overlap):
            return path
    return None


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthConfig:
    """How scenes are rendered. `supersample`: rays per pixel side at geometric/material edges
    (1 = one ray through each pixel centre everywhere, no edge anti-aliasing)."""

    supersample: int = 3
    texture_size: int = 256
    walk_scale: float = 1.0  # how far each camera walk travels and turns, relative to the default walks
    # The least share of each end view's points the other end sees; lower it (with a larger walk_scale) for
    # pairs in the paper's low-overlap regime, where the render has real holes.
    min_overlap: float = 0.6

    def __post_init__(self) -> None:
        if not 0 < self.walk_scale <= 4:
            raise VideoSceneError(f"walk_scale must be in (0, 4], got {self.walk_scale}")
        if not 0 <= self.min_overlap <= 1:
            raise VideoSceneError(f"min_overlap must be in [0, 1], got {self.min_overlap}")
        if not 1 <= self.supersample <= 4:
            raise VideoSceneError(f"supersample must be 1, 2, 3 or 4, got {self.supersample}")
        if self.texture_size < 16 or self.texture_size & (self.texture_size - 1):
            raise VideoSceneError(f"texture_size must be a power of two >= 16, got {self.texture_size}")


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """Scene `index`'s own generator: the same scene for a seed whatever the number of scenes."""
    if seed < 0 or index < 0:
        raise VideoSceneError(f"seed and scene index must be non-negative, got seed={seed}, index={index}")
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(index,)))


def sample_scene(seed: int, index: int, config: SynthConfig = SynthConfig()) -> tuple[Room, CameraPath]:
    """The room and camera walk of scene `index` for `seed` (independent of frame count and image size)."""
    rng = scene_rng(seed, index)
    for _ in range(50):
        room = sample_room(rng, config.texture_size)
        path = sample_path(rng, room, walk_scale=config.walk_scale, min_overlap=config.min_overlap)
        if path is not None:
            return room, path
        logger.debug("scene %d/%d: no acceptable camera walk, drawing another room", seed, index)
    raise VideoSceneError(f"could not place a camera walk in scene {index} of seed {seed}; try another seed")


def check_render_size(frames: int, height: int, width: int) -> None:
    if frames < 2:
        raise VideoSceneError(f"--frames must be at least 2 (a clip needs two ends), got {frames}")
    if height < 8 or width < 8:
        raise VideoSceneError(f"--height and --width must be at least 8 pixels, got {height}x{width}")


def render_scene(
    seed: int,
    index: int,
    frames: int,
    height: int,
    width: int,
    config: SynthConfig = SynthConfig(),
) -> tuple[
    UInt8[np.ndarray, "frame height width 3"],
    Float[np.ndarray, "frame 4 4"],
    Float[np.ndarray, "frame 3 3"],
    Float[np.ndarray, "frame height width"],
]:
    """Render scene `index` of `seed`: frames (uint8), camera-to-world extrinsics (OpenCV), normalised
    intrinsics and z-depth (metres). Frame i is at s = i / (frames - 1) along the walk."""
    check_render_size(frames, height, width)
    room, path = sample_scene(seed, index, config)
    # Render with the float32 cameras that are stored, so pixels and stored cameras agree exactly.
    extrinsics = path.poses(np.linspace(0.0, 1.0, frames)).astype(np.float32)
    intrinsics = np.tile(path.intrinsics(height, width).astype(np.float32), (frames, 1, 1))
    images = np.empty((frames, height, width, 3), np.uint8)
    depths = np.empty((frames, height, width), np.float32)
    for i in range(frames):
        images[i], depths[i] = render_view(
            room,
            extrinsics[i].astype(np.float64),
            intrinsics[i].astype(np.float64),
            height,
            width,
            config.supersample,
        )
    return images, extrinsics, intrinsics, depths
