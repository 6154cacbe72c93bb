"""Textures for the synthetic rooms and a mip-mapped atlas that samples them in world units.

Two sources:
- natural-image textures cut from the photographs scikit-image ships inside its package folder
  (`skimage/data/*.png`, read as plain files: nothing is downloaded);
- procedural ones: value noise (fBm), checker, stripes, tiles, wood planks, window panes, framed pictures.

Every texture is square, `size` texels a side (a power of two), and periodic, so surfaces can tile it
at a fixed number of texels per metre. `TextureAtlas` stores all mip levels of all textures in one
flat array so that a trilinear lookup of any texture at any level is a handful of vectorised gathers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import cv2
import imageio.v3 as iio
import numpy as np
from jaxtyping import Float, Int

from videoscene.errors import VideoSceneError

Texture = Float[np.ndarray, "size size 3"]

# Files bundled in scikit-image's package folder (never fetched), grouped by how the rooms use them.
# Grey ones are tinted with a palette colour; colour ones are used as they are.
MATERIAL_PHOTOS_GREY = ("brick.png", "gravel.png", "grass.png", "moon.png", "coins.png", "camera.png")
MATERIAL_PHOTOS_COLOUR = ("coffee.png", "motorcycle_left.png", "ihc.png", "chelsea.png")
PICTURE_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "camera.png",
    "hubble_deep_field.jpg",
)


@functools.cache
def load_package_photo(name: str) -> Float[np.ndarray, "height width 3"]:
    """One of scikit-image's bundled photographs as float RGB in [0, 1] (cached per process)."""
    path = resources.files("skimage") / "data" / name
    if not path.is_file():
        raise VideoSceneError(
            f"scikit-image's bundled image {name} is missing; reinstall scikit-image (pip install "
            "scikit-image)"
        )
    image = iio.imread(path)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = image[..., :3].astype(np.float32) / 255.0
    image.setflags(write=False)
    return image


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    # INTER_AREA when shrinking (no aliasing), cubic when enlarging.
    shrinking = height <= image.shape[0] and width <= image.shape[1]
    resized = cv2.resize(
        image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    )
    return resized.reshape(height, width, -1)


def make_seamless(texture: Texture) -> Texture:
    """Periodic version of a texture: blend it with its half-period roll under a window that is 1 in the
    centre and 0 on the border, so the (continuous) rolled copy shows at the borders and hides the seam."""
    size = texture.shape[0]
    ramp = 1.0 - np.abs(np.linspace(-1.0, 1.0, size, dtype=np.float32))
    window = np.minimum(ramp[:, None], ramp[None, :])[..., None]
    window = np.clip(window * 2.0, 0.0, 1.0)
    rolled = np.roll(texture, (size // 2, size // 2), axis=(0, 1))
    return window * texture + (1.0 - window) * rolled


def periodic_noise(
    rng: np.random.Generator, size: int, cells: tuple[int, int], octaves: int = 4, persistence: float = 0.5
) -> Float[np.ndarray, "size size"]:
    """Tileable value-noise fBm in [0, 1]: random lattices of `cells` (rows, columns), doubled each
    octave, interpolated bicubically on a 3x3 tiling so the result wraps around."""
    total = np.zeros((size, size), np.float32)
    amplitude, weight = 1.0, 0.0
    rows, cols = cells
    for _ in range(octaves):
        rows, cols = min(rows, size), min(cols, size)
        lattice = rng.random((rows, cols), dtype=np.float32)
        tiled = np.tile(lattice, (3, 3))
        up = cv2.resize(tiled, (3 * size, 3 * size), interpolation=cv2.INTER_CUBIC)[
            size : 2 * size, size : 2 * size
        ]
        total += amplitude * up
        weight += amplitude
        amplitude *= persistence
        rows, cols = rows * 2, cols * 2
    total /= weight
    low, high = np.percentile(total, [1, 99])
    return np.clip((total - low) / max(high - low, 1e-6), 0.0, 1.0)


def _mix(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return a * (1.0 - weight[..., None]) + b * weight[..., None]


def noise_texture(
    rng: np.random.Generator, size: int, colour_a, colour_b, cells: int = 4, contrast: float = 1.0
) -> Texture:
    """Paint, plaster, fabric or carpet: two colours mixed by fBm."""
    noise = periodic_noise(rng, size, (cells, cells))
    weight = np.clip(0.5 + (noise - 0.5) * contrast, 0.0, 1.0)
    return _mix(np.asarray(colour_a, np.float32), np.asarray(colour_b, np.float32), weight)


def checker_texture(rng: np.random.Generator, size: int, colour_a, colour_b, squares: int = 4) -> Texture:
    index = np.arange(size) * squares // size
    pattern = ((index[:, None] + index[None, :]) % 2).astype(np.float32)
    grain = 0.9 + 0.2 * periodic_noise(rng, size, (8, 8), octaves=3)
    return (
        _mix(np.asarray(colour_a, np.float32), np.asarray(colour_b, np.float32), pattern) * grain[..., None]
    )


def stripes_texture(
    rng: np.random.Generator, size: int, colour_a, colour_b, stripes: int = 8, duty: float = 0.5
) -> Texture:
    """Wallpaper-like vertical stripes (along texture columns) with faint paper grain."""
    phase = (np.arange(size) * stripes / size) % 1.0
    pattern = np.broadcast_to((phase < duty).astype(np.float32)[None, :], (size, size))
    grain = 0.92 + 0.16 * periodic_noise(rng, size, (16, 16), octaves=3)
    return (
        _mix(np.asarray(colour_a, np.float32), np.asarray(colour_b, np.float32), pattern) * grain[..., None]
    )


def tiles_texture(
    rng: np.random.Generator, size: int, tile_colour, grout_colour, tiles: int = 4, grout: float = 0.06
) -> Texture:
    """Square tiles with per-tile shade variation and grout lines."""
    index = np.arange(size) * tiles // size
    phase = (np.arange(size) * tiles / size) % 1.0
    on_grout = (phase < grout)[:, None] | (phase < grout)[None, :]
    shade = 0.85 + 0.3 * rng.random((tiles, tiles), dtype=np.float32)
    per_tile = shade[index[:, None], index[None, :]]
    mottling = 0.9 + 0.2 * periodic_noise(rng, size, (8, 8))
    tile = np.asarray(tile_colour, np.float32) * (per_tile * mottling)[..., None]
    return np.where(on_grout[..., None], np.asarray(grout_colour, np.float32), tile)


def wood_texture(rng: np.random.Generator, size: int, colour_light, colour_dark, planks: int = 4) -> Texture:
    """Planks running along texture columns: stretched noise for the grain, a shade per plank, dark seams,
    and staggered plank ends."""
    rows = np.arange(size)
    plank = rows * planks // size
    grain = periodic_noise(rng, size, (planks * 8, 2), octaves=4)
    rings = 0.5 + 0.5 * np.sin(2 * np.pi * (grain * 6.0))
    shade = 0.8 + 0.4 * rng.random(planks, dtype=np.float32)
    weight = np.clip(0.65 * rings + 0.35 * grain, 0.0, 1.0)
    wood = _mix(np.asarray(colour_light, np.float32), np.asarray(colour_dark, np.float32), weight)
    wood *= shade[plank][:, None, None]
    seam = ((rows * planks / size) % 1.0) < 0.04
    end_at = (rng.random(planks) * size).astype(int)[plank]
    column = np.arange(size)[None, :]
    plank_end = np.abs(column - end_at[:, None]) < max(1, size // 128)
    return np.where((seam[:, None] | plank_end)[..., None], wood * 0.45, wood)


def window_texture(rng: np.random.Generator, size: int, frame_colour, panes: tuple[int, int]) -> Texture:
    """A bright sky-and-clouds view crossed by window bars (used with an emissive material)."""
    clouds = periodic_noise(rng, size, (3, 3), octaves=5)
    sky = np.asarray([0.55, 0.72, 0.95], np.float32)
    cloud = np.asarray([0.97, 0.97, 0.97], np.float32)
    view = _mix(sky, cloud, np.clip((clouds - 0.35) * 2.0, 0.0, 1.0))
    bar = max(2, size // 40)
    grid = np.zeros((size, size), bool)
    for axis, count in enumerate(panes):
        positions = (np.arange(count + 1) * size // count) % size
        for position in positions:
            lo, hi = position - bar // 2, position + (bar + 1) // 2
            indices = np.arange(lo, hi) % size
            if axis == 0:
                grid[indices, :] = True
            else:
                grid[:, indices] = True
    return np.where(grid[..., None], np.asarray(frame_colour, np.float32), view)


def picture_texture(photo: np.ndarray, size: int, frame_colour, mat_colour, border: float = 0.07) -> Texture:
    """A framed picture: the photo fitted inside a mat and a frame (mapped once onto a wall panel)."""
    frame_px, mat_px = max(1, int(size * border)), max(1, int(size * border * 0.6))
    inner = size - 2 * (frame_px + mat_px)
    height, width = photo.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    texture = np.empty((size, size, 3), np.float32)
    texture[:] = np.asarray(frame_colour, np.float32)
    texture[frame_px : size - frame_px, frame_px : size - frame_px] = np.asarray(mat_colour, np.float32)
    start = frame_px + mat_px
    texture[start : start + inner, start : start + inner] = _resize(
        photo[top : top + side, left : left + side], inner, inner
    )
    return texture


def photo_texture(
    rng: np.random.Generator,
    name: str,
    size: int,
    tint=None,
    crop_fraction: tuple[float, float] = (0.35, 0.8),
) -> Texture:
    """A random square crop of a bundled photograph, resized and made periodic. A grey photo is
    normalised to mean 1 and multiplied by `tint` so it takes the room's palette."""
    photo = load_package_photo(name)
    height, width = photo.shape[:2]
    side = int(min(height, width) * rng.uniform(*crop_fraction))
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    crop = _resize(np.ascontiguousarray(photo[top : top + side, left : left + side]), size, size)
    texture = make_seamless(crop)
    if tint is not None:
        grey = texture.mean(axis=2, keepdims=True)
        # Compress the grey photo's contrast so tinted surfaces stay in range.
        texture = np.asarray(tint, np.float32) * np.clip(
            0.35 + 0.65 * grey / max(float(grey.mean()), 1e-3), 0.0, 1.6
        )
    return np.clip(texture, 0.0, 1.0).astype(np.float32)


@dataclass
class TextureAtlas:
    """All mip levels of `count` square textures of side `size`, flattened into one texel array.

    Texture k's level l (side size >> l) starts at `offsets[k, l]` and is stored row-major.
    """

    texels: Float[np.ndarray, "texel 3"]
    offsets: Int[np.ndarray, "texture level"]
    size: int

    @property
    def levels(self) -> int:
        return self.offsets.shape[1]

    @classmethod
    def build(cls, textures: list[Texture]) -> TextureAtlas:
        if not textures:
            raise VideoSceneError("a texture atlas needs at least one texture")
        size = textures[0].shape[0]
        if size & (size - 1) or any(t.shape != (size, size, 3) for t in textures):
            raise VideoSceneError(
                "atlas textures must all be [S, S, 3] with S a power of two, got "
                f"{[t.shape for t in textures]}"
            )
        levels = size.bit_length()
        flat, offsets, cursor = [], np.zeros((len(textures), levels), np.int64), 0
        for k, texture in enumerate(textures):
            level = np.ascontiguousarray(texture, dtype=np.float32)
            for l in range(levels):
                offsets[k, l] = cursor
                flat.append(level.reshape(-1, 3))
                cursor += level.shape[0] * level.shape[1]
                # 2x2 box filter: each mip texel is the mean of the four it covers (periodic textures).
                if l + 1 < levels:
                    level = 0.25 * (
                        level[0::2, 0::2] + level[1::2, 0::2] + level[0::2, 1::2] + level[1::2, 1::2]
                    )
        return cls(np.concatenate(flat).astype(np.float32), offsets, size)

    def _bilinear(self, texture: np.ndarray, level: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Bilinear, wrapping lookup at one integer level per sample; x, y in level-0 texel units."""
        side = self.size >> level
        scale = 1.0 / (1 << level).astype(np.float32)
        # Texel centres sit at (i + 0.5): shift before flooring.
        fx = x * scale - 0.5
        fy = y * scale - 0.5
        x0 = np.floor(fx)
        y0 = np.floor(fy)
        wx = (fx - x0)[:, None]
        wy = (fy - y0)[:, None]
        mask = side - 1
        ix0 = x0.astype(np.int64) & mask
        iy0 = y0.astype(np.int64) & mask
        ix1 = (ix0 + 1) & mask
        iy1 = (iy0 + 1) & mask
        base = self.offsets[texture, level]
        row0, row1 = base + iy0 * side, base + iy1 * side

        def texel(index):  # np.take is several times faster than fancy indexing here
            return np.take(self.texels, index, axis=0)

        top = texel(row0 + ix0) * (1 - wx) + texel(row0 + ix1) * wx
        bottom = texel(row1 + ix0) * (1 - wx) + texel(row1 + ix1) * wx
        return top * (1 - wy) + bottom * wy

    def sample(
        self,
        texture: Int[np.ndarray, " n"],
        x: Float[np.ndarray, " n"],
        y: Float[np.ndarray, " n"],
        lod: Float[np.ndarray, " n"],
    ) -> Float[np.ndarray, "n 3"]:
        """Trilinear (mip-mapped) lookup. x (column) and y (row) are in level-0 texels and wrap; lod is
        log2 of the sample footprint in level-0 texels (clamped to the available levels)."""
        lod = np.clip(lod, 0.0, self.levels - 1).astype(np.float32)
        lower = np.minimum(np.floor(lod).astype(np.int64), self.levels - 1)
        upper = np.minimum(lower + 1, self.levels - 1)
        blend = (lod - lower)[:, None]
        return (
            self._bilinear(texture, lower, x, y) * (1 - blend) + self._bilinear(texture, upper, x, y) * blend
        )
