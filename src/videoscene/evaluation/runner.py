"""The evaluation loop: every scene of an evaluation index, every method, scored against ground truth.

Per scene (docs/evaluation.md):
1. read the context and target frames, bring them to the model's resolution (centre crop to its aspect
   ratio, resize; intrinsics follow);
2. plan which generated frame stands for which target and build the F-camera path through them
   (evaluation/protocol.py);
3. per method: generate the F frames (timed: `seconds`), then score
   - PSNR / SSIM (/ LPIPS with weights) of the frames at the held-out target slots against the targets,
   - 3D consistency: SIFT matches between the frames at the target cameras, pairs (k, k + gap) in path
     order, scored against those cameras' epipolar geometry (median Sampson distance in px, share within
     1 px) and by RANSAC (inlier ratio), pooled over the scene's pairs (metrics/consistency.py),
   - temporal consistency: flow-warping error between consecutive frames of the whole video
     (metrics/temporal.py);
   - with ground-truth depth in the split (`<data>/depth/<key>.npz`): PSNR / SSIM apart on the held-out
     target pixels that a context view sees and on those neither sees (geometry/visibility.py; the masks
     are computed at the stored resolution and follow the images' crop and resize), and the unseen share;
   - for methods that build a 3D scene (`prior`, `recon-*`) and index entries with `holdout` frames:
     PSNR / SSIM of their renders at the holdout cameras, which no method generates (and apart on seen and
     unseen pixels, with depth);
   - for those methods, the 3D consistency (as above) of their renders along a path beside the generated
     one (`geometry.trajectory.offset_path`, OFF_PATH_OFFSET baselines sideways), where there is no ground
     truth;
4. the reference row `ground-truth`: the ground-truth target frames scored for 3D consistency like a
   method's frames, i.e. what the metric gives real images of this scene at this resolution;
5. with an I3D detector, FVD per method over all scenes: the Fréchet distance between the I3D features of
   the methods' videos at the target slots (in path order) and those of the ground-truth target videos,
   one feature vector per scene (metrics/frechet.py). It is a set metric: there is no per-scene FVD.

Results are deterministic for a seed: each scene's seed is derived from (seed, scene key), so it does not
depend on which other scenes are evaluated.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor
from tqdm.auto import tqdm

from videoscene.data.dataset import example_from_scene
from videoscene.data.depth import read_depth
from videoscene.data.evaluation_index import IndexEntry
from videoscene.data.re10k import Scene, load_index, read_chunk
from videoscene.errors import LoadError, VideoSceneError
from videoscene.evaluation.methods import GenerateFn, GenerationRequest, MethodOutput, Oracle
from videoscene.evaluation.protocol import FramePlan, fit_views, path_cameras, plan_frames
from videoscene.geometry.image_ops import crop_to_aspect_and_resize_mask
from videoscene.geometry.trajectory import OFF_PATH_OFFSET, offset_path
from videoscene.geometry.visibility import VISIBILITY_TOLERANCE, unseen_mask
from videoscene.metrics.consistency import ConsistencyConfig, video_consistency
from videoscene.metrics.frechet import I3DFeatures, frechet_distance_of_features
from videoscene.metrics.image import masked_psnr, masked_ssim, psnr, ssim
from videoscene.metrics.lpips import LPIPS
from videoscene.metrics.temporal import warping_error
from videoscene.types import Cameras, Example, Views

logger = logging.getLogger(__name__)

REFERENCE = "ground-truth"  # the reference row: ground-truth frames scored for 3D consistency


@dataclass(frozen=True)
class EvalConfig:
    image_size: tuple[int, int] = (64, 96)  # (H, W) of the model; the tiny preset
    num_frames: int = 17  # F, the frames every method generates along the path
    near: float = 1.0  # depth range given to the context views (the prior needs it)
    far: float = 100.0
    pair_gap: int = 1  # 3D-consistency pairs (k, k + gap) among the frames at the target cameras
    seed: int = 0
    max_scenes: int | None = None  # evaluate only the first N scenes of the index
    visibility_tolerance: float = VISIBILITY_TOLERANCE  # relative depth margin of the seen/unseen masks

    def __post_init__(self) -> None:
        if min(self.image_size) < 16:
            raise VideoSceneError(f"image size must be at least 16x16 pixels, got {self.image_size}")
        if self.num_frames < 3:
            raise VideoSceneError(f"the generated video needs at least 3 frames, got {self.num_frames}")
        if not 0 < self.near < self.far:
            raise VideoSceneError(f"need 0 < near < far, got near={self.near}, far={self.far}")
        if self.pair_gap < 1:
            raise VideoSceneError(f"the consistency pair gap must be >= 1, got {self.pair_gap}")
        if self.max_scenes is not None and self.max_scenes < 1:
            raise VideoSceneError(f"max_scenes must be >= 1, got {self.max_scenes}")
        if not self.visibility_tolerance >= 0:
            raise VideoSceneError(f"the visibility tolerance must be >= 0, got {self.visibility_tolerance}")

    @classmethod
    def for_weights(cls, weights: Path | None, **overrides) -> EvalConfig:
        """The model's resolution, frame count and depth range from the weights folder's pipeline.json when
        it has one (else this class's defaults), then `overrides` (None values are ignored: flags not
        given)."""
        settings: dict = {}
        if weights is not None and (Path(weights) / "pipeline.json").is_file():
            from videoscene.pipeline import (
                PipelineConfig,  # heavy imports only when a pipeline folder is given
            )

            model = PipelineConfig.load(Path(weights) / "pipeline.json")
            settings = {
                "image_size": (model.height, model.width),
                "num_frames": model.num_frames,
                "near": model.near,
                "far": model.far,
            }
            logger.info("model settings from %s: %s", Path(weights) / "pipeline.json", settings)
        return cls(**(settings | {key: value for key, value in overrides.items() if value is not None}))


@dataclass
class SceneResult:
    """One method on one scene. NaN means "not measurable here" (e.g. no held-out target, no match, no depth
    for the seen/unseen scores, no unseen pixel)."""

    scene: str
    method: str
    context: tuple[int, int]
    targets: tuple[int, ...]
    slots: tuple[int, ...]
    dropped: tuple[int, ...]
    max_time_error: float
    seconds: float
    psnr: float
    ssim: float
    lpips: float
    sampson_px: float
    share_within_1px: float
    inlier_ratio: float
    ransac_inliers: int
    num_matches: int
    temporal_error: float
    # Quality apart on the held-out target pixels some context view sees and on those none sees, and the
    # share of unseen pixels: NaN without ground-truth depth (docs/evaluation.md).
    psnr_seen: float = math.nan
    psnr_unseen: float = math.nan
    ssim_seen: float = math.nan
    ssim_unseen: float = math.nan
    unseen_share: float = math.nan
    # Quality of the renders at the index's holdout frames (methods that build a 3D scene), and apart on
    # seen and unseen pixels (with depth); NaN otherwise.
    psnr_holdout: float = math.nan
    ssim_holdout: float = math.nan
    psnr_holdout_seen: float = math.nan
    psnr_holdout_unseen: float = math.nan
    ssim_holdout_seen: float = math.nan
    ssim_holdout_unseen: float = math.nan
    # 3D consistency of the renders along a path beside the generated one (methods that build a 3D scene;
    # no ground truth there): NaN otherwise.
    sampson_px_off_path: float = math.nan
    inlier_ratio_off_path: float = math.nan

    def record(self) -> dict:
        """JSON-ready: tuples as lists, NaN as null, LPIPS only when it was computed."""
        values = asdict(self)
        if math.isnan(self.lpips):
            del values["lpips"]
        return {
            key: list(value)
            if isinstance(value, tuple)
            else (None if isinstance(value, float) and math.isnan(value) else value)
            for key, value in values.items()
        }


@dataclass
class Showcase:
    """The first scene's frames at the target cameras, kept for the report's figures."""

    scene: str
    plan: FramePlan
    truth: Float[Tensor, "target 3 height width"]
    frames: dict[str, Float[Tensor, "target 3 height width"]] = field(default_factory=dict)


@dataclass
class EvaluationResult:
    config: EvalConfig
    methods: list[str]
    per_scene: list[SceneResult]  # also the REFERENCE row of every scene
    showcase: Showcase | None
    fvd: dict[str, float | None] = field(default_factory=dict)  # per method; None: no detector or < 2 scenes


def consistency_config(seed: int) -> ConsistencyConfig:
    """The SIFT/RANSAC settings of the 3D-consistency scores. RANSAC is OpenCV's classic FM_RANSAC: its USAC
    estimators (MAGSAC included) abort with an assertion on some small match sets of OpenCV 5.0."""
    return ConsistencyConfig(ransac_method=cv2.FM_RANSAC, seed=seed)


def scene_seed(seed: int, key: str) -> int:
    """A 63-bit seed for one scene, from the run's seed and the scene key alone."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little") >> 1


@dataclass
class PreparedScene:
    plan: FramePlan
    request: GenerationRequest
    targets: Views  # ground truth at the model's resolution, in plan order
    # True at target pixels no context view sees, at the model's resolution, in plan order; None: no depth
    unseen: Bool[Tensor, "target height width"] | None = None
    holdout: Views | None = None  # the index's holdout frames at the model's resolution; None: none
    holdout_unseen: Bool[Tensor, "holdout height width"] | None = None


def unseen_at_model_resolution(
    example: Example, depth: np.ndarray, plan: FramePlan, config: EvalConfig
) -> Bool[Tensor, "target height width"]:
    """The target pixels neither context view sees (geometry/visibility.py), found at the stored resolution
    from the scene's z-depth `[F, H, W]`, then cropped and resized like the images (a model pixel is unseen
    when more than half of it is). The example's targets are `plan.targets` (or any other frames of the
    scene, given as `plan`'s targets)."""
    stored = tuple(example.target.image.shape[-2:])
    if tuple(depth.shape[-2:]) != stored:
        raise LoadError(
            f"scene {example.scene}: its depth maps are {depth.shape[-2]}x{depth.shape[-1]} but its frames "
            f"{stored[0]}x{stored[1]}; regenerate the depth with the scene"
        )
    depth = torch.from_numpy(depth)
    context, targets = example.context, example.target
    mask = unseen_mask(
        depth[list(plan.targets)],
        targets.extrinsics,
        targets.intrinsics,
        depth[list(plan.context)],
        context.extrinsics,
        context.intrinsics,
        config.visibility_tolerance,
    )
    return crop_to_aspect_and_resize_mask(mask, config.image_size)


def prepare_scene(
    scene: Scene, entry: IndexEntry, config: EvalConfig, depth: np.ndarray | None = None
) -> PreparedScene:
    """Steps 1-2 of the module docstring; with the scene's z-depth `[F, H, W]`, also the unseen masks."""
    plan = plan_frames(entry.context, entry.target, config.num_frames)
    if plan.dropped:
        logger.info(
            "scene %s: %d targets but %d frames; evaluating %d of them",
            scene.key,
            len(entry.target),
            config.num_frames,
            len(plan.targets),
        )
    example = example_from_scene(scene, plan.context, plan.targets, config.near, config.far)
    context, targets = (
        fit_views(example.context, config.image_size),
        fit_views(example.target, config.image_size),
    )
    path, times = path_cameras(plan, context.cameras, targets.cameras)
    off_path = Cameras(offset_path(path.extrinsics, OFF_PATH_OFFSET), path.intrinsics)
    request = GenerationRequest(
        context, path, times, scene_seed(config.seed, scene.key), scene.key, off_path=off_path
    )
    unseen = None if depth is None else unseen_at_model_resolution(example, depth, plan, config)
    holdout = holdout_unseen = None
    if entry.holdout:
        held = example_from_scene(scene, plan.context, entry.holdout, config.near, config.far)
        holdout = fit_views(held.target, config.image_size)
        request = replace(request, holdout=holdout.cameras)
        if depth is not None:
            holdout_unseen = unseen_at_model_resolution(
                held, depth, replace(plan, targets=tuple(entry.holdout)), config
            )
    return PreparedScene(plan, request, targets, unseen, holdout, holdout_unseen)


def _checked_renders(method: str, renders: Tensor | None, cameras: Cameras | None, what: str, request):
    """A 3D method's renders at extra cameras: one finite image per camera, on the CPU in [0, 1]."""
    if renders is None:
        return None
    wanted = (0 if cameras is None else len(cameras), 3, *request.image_shape)
    if tuple(renders.shape) != wanted or not torch.isfinite(renders).all():
        raise VideoSceneError(
            f"method {method} returned {what} renders {list(renders.shape)} (or NaN/inf) for scene "
            f"{request.scene}; expected {list(wanted)}, finite"
        )
    return renders.detach().float().cpu().clamp(0, 1)


def _generate(
    method: str, generate: GenerateFn, request: GenerationRequest, device: torch.device
) -> tuple[Tensor, MethodOutput, float]:
    """Run one method, timed; its global-RNG draws (if any) are seeded by the request and leave no trace.
    Returns its frames, its renders at the holdout and off-path cameras (None: the method renders none) and
    seconds."""
    cuda_devices = (
        [torch.cuda.current_device() if device.index is None else device.index]
        if device.type == "cuda"
        else []
    )
    with torch.random.fork_rng(devices=cuda_devices), torch.no_grad():
        torch.manual_seed(request.seed)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        output = generate(request)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    output = output if isinstance(output, MethodOutput) else MethodOutput(output)
    frames = output.frames
    extra = MethodOutput(
        frames,
        _checked_renders(method, output.holdout, request.holdout, "holdout", request),
        _checked_renders(method, output.off_path, request.off_path, "off-path", request),
    )
    expected = (request.num_frames, 3, *request.image_shape)
    if not isinstance(frames, Tensor) or tuple(frames.shape) != expected:
        got = list(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
        raise VideoSceneError(
            f"method {method} returned frames {got} for scene {request.scene}; expected {list(expected)}"
        )
    if not torch.isfinite(frames).all():
        raise VideoSceneError(f"method {method} returned NaN or inf frames for scene {request.scene}")
    return frames.detach().float().cpu().clamp(0, 1), extra, seconds


def _consistency(frames: Tensor, cameras: Cameras, config: EvalConfig) -> dict[str, float | int]:
    """3D-consistency scores of frames against their cameras, pairs (k, k + gap) in path order."""
    nan = float("nan")
    count = len(frames)
    if count < 2:
        return {
            "sampson_px": nan,
            "share_within_1px": nan,
            "inlier_ratio": nan,
            "ransac_inliers": 0,
            "num_matches": 0,
        }
    scores = video_consistency(
        frames,
        cameras.extrinsics,
        cameras.intrinsics,
        gap=min(config.pair_gap, count - 1),
        config=consistency_config(config.seed),
    )
    return {
        "sampson_px": scores.median_sampson_px,
        "share_within_1px": scores.share_within if scores.num_matches else nan,
        "inlier_ratio": scores.ransac_inlier_ratio if scores.num_matches else nan,
        "ransac_inliers": scores.ransac_inliers,
        "num_matches": scores.num_matches,
    }


def _result(method: str, prepared: PreparedScene, **scores) -> SceneResult:
    plan = prepared.plan
    return SceneResult(
        scene=prepared.request.scene,
        method=method,
        context=plan.context,
        targets=plan.targets,
        slots=plan.slots,
        dropped=plan.dropped,
        max_time_error=plan.max_time_error,
        **scores,
    )


def score_frames(
    method: str,
    frames: Float[Tensor, "frame 3 height width"],
    seconds: float,
    prepared: PreparedScene,
    config: EvalConfig,
    lpips: LPIPS | None = None,
    holdout: Float[Tensor, "holdout 3 height width"] | None = None,
    off_path: Float[Tensor, "frame 3 height width"] | None = None,
) -> SceneResult:
    """Step 3's scores for one generated video (and the method's renders at the holdout and off-path
    cameras)."""
    plan, truth = prepared.plan, prepared.targets.image
    at_targets = frames[list(plan.slots)]
    held_out = torch.tensor(plan.held_out)
    nan = float("nan")
    quality = {"psnr": nan, "ssim": nan, "lpips": nan}
    if held_out.any():
        generated, reference = at_targets[held_out], truth[held_out]
        quality["psnr"] = psnr(generated, reference).mean().item()
        quality["ssim"] = ssim(generated, reference).mean().item()
        if lpips is not None:
            device = next(lpips.buffers()).device
            quality["lpips"] = lpips(generated.to(device), reference.to(device)).mean().item()
        if prepared.unseen is not None:
            unseen = prepared.unseen[held_out]
            quality |= {
                "psnr_seen": masked_psnr(generated, reference, ~unseen).item(),
                "psnr_unseen": masked_psnr(generated, reference, unseen).item(),
                "ssim_seen": masked_ssim(generated, reference, ~unseen).item(),
                "ssim_unseen": masked_ssim(generated, reference, unseen).item(),
                "unseen_share": unseen.float().mean().item(),
            }
    if holdout is not None and prepared.holdout is not None and len(holdout):
        reference = prepared.holdout.image
        quality |= {
            "psnr_holdout": psnr(holdout, reference).mean().item(),
            "ssim_holdout": ssim(holdout, reference).mean().item(),
        }
        if prepared.holdout_unseen is not None:
            unseen = prepared.holdout_unseen
            quality |= {
                "psnr_holdout_seen": masked_psnr(holdout, reference, ~unseen).item(),
                "psnr_holdout_unseen": masked_psnr(holdout, reference, unseen).item(),
                "ssim_holdout_seen": masked_ssim(holdout, reference, ~unseen).item(),
                "ssim_holdout_unseen": masked_ssim(holdout, reference, unseen).item(),
            }
    if off_path is not None:
        scores = _consistency(off_path, prepared.request.off_path, config)
        quality |= {
            "sampson_px_off_path": scores["sampson_px"],
            "inlier_ratio_off_path": scores["inlier_ratio"],
        }
    return _result(
        method,
        prepared,
        seconds=seconds,
        **quality,
        **_consistency(at_targets, prepared.targets.cameras, config),
        temporal_error=warping_error(frames).warp_error,
    )


def reference_scores(prepared: PreparedScene, config: EvalConfig) -> SceneResult:
    """The ground-truth target frames scored like a method's frames at the target cameras: the floor of the
    3D-consistency metric on this scene at this resolution (SIFT localisation, resampling, pose error of
    the data). Quality, temporal and time scores do not apply (NaN)."""
    nan = float("nan")
    return _result(
        REFERENCE,
        prepared,
        seconds=nan,
        psnr=nan,
        ssim=nan,
        lpips=nan,
        **_consistency(prepared.targets.image, prepared.targets.cameras, config),
        temporal_error=nan,
    )


def frechet_video_distances(
    features: Mapping[str, list[np.ndarray]], methods: list[str]
) -> dict[str, float | None]:
    """Step 5: FVD of each method's per-scene I3D features against the ground truth's (REFERENCE key).
    None without features, or with fewer than two scenes (a covariance needs two samples)."""
    reference = features.get(REFERENCE, [])
    if features and len(reference) < 2:
        logger.warning("FVD needs at least two scenes, got %d: FVD is reported as null", len(reference))
    if len(reference) < 2:
        return {method: None for method in methods}
    if len(reference) <= reference[0].size:
        logger.info(
            "FVD over %d scenes of %d-dimensional features: a rank-deficient, noisy estimate",
            len(reference),
            reference[0].size,
        )
    return {
        method: frechet_distance_of_features(np.stack(reference), np.stack(features[method]))
        for method in methods
    }


def evaluate(
    data_dir: str | Path,
    index: Mapping[str, IndexEntry | None],
    methods: Mapping[str, GenerateFn],
    config: EvalConfig,
    device: torch.device | str = "cpu",
    lpips: LPIPS | None = None,
    fvd_detector: I3DFeatures | None = None,
) -> EvaluationResult:
    """Evaluate `methods` (name -> generate) on the scenes of `index` found in the split folder `data_dir`.
    With `fvd_detector`, FVD per method is computed as well (step 5 of the module docstring)."""
    # 1. Check inputs: which index scenes the data holds.
    device = torch.device(device)
    if not methods:
        raise VideoSceneError("no methods to evaluate")
    if REFERENCE in methods:
        raise VideoSceneError(f"{REFERENCE!r} is the name of the reference row; give the method another name")
    chunks = load_index(data_dir)
    with_depth = 0  # scenes scored apart on seen and unseen pixels
    entries = {key: entry for key, entry in index.items() if entry is not None}
    missing = [key for key in entries if key not in chunks]
    if missing:
        logger.warning(
            "%d of the index's scenes are not in %s (e.g. %s); they are skipped",
            len(missing),
            data_dir,
            missing[0],
        )
    wanted = [key for key in entries if key in chunks][: config.max_scenes]
    if not wanted:
        raise VideoSceneError(
            f"none of the index's {len(entries)} scenes is in {data_dir}; is it the index of this split?"
        )

    # 2. Scene by scene, chunk by chunk (each chunk read once), every method.
    per_scene: list[SceneResult] = []
    showcase: Showcase | None = None
    video_features: dict[
        str, list[np.ndarray]
    ] = {}  # name -> one I3D feature vector per scene (with a detector)

    def add_video_features(name: str, video_at_targets: Tensor, scene: str) -> None:
        if fvd_detector is None:
            return
        try:
            features = fvd_detector(video_at_targets[None])[0]
        except (
            RuntimeError,
            torch.jit.Error,
        ) as error:  # TorchScript tracebacks end with the actual error line
            cause = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
            raise VideoSceneError(
                f"the FVD detector failed on the {len(video_at_targets)}-frame video of scene {scene} "
                f"({cause}); "
                "I3D needs enough target frames per scene: use an index with more targets, or drop "
                "--fvd-detector"
            ) from None
        video_features.setdefault(name, []).append(features)

    progress = tqdm(total=len(wanted) * len(methods), desc="eval", unit="run")
    wanted_set = set(wanted)
    for chunk in dict.fromkeys(chunks[key] for key in wanted):
        for scene in read_chunk(Path(data_dir) / chunk):
            if scene.key not in wanted_set:
                continue
            depth = read_depth(data_dir, scene.key, len(scene))
            with_depth += depth is not None
            prepared = prepare_scene(scene, entries[scene.key], config, depth)
            if showcase is None:
                showcase = Showcase(scene.key, prepared.plan, prepared.targets.image)
            per_scene.append(reference_scores(prepared, config))
            add_video_features(REFERENCE, prepared.targets.image, scene.key)
            for name, generate in methods.items():
                progress.set_postfix(scene=scene.key, method=name)
                # Oracles (recon-gt) alone are shown the ground-truth targets.
                request = (
                    replace(prepared.request, truth=prepared.targets)
                    if isinstance(generate, Oracle)
                    else prepared.request
                )
                frames, extra, seconds = _generate(name, generate, request, device)
                per_scene.append(
                    score_frames(
                        name, frames, seconds, prepared, config, lpips, extra.holdout, extra.off_path
                    )
                )
                add_video_features(name, frames[list(prepared.plan.slots)], scene.key)
                if showcase.scene == scene.key:
                    showcase.frames[name] = frames[list(prepared.plan.slots)]
                progress.update(1)
    progress.close()
    logger.info(
        "%d of %d scenes have ground-truth depth: seen/unseen scores for those (the rest: null)",
        with_depth,
        len(wanted),
    )
    return EvaluationResult(
        config, list(methods), per_scene, showcase, frechet_video_distances(video_features, list(methods))
    )
