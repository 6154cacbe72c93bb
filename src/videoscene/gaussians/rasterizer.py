"""Differentiable 3D Gaussian splatting: a tiled pure-PyTorch renderer (CPU or any device), its brute-force
per-pixel reference twin, and gsplat's CUDA rasterizer behind the same interface.

Semantics follow gsplat's "classic" mode (Kerbl et al. 2023, §4 and §6; gsplat `rasterization`):

1. world -> camera with the inverse extrinsics; Gaussians whose centre depth z is not in (near, far) are
   culled;
2. EWA splatting (Zwicker et al. 2002): Σ' = J W Σ Wᵀ Jᵀ with J the Jacobian of the pinhole projection at
   the mean (its x/z, y/z clamped to 1.3x the view frustum, as gsplat and Inria do, so Gaussians far outside
   the image do not get huge footprints), then a dilation Σ' + 0.3·I (`EPS2D`);
3. at pixel centre p = (x + 0.5, y + 0.5): α = min(0.999, o·exp(-½ dᵀ Σ'⁻¹ d)), d = p - μ', and α < 1/255
   is skipped;
4. front-to-back compositing in order of z: C = Σ_i c_i α_i T_i, T_i = Π_{j<i} (1 - α_j), stopping *before*
   the Gaussian that would bring the transmittance to 1e-4 or below;
5. colour c_i from spherical harmonics along the direction camera centre -> mean, + 0.5, clamped at 0.

Outputs: colour (+ background · final transmittance), alpha = 1 - final transmittance, and depth =
Σ_i z_i α_i T_i / max(alpha, 1e-10): the alpha-*normalised* expected z-depth (gsplat's "ED"); it is 0 where
nothing was drawn. The alpha clamp is gsplat's 0.999 (releases 1.4-1.5.3; the Inria CUDA code, and
gsplat's main branch after 1.5.3, use 0.99), so that the torch and gsplat backends agree. The background
is added to colour only, never to depth (gsplat appends a zero background channel for the depth it
composites, then divides by alpha with the same 1e-10 floor).

gsplat >= 1.5 bins each Gaussian by the box of its α >= 1/255 ellipse, as we do, so both backends draw the
same pixels; gsplat 1.4 bins by a 3σ circle and may drop the faint tails (α < 0.011·o) that fall in tiles
outside it. gsplat's kernels compute in float32 only, so that backend takes float32 tensors.

The torch backend bins Gaussians into square tiles by the exact bounding box of the ellipse where
α >= 1/255 (so the binning changes no pixel), sorts each tile's list by depth, and composites tiles in
chunks of similar list length with a hand-written backward pass (`_TileComposite`) that recomputes the
per-pixel terms instead of storing them: memory stays bounded by `TorchRasterizerConfig.chunk_elements`
in both passes. `render_reference` composites every Gaussian at every pixel one after the other, with
no binning, sorting tricks or custom gradients, and is the twin the tests compare against.

Either backend renders the views in chunks (`render`'s `views_per_chunk`; by default as many views as keep
batch × views × Gaussians within `VIEW_CHUNK_PAIRS`), because projecting every Gaussian into every view
costs memory per (view, Gaussian) pair: about 510 bytes in the torch backend's forward pass (measured at
480×720 with 691k Gaussians, SH degree 3; benchmarks/bench_rasterizer.py --memory), so 49 views at once
would need about 16 GB; in chunks of 6 they peaked at 2.7 GB. With gradients each chunk is checkpointed
(its intermediates are recomputed during backward), so backward memory is bounded by one chunk too. Chunks
change no pixel and no gradient beyond float rounding (views are independent; gradients are summed over
chunks).

gsplat compiles its CUDA code on first use, which needs nvcc (the CUDA toolkit's compiler). When that
code cannot be loaded, backend="auto" says so in one warning line and renders with the torch backend
(same images, slower); backend="gsplat" raises one line naming nvcc and the torch fallback.
"""

from __future__ import annotations

import bisect
import importlib.util
import logging
import math
import numbers
from dataclasses import dataclass
from functools import cache, lru_cache, partial

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from torch.func import jacrev, vmap
from torch.utils.checkpoint import checkpoint

from videoscene.errors import VideoSceneError
from videoscene.gaussians.math import MAX_SH_DEGREE, eval_sh, sh_degree_of
from videoscene.geometry.cameras import check_rigid
from videoscene.geometry.rotations import quaternion_to_matrix
from videoscene.types import Gaussians, RenderOutput, check_finite

logger = logging.getLogger(__name__)

EPS2D = 0.3  # screen-space dilation of the 2D covariance, in pixels² (gsplat's eps2d)
ALPHA_MIN = 1.0 / 255.0  # contributions below this are skipped
ALPHA_MAX = 0.999  # per-Gaussian alpha clamp (gsplat)
TRANSMITTANCE_MIN = 1e-4  # a pixel stops accumulating before its transmittance would reach this
FRUSTUM_MARGIN = 0.3  # the Jacobian is evaluated with x/z, y/z clamped to (1 + margin) x the frustum
DEPTH_ALPHA_FLOOR = 1e-10  # expected depth divides by max(alpha, this)

BACKENDS = ("auto", "torch", "gsplat")
_GAUSSIAN_FIELDS = ("means", "scales", "rotations", "harmonics", "opacities")
# Default chunk size: (image × Gaussian) pairs projected together, per backend. About 2 GB of working
# memory for the torch backend (~510 B a pair, see the module docstring) and for gsplat in packed mode
# (~330 B a pair with SH degree 3: ids, 2D means, conics, depths, the gathered SH coefficients, colours),
# while one training step of the MVSplat preset (14 × 4 targets × 2·256² Gaussians, 7.3M pairs) and every
# tiny-scale render stay a single chunk.
VIEW_CHUNK_PAIRS = {"torch": 1 << 22, "gsplat": 1 << 23}


@dataclass(frozen=True)
class TorchRasterizerConfig:
    """Speed/memory knobs of the torch backend; they do not change the image."""

    tile_size: int = 4  # pixels per tile side; small Gaussians (the prior's) waste less work on small tiles
    chunk_elements: int = 1 << 19  # Gaussian x pixel evaluations per compositing chunk (bounds memory)
    chunk_fill: float = (
        0.75  # tiles in a chunk have lists at least this fraction of its longest (less padding)
    )


# --------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------


def render(
    gaussians: Gaussians,
    extrinsics: Float[Tensor, "batch view 4 4"],
    intrinsics: Float[Tensor, "batch view 3 3"],
    image_shape: tuple[int, int],
    background: Float[Tensor, "batch 3"] | None = None,
    near: float = 0.01,
    far: float = 1e10,
    backend: str = "auto",
    sh_degree: int | None = None,
    config: TorchRasterizerConfig | None = None,
    views_per_chunk: int | None = None,
) -> RenderOutput:
    """Render batched Gaussians (means [B, G, 3], ...) into V views per batch element.

    Cameras are OpenCV camera-to-world extrinsics with normalised intrinsics; `image_shape` is (H, W).
    `backend`: "torch" (tiled PyTorch, differentiable, any device), "gsplat" (CUDA, float32) or "auto"
    (gsplat for float32 CUDA tensors when it is installed and its CUDA code loads, else torch).
    `sh_degree` limits the SH bands used (default: all). `views_per_chunk`: views rendered together, which
    bounds memory (default: as many as keep B × views × G within `VIEW_CHUNK_PAIRS[backend]`); the result
    does not depend on it beyond float rounding.
    Returns colour [B, V, 3, H, W], alpha-normalised expected depth [B, V, H, W] and alpha [B, V, H, W].
    """
    # 1. Check inputs.
    sh_degree, background = _check_inputs(
        gaussians, extrinsics, intrinsics, image_shape, background, near, far, sh_degree
    )
    if views_per_chunk is not None and not (
        isinstance(views_per_chunk, numbers.Integral) and views_per_chunk > 0
    ):
        raise VideoSceneError(f"views_per_chunk must be a positive integer or None, got {views_per_chunk!r}")
    backend = _resolve_backend(backend, gaussians)
    if views_per_chunk is None:
        batch, count = gaussians.means.shape[:2]
        views_per_chunk = max(1, VIEW_CHUNK_PAIRS[backend] // max(batch * count, 1))
    # 2. Rasterize, chunk by chunk.
    if backend == "gsplat":
        rasterize = partial(_render_gsplat, image_shape=image_shape, near=near, far=far, sh_degree=sh_degree)
    else:
        rasterize = partial(
            _render_torch,
            image_shape=image_shape,
            near=near,
            far=far,
            sh_degree=sh_degree,
            config=config or TorchRasterizerConfig(),
        )
    return _render_in_chunks(rasterize, gaussians, extrinsics, intrinsics, background, views_per_chunk)


def render_reference(
    gaussians: Gaussians,
    extrinsics: Float[Tensor, "batch view 4 4"],
    intrinsics: Float[Tensor, "batch view 3 3"],
    image_shape: tuple[int, int],
    background: Float[Tensor, "batch 3"] | None = None,
    near: float = 0.01,
    far: float = 1e10,
    sh_degree: int | None = None,
) -> RenderOutput:
    """Brute-force twin of `render` for tests: every Gaussian is evaluated at every pixel and composited
    one after the other in depth order, with autograd for gradients. Written independently of the torch
    backend where that is cheap (homogeneous transforms, the Jacobian by automatic differentiation, 2x2
    inverses by linalg, a sequential compositing loop). Slow: tiny images and a few hundred Gaussians."""
    sh_degree, background = _check_inputs(
        gaussians, extrinsics, intrinsics, image_shape, background, near, far, sh_degree
    )
    height, width = image_shape
    batch, views = extrinsics.shape[:2]
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=extrinsics.dtype, device=extrinsics.device) + 0.5,
        torch.arange(width, dtype=extrinsics.dtype, device=extrinsics.device) + 0.5,
        indexing="ij",
    )
    pixels = torch.stack([xs, ys], dim=-1).reshape(-1, 2)  # [H*W, 2]
    colors, depths, alphas = [], [], []
    for b in range(batch):
        covariances = gaussians.select(b).covariances()
        for v in range(views):
            camera_to_world = extrinsics[b, v]
            world_to_camera = torch.linalg.inv(camera_to_world)
            pixel_intrinsics = intrinsics[b, v] * intrinsics.new_tensor([width, height, 1.0])[:, None]
            means_h = torch.cat([gaussians.means[b], torch.ones_like(gaussians.means[b][:, :1])], dim=-1)
            means_camera = (means_h @ world_to_camera.T)[:, :3]
            keep = (means_camera[:, 2] > near) & (means_camera[:, 2] < far)
            means_camera = means_camera[keep]
            depth = means_camera[:, 2]
            rotation = world_to_camera[:3, :3]
            covariance_camera = rotation @ covariances[keep] @ rotation.T

            def pinhole(point: Tensor) -> Tensor:
                return (pixel_intrinsics @ point)[:2] / point[2]

            # Jacobian at the mean pulled back into 1.3x the frustum (gsplat/Inria).
            focal, principal = pixel_intrinsics.diagonal()[:2], pixel_intrinsics[:2, 2]
            size = pixel_intrinsics.new_tensor([width, height])
            low = -(principal / focal + FRUSTUM_MARGIN * 0.5 * size / focal)
            high = (size - principal) / focal + FRUSTUM_MARGIN * 0.5 * size / focal
            slope = torch.maximum(torch.minimum(means_camera[:, :2] / depth[:, None], high), low)
            clamped_point = torch.cat([slope * depth[:, None], depth[:, None]], dim=-1)
            jacobian = vmap(jacrev(pinhole))(clamped_point)  # [n, 2, 3]
            covariance_2d = jacobian @ covariance_camera @ jacobian.transpose(-1, -2)
            covariance_2d = covariance_2d + EPS2D * torch.eye(2, dtype=covariance_2d.dtype)
            precision_2d = torch.linalg.inv(covariance_2d)
            means_2d = vmap(pinhole)(means_camera)

            camera_centre = camera_to_world[:3, 3]
            color = eval_sh(gaussians.harmonics[b][keep], gaussians.means[b][keep] - camera_centre, sh_degree)
            opacity = gaussians.opacities[b][keep]

            offset = pixels[:, None, :] - means_2d[None]  # [H*W, n, 2]
            power = 0.5 * torch.einsum("pni,nij,pnj->pn", offset, precision_2d, offset)
            alpha = torch.clamp(opacity * torch.exp(-power), max=ALPHA_MAX)
            alpha = torch.where((power >= 0) & (alpha >= ALPHA_MIN), alpha, torch.zeros_like(alpha))

            transmittance = torch.ones(height * width, dtype=alpha.dtype, device=alpha.device)
            done = torch.zeros(height * width, dtype=torch.bool, device=alpha.device)
            accumulated_color = torch.zeros(height * width, 3, dtype=alpha.dtype, device=alpha.device)
            accumulated_depth = torch.zeros(height * width, dtype=alpha.dtype, device=alpha.device)
            for i in torch.argsort(depth).tolist():
                next_transmittance = transmittance * (1 - alpha[:, i])
                done = done | (next_transmittance <= TRANSMITTANCE_MIN)
                weight = torch.where(done, torch.zeros_like(transmittance), alpha[:, i] * transmittance)
                accumulated_color = accumulated_color + weight[:, None] * color[i]
                accumulated_depth = accumulated_depth + weight * depth[i]
                transmittance = torch.where(done, transmittance, next_transmittance)
            alpha_image = 1 - transmittance
            colors.append(
                (accumulated_color + transmittance[:, None] * background[b]).T.reshape(3, height, width)
            )
            depths.append(
                (accumulated_depth / alpha_image.clamp_min(DEPTH_ALPHA_FLOOR)).reshape(height, width)
            )
            alphas.append(alpha_image.reshape(height, width))
    return RenderOutput(
        color=torch.stack(colors).unflatten(0, (batch, views)),
        depth=torch.stack(depths).unflatten(0, (batch, views)),
        alpha=torch.stack(alphas).unflatten(0, (batch, views)),
    )


@lru_cache(maxsize=1)
def gsplat_available() -> bool:
    return importlib.util.find_spec("gsplat") is not None


@lru_cache(maxsize=1)
def gsplat_cuda_error() -> str | None:
    """None when gsplat's CUDA code loads, else why not, in a few words. gsplat (1.5) imports a prebuilt
    extension or compiles one with nvcc the first time `gsplat.cuda._backend` is imported (minutes); with
    no CUDA toolkit it leaves `_C` as None and its first kernel call fails with an AttributeError."""
    try:
        from gsplat.cuda._backend import _C
    except Exception as error:  # a failed build raises RuntimeError, CalledProcessError, ImportError, ...
        lines = str(error).strip().splitlines()
        return f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__
    return None if _C is not None else "no CUDA toolkit found"


def _gsplat_cuda_message(reason: str) -> str:
    return (
        f"gsplat cannot load its CUDA code ({reason}); gsplat compiles it on first use, which needs nvcc "
        "(the CUDA toolkit's compiler) on PATH or under CUDA_HOME"
    )


@cache
def _warn_gsplat_fallback(reason: str) -> None:
    """Say once per reason that backend="auto" renders with the torch backend instead of gsplat."""
    logger.warning(
        "%s; rendering with the torch renderer instead (the same images, slower)",
        _gsplat_cuda_message(reason),
    )


# --------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------


def _check_inputs(gaussians, extrinsics, intrinsics, image_shape, background, near, far, sh_degree):
    """Validate everything `render` takes; return the SH degree to use and a [B, 3] background."""
    means = gaussians.means
    if means.ndim != 3 or means.shape[-1] != 3:
        raise VideoSceneError(
            f"render expects batched Gaussians with means [B, G, 3], got {list(means.shape)}; add a "
            "batch axis"
        )
    batch, count = means.shape[:2]
    expected = {
        "scales": (gaussians.scales, (batch, count, 3)),
        "rotations": (gaussians.rotations, (batch, count, 4)),
        "opacities": (gaussians.opacities, (batch, count)),
    }
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise VideoSceneError(
                f"Gaussians.{name} must have shape {list(shape)} to match means, got {list(tensor.shape)}"
            )
    harmonics = gaussians.harmonics
    if harmonics.ndim != 4 or tuple(harmonics.shape[:2]) != (batch, count) or harmonics.shape[-1] != 3:
        raise VideoSceneError(
            f"Gaussians.harmonics must have shape [{batch}, {count}, d_sh, 3], got {list(harmonics.shape)}"
        )
    available = sh_degree_of(harmonics.shape[-2])
    if sh_degree is None:
        sh_degree = available
    if not 0 <= sh_degree <= min(available, MAX_SH_DEGREE):
        raise VideoSceneError(
            f"sh_degree must be between 0 and {available} for these Gaussians, got {sh_degree}"
        )
    if extrinsics.ndim != 4 or extrinsics.shape[-2:] != (4, 4) or extrinsics.shape[0] != batch:
        raise VideoSceneError(f"extrinsics must have shape [{batch}, V, 4, 4], got {list(extrinsics.shape)}")
    if tuple(intrinsics.shape) != (*extrinsics.shape[:2], 3, 3):
        raise VideoSceneError(
            f"intrinsics must have shape {[*extrinsics.shape[:2], 3, 3]} to match the extrinsics, got "
            f"{list(intrinsics.shape)}"
        )
    if len(image_shape) != 2 or not all(
        isinstance(side, numbers.Integral) and side > 0 for side in image_shape
    ):
        raise VideoSceneError(f"image_shape must be two positive integers (height, width), got {image_shape}")
    if not 0 < near < far:
        raise VideoSceneError(f"need 0 < near < far, got near={near}, far={far}")
    for name in _GAUSSIAN_FIELDS:
        check_finite(f"Gaussians.{name}", getattr(gaussians, name))
    check_finite("intrinsics", intrinsics)
    with torch.no_grad():
        check_rigid(extrinsics.detach().cpu(), "extrinsics (camera-to-world)")
        focal = intrinsics.detach()[..., [0, 1], [0, 1]]
        if not (focal > 0).all():
            raise VideoSceneError("intrinsics must have positive focal lengths (normalised fx/W, fy/H)")
    if background is None:
        background = means.new_zeros(batch, 3)
    elif tuple(background.shape) != (batch, 3):
        raise VideoSceneError(f"background must have shape [{batch}, 3], got {list(background.shape)}")
    else:
        check_finite("background", background)
    return sh_degree, background


def _resolve_backend(backend: str, gaussians: Gaussians) -> str:
    if backend not in BACKENDS:
        raise VideoSceneError(f"unknown rasterizer backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    dtypes = {getattr(gaussians, name).dtype for name in _GAUSSIAN_FIELDS}
    return _choose_backend(backend, gaussians.means.device.type == "cuda", dtypes)


def _choose_backend(backend: str, on_cuda: bool, dtypes: set[torch.dtype]) -> str:
    single = dtypes == {torch.float32}
    if backend == "auto":
        if not (on_cuda and single and gsplat_available()):
            return "torch"
        reason = gsplat_cuda_error()
        if reason is not None:
            _warn_gsplat_fallback(reason)
            return "torch"
        return "gsplat"
    if backend == "gsplat":
        if not on_cuda:
            raise VideoSceneError("the gsplat backend needs CUDA tensors; use backend='torch' on the CPU")
        if not single:
            # gsplat's rasterization kernels read float32 buffers only (data_ptr<float>).
            raise VideoSceneError(
                f"the gsplat backend renders float32 Gaussians only, got {sorted(map(str, dtypes))}; "
                "cast them or use backend='torch'"
            )
        if not gsplat_available():
            raise VideoSceneError(
                "the gsplat backend needs the gsplat package: pip install 'videoscene[cuda]'"
            )
        reason = gsplat_cuda_error()
        if reason is not None:
            raise VideoSceneError(
                f"{_gsplat_cuda_message(reason)}; install the CUDA toolkit, or use backend='torch' (the "
                "pure-PyTorch renderer: the same images, slower)"
            )
    return backend


def _render_in_chunks(rasterize, gaussians, extrinsics, intrinsics, background, views_per_chunk):
    """`rasterize(gaussians, extrinsics, intrinsics, background)` over chunks of `views_per_chunk` views,
    joined along the view axis. With gradients, each chunk is checkpointed: only its inputs are kept and its
    intermediates are recomputed in backward, so both passes hold one chunk's working memory (plus the
    images). Without, each chunk is copied into images allocated once: no concatenation copy, and no
    long-lived chunk-sized pieces between the chunks' temporaries to fragment the heap."""
    views = extrinsics.shape[1]
    if views_per_chunk >= views:
        return rasterize(gaussians, extrinsics, intrinsics, background)

    def chunk(start: int) -> tuple[Tensor, Tensor, Tensor]:
        views_slice = slice(start, start + views_per_chunk)
        output = rasterize(gaussians, extrinsics[:, views_slice], intrinsics[:, views_slice], background)
        return output.color, output.depth, output.alpha

    starts = range(0, views, views_per_chunk)
    inputs = (*(getattr(gaussians, name) for name in _GAUSSIAN_FIELDS), extrinsics, intrinsics, background)
    if torch.is_grad_enabled() and any(tensor.requires_grad for tensor in inputs):
        parts = [checkpoint(chunk, start, use_reentrant=False, preserve_rng_state=False) for start in starts]
        color, depth, alpha = (torch.cat(part, dim=1) for part in zip(*parts))
        return RenderOutput(color=color, depth=depth, alpha=alpha)
    images = None
    for start in starts:
        part = chunk(start)
        if images is None:
            images = [piece.new_empty(piece.shape[0], views, *piece.shape[2:]) for piece in part]
        for image, piece in zip(images, part):
            image[:, start : start + piece.shape[1]] = piece
        del part, piece  # free this chunk before the next one is rendered
    color, depth, alpha = images
    return RenderOutput(color=color, depth=depth, alpha=alpha)


# --------------------------------------------------------------------------------------------------
# Projection (torch backend)
# --------------------------------------------------------------------------------------------------


@dataclass
class ProjectedGaussians:
    """Per (image, Gaussian) screen-space quantities, images = batch x view flattened."""

    means_2d: Float[Tensor, "image gaussian 2"]
    conics: Float[Tensor, "image gaussian 3"]  # upper triangle (a, b, c) of Σ'⁻¹
    depths: Float[Tensor, "image gaussian"]
    colors: Float[Tensor, "image gaussian 3"]
    opacities: Float[Tensor, "image gaussian"]
    extents: Float[Tensor, "image gaussian 2"]  # half sizes of the box where α >= 1/255, pixels
    visible: Bool[Tensor, "image gaussian"]


def project_gaussians(
    gaussians: Gaussians,
    extrinsics: Float[Tensor, "batch view 4 4"],
    intrinsics: Float[Tensor, "batch view 3 3"],
    image_shape: tuple[int, int],
    near: float,
    far: float,
    sh_degree: int,
) -> ProjectedGaussians:
    """Steps 1, 2 and 5 of the module docstring, vectorised over batch x view x Gaussian."""
    height, width = image_shape
    batch, views = extrinsics.shape[:2]
    # Rigid inverse of camera-to-world (checked rigid): world -> camera rotation and translation.
    rotation = extrinsics[..., :3, :3].transpose(-1, -2)  # [B, V, 3, 3]
    translation = -(rotation @ extrinsics[..., :3, 3:4]).squeeze(-1)  # [B, V, 3]
    means_camera = torch.einsum("bvij,bnj->bvni", rotation, gaussians.means) + translation[:, :, None]
    x, y, z = means_camera.unbind(-1)
    in_range = (z > near) & (z < far)
    z = torch.where(in_range, z, torch.ones_like(z))  # culled ones get a harmless depth (no NaN gradients)

    fx = intrinsics[..., 0, 0, None] * width  # [B, V, 1]
    fy = intrinsics[..., 1, 1, None] * height
    cx = intrinsics[..., 0, 2, None] * width
    cy = intrinsics[..., 1, 2, None] * height
    means_2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)

    # EWA (Zwicker et al. 2002): J = ∂π/∂x at the mean, x/z and y/z pulled back into 1.3x the frustum.
    slope_x = torch.clamp(
        x / z,
        min=-(cx + FRUSTUM_MARGIN * 0.5 * width) / fx,
        max=(width - cx + FRUSTUM_MARGIN * 0.5 * width) / fx,
    )
    slope_y = torch.clamp(
        y / z,
        min=-(cy + FRUSTUM_MARGIN * 0.5 * height) / fy,
        max=(height - cy + FRUSTUM_MARGIN * 0.5 * height) / fy,
    )
    # Rows of J·W (W = world->camera rotation): J = [[fx/z, 0, -fx·x/z²], [0, fy/z, -fy·y/z²]].
    row_x = (fx / z)[..., None] * (rotation[:, :, None, 0] - slope_x[..., None] * rotation[:, :, None, 2])
    row_y = (fy / z)[..., None] * (rotation[:, :, None, 1] - slope_y[..., None] * rotation[:, :, None, 2])
    projection = torch.stack([row_x, row_y], dim=-2)  # [B, V, N, 2, 3]
    # Σ = (R S)(R S)ᵀ, so Σ' = (J W R S)(J W R S)ᵀ: project the 3x3 factor, never form Σ.
    factor = quaternion_to_matrix(gaussians.rotations) * gaussians.scales[..., None, :]  # [B, N, 3, 3]
    projected_factor = projection @ factor[:, None]  # [B, V, N, 2, 3]
    covariance_2d = projected_factor @ projected_factor.transpose(-1, -2)
    var_x = covariance_2d[..., 0, 0] + EPS2D
    var_y = covariance_2d[..., 1, 1] + EPS2D
    cov_xy = covariance_2d[..., 0, 1]
    determinant = var_x * var_y - cov_xy * cov_xy
    opacities = gaussians.opacities[:, None].expand(-1, views, -1)
    visible = in_range & (determinant > 0) & (opacities >= ALPHA_MIN)
    determinant = torch.where(visible, determinant, torch.ones_like(determinant))
    conics = torch.stack([var_y / determinant, -cov_xy / determinant, var_x / determinant], dim=-1)

    with torch.no_grad():
        # α >= 1/255  <=>  ½dᵀΣ'⁻¹d <= log(255·o): an ellipse whose bounding box has half sizes
        # sqrt(2·log(255·o)·Σ'_xx), sqrt(2·log(255·o)·Σ'_yy). 1% slack keeps rounding on the safe side.
        level = 2.02 * torch.log(opacities.clamp_min(ALPHA_MIN) / ALPHA_MIN)
        extents = torch.stack([(level * var_x).sqrt(), (level * var_y).sqrt()], dim=-1) + 0.01
        on_screen = (
            (means_2d[..., 0] + extents[..., 0] > 0)
            & (means_2d[..., 0] - extents[..., 0] < width)
            & (means_2d[..., 1] + extents[..., 1] > 0)
            & (means_2d[..., 1] - extents[..., 1] < height)
        )
        visible = visible & on_screen

    camera_centres = extrinsics[..., :3, 3]  # [B, V, 3]
    directions = gaussians.means[:, None] - camera_centres[:, :, None]
    colors = eval_sh(gaussians.harmonics[:, None], directions, sh_degree)

    def images(t: Tensor) -> Tensor:
        return t.flatten(0, 1)

    return ProjectedGaussians(
        means_2d=images(means_2d),
        conics=images(conics),
        depths=images(z),
        colors=images(colors),
        opacities=images(opacities),
        extents=images(extents),
        visible=images(visible),
    )


# --------------------------------------------------------------------------------------------------
# Tile binning and compositing (torch backend)
# --------------------------------------------------------------------------------------------------


@dataclass
class TileBins:
    """Which Gaussians touch which tile, each tile's list sorted front to back, and the chunks.

    `pair_gaussians` holds flat indices (image·G + gaussian) tile after tile; tile t's list is
    pair_gaussians[tile_start[t] : tile_start[t] + tile_count[t]]. Tiles are numbered image by image,
    row-major. `occupied` lists the tiles with a non-empty list, longest first; each chunk is a run
    (start, end, longest list in it) of it: tiles of similar list length go together so the padded
    [tiles, list, pixels] blocks waste little."""

    tile_size: int
    tiles_x: int
    tiles_y: int
    images: int
    pair_gaussians: Int[Tensor, " pair"]
    tile_start: Int[Tensor, " tile"]
    tile_count: Int[Tensor, " tile"]
    occupied: Int[Tensor, " occupied"]
    chunk_bounds: list[tuple[int, int, int]]

    @property
    def tiles(self) -> int:
        return self.images * self.tiles_y * self.tiles_x

    @property
    def chunks(self) -> list[tuple[Tensor, int]]:
        """(tile ids, longest list) of each chunk."""
        return [(self.occupied[start:end], longest) for start, end, longest in self.chunk_bounds]


@torch.no_grad()
def bin_into_tiles(
    projected: ProjectedGaussians, image_shape: tuple[int, int], config: TorchRasterizerConfig
) -> TileBins:
    height, width = image_shape
    size = config.tile_size
    images, count = projected.depths.shape
    tiles_x, tiles_y = math.ceil(width / size), math.ceil(height / size)
    device = projected.depths.device

    flat = projected.visible.flatten().nonzero().squeeze(-1)
    # Front to back once; pairs are emitted in this order, so a stable sort by tile keeps it per tile.
    # Depths are positive floats, whose float32 bit patterns sort like the values and sort faster as
    # int32 (float32 ordering, as gsplat's depth keys).
    depth_bits = projected.depths.flatten()[flat].float().view(torch.int32)
    flat = flat[torch.sort(depth_bits, stable=True).indices]
    centre = projected.means_2d.detach().flatten(0, 1).index_select(0, flat)
    extent = projected.extents.flatten(0, 1).index_select(0, flat)
    # Pixels whose centre (index + 0.5) lies within the box, then the tiles holding them.
    first = torch.ceil(centre - extent - 0.5).clamp_min(0)
    last = torch.floor(centre + extent - 0.5)
    last = torch.minimum(last, last.new_tensor([width - 1, height - 1]))
    tile_first = torch.div(first, size, rounding_mode="floor").long()
    tile_last = torch.div(last, size, rounding_mode="floor").long()
    span = (tile_last - tile_first + 1).clamp_min(0)
    span_x = span[:, 0].contiguous()
    per_gaussian = span_x * span[:, 1]
    image = torch.div(flat, count, rounding_mode="floor")
    first_tile = (image * tiles_y + tile_first[:, 1]) * tiles_x + tile_first[:, 0]
    # Expand each Gaussian into the tiles of its box, row by row.
    owner = torch.repeat_interleave(torch.arange(len(flat), device=device), per_gaussian)
    rank = torch.arange(len(owner), device=device) - (torch.cumsum(per_gaussian, 0) - per_gaussian)[owner]
    owner_span_x = span_x[owner]
    row = torch.div(rank, owner_span_x, rounding_mode="floor")
    tile = first_tile[owner] + row * tiles_x + (rank - row * owner_span_x)
    # int32 keys sort about twice as fast; the stable sort keeps each tile's list front to back.
    tile, order = torch.sort(tile.int(), stable=True)
    pair_gaussians = flat[owner][order]

    total_tiles = images * tiles_y * tiles_x
    tile_count = torch.bincount(tile, minlength=total_tiles)
    tile_start = torch.cumsum(tile_count, 0) - tile_count

    pixels = size * size
    occupied = tile_count.nonzero().squeeze(-1)
    occupied = occupied[torch.argsort(tile_count[occupied], descending=True, stable=True)]
    lengths = tile_count[occupied].tolist()
    # A chunk takes tiles of similar list length (longest/shortest <= 1/`fill`) within the element budget.
    negated = [-length for length in lengths]
    chunk_bounds, i = [], 0
    while i < len(lengths):
        longest = lengths[i]
        similar = bisect.bisect_right(negated, -math.ceil(config.chunk_fill * longest)) - i
        n = max(1, min(similar, config.chunk_elements // (longest * pixels)))
        chunk_bounds.append((i, i + n, longest))
        i += n
    return TileBins(
        size, tiles_x, tiles_y, images, pair_gaussians, tile_start, tile_count, occupied, chunk_bounds
    )


@dataclass
class _ChunkTerms:
    """Per-pixel terms of one chunk, shaped [tiles, list, rows, cols] unless noted."""

    gaussians: Tensor  # [tiles, list] flat Gaussian index (padding repeats a real one, with α = 0)
    dx: Tensor  # [tiles, list, cols]  μ'_x - pixel x
    dy: Tensor  # [tiles, list, rows]  μ'_y - pixel y
    alpha: Tensor  # min(0.999, o·exp(-σ)), 0 below 1/255
    one_minus_alpha: Tensor
    transmittance: Tensor  # T_i = Π_{j<i} (1 - α_j), zeroed from where the pixel stops
    weight: Tensor  # α_i T_i


def _chunk_terms(bins: TileBins, tiles: Tensor, longest: int, table: Tensor) -> tuple[_ChunkTerms, Tensor]:
    """Recompute a chunk from the per-Gaussian table (see `_TileComposite`); also return its rows."""
    size = bins.tile_size
    slot = torch.arange(longest, device=tiles.device)
    in_list = slot < bins.tile_count[tiles, None]
    position = (bins.tile_start[tiles, None] + slot).clamp_max(max(len(bins.pair_gaussians) - 1, 0))
    # index_select gathers whole rows, several times faster than advanced indexing on the CPU.
    gaussians = bins.pair_gaussians.index_select(0, position.flatten()).view(position.shape)  # [T, K]
    rows = table.index_select(0, gaussians.flatten()).view(*gaussians.shape, -1)  # [T, K, 6 + F]
    mx, my, a, b, c, log_opacity = rows[..., :6].unbind(-1)
    log_opacity = log_opacity.masked_fill(~in_list, -math.inf)  # padding draws nothing

    in_image = tiles % (bins.tiles_x * bins.tiles_y)
    offsets = torch.arange(size, device=tiles.device, dtype=table.dtype) + 0.5
    pixel_x = (in_image % bins.tiles_x * size)[:, None] + offsets  # [T, cols]
    pixel_y = (torch.div(in_image, bins.tiles_x, rounding_mode="floor") * size)[:, None] + offsets
    dx = mx[..., None] - pixel_x[:, None]  # [T, K, cols]
    dy = my[..., None] - pixel_y[:, None]  # [T, K, rows]
    # log α = log o - σ with σ = ½a·dx² + b·dx·dy + ½c·dy²: separable but for the cross term, so it is
    # built from row and column vectors in two full-size passes.
    row_term = log_opacity[..., None] - 0.5 * c[..., None] * dy * dy
    column_term = -0.5 * a[..., None] * dx * dx
    alpha = row_term[..., :, None] + column_term[..., None, :]
    alpha.addcmul_((-b[..., None] * dy)[..., :, None], dx[..., None, :]).exp_()
    alpha.clamp_max_(ALPHA_MAX).masked_fill_(alpha < ALPHA_MIN, 0.0)
    one_minus_alpha = 1 - alpha
    # Transmittance before (rows 0..K-1) and after (rows 1..K) each Gaussian, in one buffer.
    shape = alpha.shape
    transmittances = alpha.new_empty(shape[0], shape[1] + 1, *shape[2:])
    transmittances[:, 0] = 1
    torch.cumprod(one_minus_alpha, dim=1, out=transmittances[:, 1:])
    transmittance = transmittances[:, :-1]
    # Stop *before* the Gaussian that would bring T to 1e-4 or below (gsplat); all later ones stop too.
    transmittance.masked_fill_(transmittances[:, 1:] <= TRANSMITTANCE_MIN, 0.0)
    weight = alpha * transmittance
    return _ChunkTerms(gaussians, dx, dy, alpha, one_minus_alpha, transmittance, weight), rows


def _to_tiles(image: Tensor, bins: TileBins) -> Tensor:
    """[I, F, H, W] -> [tiles, F, pixels], zero-padded to whole tiles."""
    size, height, width = bins.tile_size, image.shape[2], image.shape[3]
    padded = torch.nn.functional.pad(image, (0, bins.tiles_x * size - width, 0, bins.tiles_y * size - height))
    tiled = padded.unflatten(2, (bins.tiles_y, size)).unflatten(4, (bins.tiles_x, size))
    return tiled.permute(0, 2, 4, 1, 3, 5).reshape(bins.tiles, image.shape[1], size * size)


def _from_tiles(tiled: Tensor, bins: TileBins, image_shape: tuple[int, int]) -> Tensor:
    """[tiles, F, pixels] -> [I, F, H, W]."""
    size = bins.tile_size
    grid = tiled.reshape(bins.images, bins.tiles_y, bins.tiles_x, tiled.shape[1], size, size)
    full = grid.permute(0, 3, 1, 4, 2, 5).reshape(bins.images, -1, bins.tiles_y * size, bins.tiles_x * size)
    return full[:, :, : image_shape[0], : image_shape[1]]


class _TileComposite(torch.autograd.Function):
    """Steps 3-4 over binned tiles, for a per-Gaussian table [M, 6 + F] of
    (μ'_x, μ'_y, a, b, c, log o, features...) with (a, b, c) the conic. Forward keeps only the table and
    the bins' tensors (as saved tensors, so that a checkpoint around it frees them too); backward
    recomputes each chunk's per-pixel terms and applies the compositing gradient
        ∂C/∂α_k = T_k f_k - (Σ_{i>k} w_i f_i) / (1 - α_k)    (f = composited features, w_i = α_i T_i)
    so memory in both passes is bounded by the chunk size. Returns the composited features [I, F, H, W].
    Tiles are kept channel-first ([tiles, F, pixels]): the small batched matrix products are several times
    faster in the layouts used below than in the transposed ones."""

    @staticmethod
    def forward(ctx, table, bins: TileBins, image_shape):
        out = table.new_zeros(bins.tiles, table.shape[-1] - 6, bins.tile_size**2)
        for tiles, longest in bins.chunks:
            terms, rows = _chunk_terms(bins, tiles, longest, table)
            features = rows[..., 6:].transpose(1, 2)  # [T, F, K]
            out.index_copy_(0, tiles, torch.bmm(features, terms.weight.flatten(2)))
        ctx.save_for_backward(table, bins.pair_gaussians, bins.tile_start, bins.tile_count, bins.occupied)
        ctx.layout = (bins.tile_size, bins.tiles_x, bins.tiles_y, bins.images, bins.chunk_bounds)
        return _from_tiles(out, bins, image_shape)

    @staticmethod
    def backward(ctx, grad_image):
        table, pair_gaussians, tile_start, tile_count, occupied = ctx.saved_tensors
        size, tiles_x, tiles_y, images, chunk_bounds = ctx.layout
        bins = TileBins(
            size, tiles_x, tiles_y, images, pair_gaussians, tile_start, tile_count, occupied, chunk_bounds
        )
        grad_tiles = _to_tiles(grad_image, bins)
        grad_table = torch.zeros_like(table)
        for tiles, longest in bins.chunks:
            t, rows = _chunk_terms(bins, tiles, longest, table)
            shape = t.alpha.shape  # [T, K, rows, cols]
            grad_pixels = grad_tiles.index_select(0, tiles)  # [T, F, P]
            grad_features = torch.bmm(grad_pixels, t.weight.flatten(2).transpose(1, 2)).transpose(1, 2)
            # g_k = ∂L/∂w_k: the pixel's gradient dotted with what Gaussian k composites.
            per_weight = torch.bmm(rows[..., 6:], grad_pixels).view(shape)
            behind = (t.weight * per_weight).cumsum_(1)
            behind = behind.neg_().add_(behind[:, -1:].neg())  # Σ_{i>k} w_i g_i = total - inclusive sum
            grad_alpha = per_weight.mul_(t.transmittance).sub_(behind.div_(t.one_minus_alpha))
            # α = o·exp(-σ) where unclamped: ∂L/∂log o = ∂L/∂α · α = -∂L/∂σ.
            grad_log_opacity = grad_alpha.mul_(t.alpha).masked_fill_(t.alpha >= ALPHA_MAX, 0.0)
            a, b, c = rows[..., 2:5].unbind(-1)
            over_rows = grad_log_opacity.sum(2)  # [T, K, cols]
            over_cols = grad_log_opacity.sum(3)  # [T, K, rows]
            cross = (grad_log_opacity @ t.dx[..., None]).squeeze(-1)  # Σ_cols g·dx, [T, K, rows]
            # ∂σ/∂μ'_x = a·dx + b·dy, ∂σ/∂μ'_y = b·dx + c·dy, ∂σ/∂(a, b, c) = (½dx², dx·dy, ½dy²).
            sum_x = -(over_rows * t.dx).sum(-1)
            sum_y = -(over_cols * t.dy).sum(-1)
            grad_rows = torch.cat(
                [
                    torch.stack(
                        [
                            a * sum_x + b * sum_y,
                            b * sum_x + c * sum_y,
                            -0.5 * (over_rows * t.dx * t.dx).sum(-1),
                            -(cross * t.dy).sum(-1),
                            -0.5 * (over_cols * t.dy * t.dy).sum(-1),
                            grad_log_opacity.sum((2, 3)),
                        ],
                        dim=-1,
                    ),
                    grad_features,
                ],
                dim=-1,
            )
            # Padding slots carry exact zeros, so they can be accumulated without masking.
            grad_table.index_add_(0, t.gaussians.flatten(), grad_rows.flatten(0, 1))
        return grad_table, None, None


def _render_torch(gaussians, extrinsics, intrinsics, background, image_shape, near, far, sh_degree, config):
    batch, views = extrinsics.shape[:2]
    height, width = image_shape
    projected = project_gaussians(gaussians, extrinsics, intrinsics, image_shape, near, far, sh_degree)
    bins = bin_into_tiles(projected, image_shape, config)
    # Composite colour, depth and 1 (-> alpha) together. log o of culled Gaussians is never read; the
    # clamp keeps its gradient finite.
    table = torch.cat(
        [
            projected.means_2d,
            projected.conics,
            projected.opacities.clamp_min(ALPHA_MIN).log()[..., None],
            projected.colors,
            projected.depths[..., None],
            torch.ones_like(projected.depths[..., None]),
        ],
        dim=-1,
    )
    image = _TileComposite.apply(table.flatten(0, 1), bins, image_shape)  # [I, 5, H, W]
    alpha = image[:, 4].clone()  # not a view, so the 5-channel image is freed once colour and depth are made
    background = background[:, None].expand(-1, views, -1).flatten(0, 1)  # [I, 3]
    color = image[:, :3] + (1 - alpha)[:, None] * background[:, :, None, None]
    depth = image[:, 3] / alpha.clamp_min(DEPTH_ALPHA_FLOOR)
    return RenderOutput(
        color=color.unflatten(0, (batch, views)),
        depth=depth.unflatten(0, (batch, views)),
        alpha=alpha.unflatten(0, (batch, views)),
    )


# --------------------------------------------------------------------------------------------------
# gsplat backend (CUDA)
# --------------------------------------------------------------------------------------------------


def _render_gsplat(gaussians, extrinsics, intrinsics, background, image_shape, near, far, sh_degree):
    """gsplat.rasterization (>= 1.4) per batch element: viewmats = world-to-camera [V, 4, 4] (OpenCV axes,
    the rigid inverse of our camera-to-world), Ks in pixels [V, 3, 3], quaternions wxyz (gsplat normalises
    them), opacities [N], SH coefficients [N, K, 3] (only the (sh_degree + 1)² used are passed),
    backgrounds [V, 3]. render_mode "RGB+ED" returns [V, H, W, 4]: colour + background·T, then depth
    already divided by max(alpha, 1e-10) (gsplat gives the depth channel a zero background); alphas
    [V, H, W, 1]. "classic" = no antialiasing compensation, as our torch backend. packed=True keeps
    per-(view, Gaussian) data for the visible pairs only; packed=False would copy the SH coefficients of
    every Gaussian for every view (~10 GB at 49 views × 691k Gaussians, degree 4)."""
    import gsplat

    height, width = image_shape
    views = extrinsics.shape[1]
    # Cameras and background in float32 like the Gaussians (the kernels read float32 buffers only).
    extrinsics, intrinsics, background = extrinsics.float(), intrinsics.float(), background.float()
    pixel_scale = intrinsics.new_tensor([width, height, 1.0])[:, None]  # row 0 x W, row 1 x H
    rotation = extrinsics[..., :3, :3].transpose(-1, -2)
    world_to_camera = torch.cat(
        [torch.cat([rotation, -rotation @ extrinsics[..., :3, 3:]], dim=-1), extrinsics[..., 3:, :]], dim=-2
    )  # the rigid inverse (extrinsics are checked rigid), as the torch backend uses
    # gsplat gathers the coefficients per visible pair: pass only the bands it evaluates.
    harmonics = gaussians.harmonics[..., : (sh_degree + 1) ** 2, :].contiguous()
    colors, depths, alphas = [], [], []
    for b in range(extrinsics.shape[0]):
        rendered, alpha, _ = gsplat.rasterization(
            means=gaussians.means[b],
            quats=gaussians.rotations[b],
            scales=gaussians.scales[b],
            opacities=gaussians.opacities[b],
            colors=harmonics[b],
            viewmats=world_to_camera[b],
            Ks=intrinsics[b] * pixel_scale,
            width=width,
            height=height,
            near_plane=near,
            far_plane=far,
            eps2d=EPS2D,
            sh_degree=sh_degree,
            backgrounds=background[b].expand(views, 3).contiguous(),
            render_mode="RGB+ED",
            rasterize_mode="classic",
            packed=True,
        )
        colors.append(rendered[..., :3].permute(0, 3, 1, 2))
        depths.append(rendered[..., 3])
        alphas.append(alpha[..., 0])
    return RenderOutput(color=torch.stack(colors), depth=torch.stack(depths), alpha=torch.stack(alphas))
