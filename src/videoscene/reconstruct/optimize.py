"""Fit 3D Gaussians to a generated video: the 3D Gaussian Splatting optimisation (Kerbl et al. 2023), started
from the feed-forward prior's Gaussians instead of an SfM point cloud, with a per-frame confidence weight.

Per step, one frame f of the video (epochs of seeded permutations, as 3DGS draws one camera per step) is
rendered at its camera and compared with the generated frame:

    L = w_f · ((1 − λ) · L1 + λ · (1 − SSIM)),   λ = 0.2 (3DGS, Eq. 7)

**Confidence weight** (the idea of ReconX: generated frames far from the real input views are less
reliable, so they count less): w_f = exp(−d_f / τ), where d_f ∈ [0, ½] is the distance along the camera
path from frame f to the nearer of the two context frames (the first and the last), normalised by the
path's length (the arc length of the camera centres; the frame index when the centres do not move). The
context frames get w = 1; with the default τ = 0.5 the middle frame gets e⁻¹ ≈ 0.37. τ = inf weighs all
frames alike (what `recon-gt` uses: ground truth needs no discount).

**Optimiser**: Adam (ε = 1e-15) with 3DGS's per-parameter learning rates: means 1.6e-4 × extent decayed
exponentially to 1.6e-6 × extent over the run, SH band 0 2.5e-3 and higher bands 2.5e-3 / 20, opacity
logits 0.05, log-scales 5e-3, quaternions 1e-3. The scene extent is 3DGS's: 1.1 × the largest distance of a
camera centre from their mean (for cameras that barely move, 0.1 × the Gaussians' median distance from
them, so that the means still move).

**Density control** (densify.py) follows 3DGS's schedule, which densifies every 100 of 30 000 steps from
step 500 to 15 000 and resets the opacities every 3000 steps in that window. Densification is scaled to
the run: every `densify_every` × steps from `densify_from` × steps until `densify_until` × steps (defaults
5 %, 10 %, 60 %: ten rounds). The opacity reset keeps 3DGS's interval in steps (`opacity_reset_every`,
3000), because the Gaussians need hundreds of steps to win their opacity back: on the bundled demo's video
(fitted to every other frame for 300 steps, scored on the others) a reset at step 90 ended at 35.6 dB,
against 37.4 dB without. So only runs of more than 5000 steps reset (3000 < 60 % of the steps). The count
never exceeds the cap (`DensifyConfig.max_gaussians`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from videoscene.errors import VideoSceneError
from videoscene.gaussians.rasterizer import render
from videoscene.metrics.image import psnr, ssim
from videoscene.reconstruct.densify import DensifyConfig, GaussianParameters
from videoscene.types import Cameras, Gaussians

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconstructConfig:
    steps: int = 300
    lambda_dssim: float = 0.2  # λ of the D-SSIM term (3DGS)
    confidence_tau: float = 0.5  # τ of the confidence weight exp(−d/τ); math.inf: every frame weighs 1
    # Adam learning rates (3DGS); the means' are multiplied by the scene extent
    lr_means: float = 1.6e-4
    lr_means_final: float = 1.6e-6
    lr_sh0: float = 2.5e-3
    lr_sh_rest: float = 2.5e-3 / 20
    lr_opacity: float = 0.05
    lr_scales: float = 5e-3
    lr_rotations: float = 1e-3
    # Density control, as fractions of `steps` (module docstring)
    densify_from: float = 0.1
    densify_until: float = 0.6
    densify_every: float = 0.05
    opacity_reset_every: int = 3000  # steps (3DGS); 0: never
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    log_every: int = 10  # loss-curve points every this many steps
    backend: str = "auto"  # rasterizer: gsplat for float32 CUDA tensors when it loads, else torch

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise VideoSceneError(f"reconstruction needs at least one step, got {self.steps}")
        if not 0 <= self.lambda_dssim <= 1:
            raise VideoSceneError(f"lambda_dssim must be in [0, 1], got {self.lambda_dssim}")
        if not self.confidence_tau > 0:
            raise VideoSceneError(f"the confidence weight's tau must be > 0, got {self.confidence_tau}")
        if self.densify.max_gaussians is not None and self.densify.max_gaussians < 1:
            raise VideoSceneError(f"max_gaussians must be >= 1, got {self.densify.max_gaussians}")
        if self.log_every < 1:
            raise VideoSceneError(f"log_every must be >= 1, got {self.log_every}")

    def schedule(self) -> tuple[int, int, int, int]:
        """(first densification step, last + 1, interval, opacity-reset interval) in steps."""
        start = max(1, round(self.densify_from * self.steps))
        stop = round(self.densify_until * self.steps)
        every = max(1, round(self.densify_every * self.steps))
        return start, stop, every, max(0, self.opacity_reset_every)


def confidence_weights(
    extrinsics: Float[Tensor, "frame 4 4"], tau: float = ReconstructConfig.confidence_tau
) -> Float[Tensor, " frame"]:
    """w_f = exp(−d_f / τ) with d_f the path distance from frame f to the nearer end (the context frames),
    normalised by the path length (module docstring). Both ends get 1."""
    centres = extrinsics[:, :3, 3].double()
    arc = torch.cat([centres.new_zeros(1), (centres[1:] - centres[:-1]).norm(dim=-1).cumsum(0)])
    if len(arc) < 2 or arc[-1] <= 1e-9 * (1 + centres.abs().max()):  # a camera that does not move
        arc = torch.arange(len(centres), dtype=torch.float64)
    position = arc / arc[-1].clamp_min(1e-12)
    distance = torch.minimum(position, 1 - position).clamp_min(0)
    return torch.exp(-distance / tau).to(extrinsics.dtype)


def scene_extent(cameras: Cameras, means: Float[Tensor, "gaussian 3"]) -> float:
    """3DGS's scene extent: 1.1 × the largest distance of a camera centre from their mean; for cameras
    that barely move, 0.1 × the median distance of the Gaussians from them."""
    centres = cameras.extrinsics[:, :3, 3].double()
    middle = centres.mean(0)
    extent = 1.1 * float((centres - middle).norm(dim=-1).max())
    fallback = 0.1 * float((means.double() - middle.to(means.device)).norm(dim=-1).median())
    return extent if extent > 1e-3 * fallback else max(fallback, 1e-6)


@dataclass
class FitResult:
    gaussians: Gaussians  # unbatched [G, ...], detached
    renders: Float[Tensor, "frame 3 height width"]  # the final Gaussians at the training cameras
    weights: Float[Tensor, " frame"]  # the confidence weights the frames were trained with
    psnr: list[float]  # final render vs training frame, per frame
    ssim: list[float]
    initial_psnr: list[float]  # the starting Gaussians vs training frame, per frame
    loss_curve: list[dict]  # {"step", "loss" (mean weighted loss since the previous point), "gaussians"}
    densify_events: list[dict]  # {"step", "cloned", "split", "pruned", "gaussians"} and opacity resets
    extent: float
    seconds: float
    initial_count: int


def render_views(
    gaussians: Gaussians,
    cameras: Cameras,
    image_shape: tuple[int, int],
    background: Float[Tensor, " 3"],
    backend: str = "auto",
) -> Float[Tensor, "frame 3 height width"]:
    """Unbatched Gaussians rendered at each camera, without gradients, clamped to [0, 1]."""
    device = gaussians.means.device
    with torch.no_grad():
        output = render(
            gaussians.to(device).select(None),
            cameras.extrinsics.to(device)[None],
            cameras.intrinsics.to(device)[None],
            image_shape,
            background.to(device)[None],
            backend=backend,
        )
    return output.color[0].clamp(0, 1)


def fit_gaussians(
    initial: Gaussians,
    frames: Float[Tensor, "frame 3 height width"],
    cameras: Cameras,
    weights: Float[Tensor, " frame"],
    config: ReconstructConfig,
    background: Float[Tensor, " 3"] | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> FitResult:
    """Optimise `initial` (unbatched [G, ...]) on `frames` at `cameras` with per-frame `weights` (module
    docstring). Deterministic for a seed on one device."""
    # 1. Check inputs.
    count = len(frames)
    if count < 1 or len(cameras) != count or len(weights) != count:
        raise VideoSceneError(
            f"need one camera and one weight per frame, got {count} frames, {len(cameras)} cameras and "
            f"{len(weights)} weights"
        )
    if initial.means.ndim != 2 or len(initial) < 1:
        raise VideoSceneError(f"need unbatched Gaussians [G, 3] with G >= 1, got {list(initial.means.shape)}")
    device = torch.device(device)
    image_shape = tuple(frames.shape[-2:])
    frames = frames.to(device, torch.float32)
    extrinsics, intrinsics = cameras.extrinsics.to(device, torch.float32), cameras.intrinsics.to(device)
    intrinsics = intrinsics.float()
    background = (torch.zeros(3) if background is None else background).to(device, torch.float32)
    weights = weights.to(device, torch.float32)

    # 2. Parameters, the scene extent and the learning rates (3DGS).
    start_time = time.perf_counter()
    # SH bands above 3 are dropped: MVSplat's preset predicts band 4, which its renderer never evaluates.
    initial = replace(
        initial.to(device, torch.float32), harmonics=initial.harmonics[:, :16].to(device).float()
    )
    extent = scene_extent(Cameras(extrinsics, intrinsics), initial.means)
    params = GaussianParameters(
        initial,
        {
            "means": config.lr_means * extent,
            "log_scales": config.lr_scales,
            "rotations": config.lr_rotations,
            "sh0": config.lr_sh0,
            "sh_rest": config.lr_sh_rest,
            "opacity_logits": config.lr_opacity,
        },
    )
    cap = config.densify.max_gaussians or 2 * len(initial)
    densify_start, densify_stop, densify_every, reset_every = config.schedule()
    generator = torch.Generator().manual_seed(seed)
    initial_renders = render_views(
        initial, Cameras(extrinsics, intrinsics), image_shape, background, config.backend
    )
    initial_psnr = psnr(initial_renders, frames).tolist()

    # 3. Optimise, one frame per step.
    loss_curve, events, interval_losses = [], [], []
    order: list[int] = []
    bar = tqdm(range(config.steps), desc="reconstruct", unit="step", disable=not progress, leave=False)
    for step in bar:
        decay = step / max(config.steps - 1, 1)  # log-linear from the initial to the final rate
        params.set_learning_rate(
            "means", extent * config.lr_means ** (1 - decay) * config.lr_means_final**decay
        )
        if not order:
            order = torch.randperm(count, generator=generator).tolist()
        f = order.pop()
        rendered = render(
            params.gaussians().select(None),
            extrinsics[None, f : f + 1],
            intrinsics[None, f : f + 1],
            image_shape,
            background[None],
            backend=config.backend,
        ).color[0]
        target = frames[f : f + 1]
        l1 = (rendered - target).abs().mean()
        d_ssim = 1 - ssim(rendered, target).mean()
        loss = weights[f] * ((1 - config.lambda_dssim) * l1 + config.lambda_dssim * d_ssim)
        loss.backward()
        in_window = densify_start <= step < densify_stop
        if in_window:
            params.accumulate_view_gradient(extrinsics[f], intrinsics[f], image_shape)
        params.optimizer.step()
        params.optimizer.zero_grad(set_to_none=True)
        interval_losses.append(loss.item())
        done = step + 1
        if in_window and done > densify_start and done % densify_every == 0:
            counts = params.densify_and_prune(
                config.densify,
                extent,
                cap,
                prune_large=reset_every > 0 and done > reset_every,
                generator=generator,
            )
            events.append({"step": done, **counts, "gaussians": len(params)})
        if reset_every and done < densify_stop and done % reset_every == 0:
            params.reset_opacity()
            events.append({"step": done, "opacity_reset": True, "gaussians": len(params)})
        if done % config.log_every == 0 or done == config.steps:
            loss_curve.append(
                {"step": done, "loss": sum(interval_losses) / len(interval_losses), "gaussians": len(params)}
            )
            interval_losses = []
            bar.set_postfix(loss=f"{loss_curve[-1]['loss']:.4f}", gaussians=len(params))
    bar.close()

    # 4. The result, rendered at every training camera.
    with torch.no_grad():
        gaussians = params.gaussians()
    renders = render_views(
        gaussians, Cameras(extrinsics, intrinsics), image_shape, background, config.backend
    )
    seconds = time.perf_counter() - start_time
    logger.debug("fitted %d Gaussians in %.1fs", len(gaussians), seconds)
    return FitResult(
        gaussians=gaussians,
        renders=renders.cpu(),
        weights=weights.cpu(),
        psnr=psnr(renders, frames).tolist(),
        ssim=ssim(renders, frames).tolist(),
        initial_psnr=initial_psnr,
        loss_curve=loss_curve,
        densify_events=events,
        extent=extent,
        seconds=seconds,
        initial_count=len(initial),
    )
