"""Two cameras from two photos: the unposed-input path (issue 7).

Classical two-view geometry with OpenCV: SIFT keypoints matched with Lowe's ratio test
(`geometry.matching.sift_matches`), an essential matrix fitted by RANSAC on calibrated rays
(`cv2.findEssentialMat`), the rotation and translation direction chosen by cheirality (`cv2.recoverPose`),
and the inliers triangulated for the scene's depth range.

What two photos cannot tell is filled in by convention, documented in docs/app.md:
- intrinsics: from EXIF (35 mm-equivalent focal length, or focal length and focal-plane resolution) when the
  files carry it, else a horizontal field of view of `default_fov_degrees`; principal point at the centre;
- scale: the translation is set to `baseline` scene units, and near/far come from the triangulated points
  in those units;
- the world frame is camera 0's (its camera-to-world matrix is the identity).

Degenerate pairs raise one clear `VideoSceneError`: too few matches or inliers (no overlap), the same image
twice (no feature moves), and a pure rotation (the rotation-compensated rays are parallel, so depth, and
with it the translation, is unobservable).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
from jaxtyping import Float
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from videoscene.errors import VideoSceneError
from videoscene.geometry.matching import MatchConfig, Matches, sift_matches
from videoscene.image_io import to_uint8
from videoscene.types import Cameras

logger = logging.getLogger(__name__)

# EXIF tags (CIPA DC-008): the Exif sub-IFD and the focal-length tags inside it.
_EXIF_IFD = 0x8769
_FOCAL_LENGTH = 0x920A
_FOCAL_LENGTH_35MM = 0xA405
_FOCAL_PLANE_X_RESOLUTION = 0xA20E
_FOCAL_PLANE_RESOLUTION_UNIT = 0xA210
_PIXEL_X_DIMENSION = 0xA002
_RESOLUTION_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 1e-3}  # inch, cm, mm, µm
# "35 mm equivalent" is defined on the diagonal of a 36 × 24 mm frame, so it holds for any aspect ratio.
_FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)


@dataclass(frozen=True)
class RelativePoseConfig:
    default_fov_degrees: float = 60.0  # horizontal field of view when neither --fov nor EXIF gives one
    baseline: float = 1.0  # distance between the two cameras, in scene units
    # Images are matched with their longer side resized to this: SIFT finds several times more matches on
    # small photos enlarged to ~1000 px, and large photos cost less. Normalised intrinsics do not change.
    matching_side: int = 1024
    ratio: float = 0.8  # Lowe's ratio test
    max_features: int = 8000
    ransac_threshold_px: float = 3.0  # MAGSAC's maximum residual, at the matching resolution
    ransac_confidence: float = 0.9999
    min_matches: int = 20
    min_inliers: int = 20  # as COLMAP's two-view default (15), with a little margin
    # The same image twice: no feature moves. Median match displacement below this (at the matching
    # resolution).
    min_median_flow_px: float = 1.0
    # A pure rotation: a homography explains at least `homography_share` of the essential matrix's inliers
    # and, once its rotation is undone, the median angle between matched rays is below `min_parallax_degrees`.
    min_parallax_degrees: float = 0.5
    homography_share: float = 0.8
    # Of the essential matrix's inliers, at least this share must lie in front of both cameras.
    min_cheirality_share: float = 0.5
    # Depth range: robust percentiles of the inliers' depths in either camera, widened by these factors.
    depth_percentiles: tuple[float, float] = (5.0, 95.0)
    near_margin: float = 0.5
    far_margin: float = 2.0
    seed: int = 0  # OpenCV's RNG drives RANSAC's sampling


@dataclass
class RelativePoseEstimate:
    cameras: Cameras  # camera 0 = identity (world = camera 0's frame), camera 1 at distance `baseline`
    near: float
    far: float
    num_matches: int  # ratio-test matches
    num_inliers: int  # matches agreeing with the essential matrix and in front of both cameras
    homography_inliers: int  # of the essential matrix's RANSAC inliers, how many one homography explains
    median_parallax_degrees: float  # median angle between matched rays of the inliers once R is undone
    median_flow_px: float  # median displacement of the matches, at the matching resolution
    fov_degrees: float  # horizontal field of view used for both cameras
    focal_source: Literal["fov", "exif", "default"]

    def summary(self) -> dict:
        """JSON-ready figures for report.json and the app."""
        record = {key: value for key, value in asdict(self).items() if key != "cameras"}
        return {key: round(value, 4) if isinstance(value, float) else value for key, value in record.items()}


# ------------------------------------------------------------------------------------------------- intrinsics
def exif_focal(path: str | Path) -> float | None:
    """The horizontal focal length normalised by the image width (fx / W) from a photo's EXIF, or None.

    Prefers the 35 mm-equivalent focal length (defined on the full-frame diagonal); otherwise focal length in
    mm times the focal-plane resolution (pixels per unit on the sensor, for the sensor's full pixel width).
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
            exif = image.getexif().get_ifd(_EXIF_IFD)
    except (UnidentifiedImageError, OSError):
        return None
    if not exif:
        return None
    focal_35mm = _positive(exif.get(_FOCAL_LENGTH_35MM))
    if focal_35mm is not None:
        return focal_35mm / _FULL_FRAME_DIAGONAL_MM * math.hypot(width, height) / width
    focal_mm = _positive(exif.get(_FOCAL_LENGTH))
    pixels_per_unit = _positive(exif.get(_FOCAL_PLANE_X_RESOLUTION))
    unit_mm = _RESOLUTION_UNIT_MM.get(exif.get(_FOCAL_PLANE_RESOLUTION_UNIT, 2))
    if focal_mm is None or pixels_per_unit is None or unit_mm is None:
        return None
    # The focal-plane resolution refers to the sensor's full-resolution image; a resized file scales it.
    sensor_width_px = _positive(exif.get(_PIXEL_X_DIMENSION)) or width
    return focal_mm * pixels_per_unit / unit_mm / sensor_width_px


def _positive(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def fov_to_focal(fov_degrees: float) -> float:
    """Horizontal field of view -> fx / W."""
    if not 1.0 <= fov_degrees <= 170.0:
        raise VideoSceneError(f"field of view must be between 1 and 170 degrees, got {fov_degrees}")
    return 0.5 / math.tan(math.radians(fov_degrees) / 2)


def pinhole_intrinsics(focal: float, width: int, height: int) -> Float[Tensor, "3 3"]:
    """Normalised intrinsics with square pixels (fx = fy in pixels) and the principal point at the centre."""
    return torch.tensor([[focal, 0.0, 0.5], [0.0, focal * width / height, 0.5], [0.0, 0.0, 1.0]])


def choose_focal(
    fov_degrees: float | None, exif_focals: list[float | None], config: RelativePoseConfig
) -> tuple[float, Literal["fov", "exif", "default"]]:
    """fx / W from, in order: an explicit field of view, the photos' EXIF (averaged), the default."""
    if fov_degrees is not None:
        return fov_to_focal(fov_degrees), "fov"
    known = [focal for focal in exif_focals if focal is not None]
    if known:
        return float(np.mean(known)), "exif"
    return fov_to_focal(config.default_fov_degrees), "default"


# ------------------------------------------------------------------------------------------------- estimation
def estimate_cameras_for_files(
    images: Float[Tensor, "2 3 height width"],
    image_paths: list[str],
    fov: float | None = None,
    baseline: float | None = None,
) -> RelativePoseEstimate:
    """Estimate the two cameras of an image pair, with the focal length from --fov, else the files' EXIF."""
    if baseline is not None and not (baseline > 0 and math.isfinite(baseline)):
        raise VideoSceneError(f"--baseline must be a positive number of scene units, got {baseline}")
    config = RelativePoseConfig() if baseline is None else RelativePoseConfig(baseline=baseline)
    return estimate_cameras(
        images, config, fov_degrees=fov, exif_focals=[exif_focal(path) for path in image_paths]
    )


def estimate_cameras(
    images: Float[Tensor, "2 3 height width"],
    config: RelativePoseConfig = RelativePoseConfig(),
    fov_degrees: float | None = None,
    exif_focals: list[float | None] | None = None,
) -> RelativePoseEstimate:
    """Estimate both cameras of an image pair (see the module docstring for the conventions)."""
    # 1. Check inputs and pick the intrinsics
    if images.ndim != 4 or images.shape[:2] != (2, 3):
        raise VideoSceneError(
            f"need two RGB images as a [2, 3, H, W] tensor to estimate cameras, got {list(images.shape)}"
        )
    height, width = images.shape[-2:]
    focal, focal_source = choose_focal(fov_degrees, exif_focals or [], config)
    intrinsics = pinhole_intrinsics(focal, width, height)

    # 2. Match SIFT features at a fixed resolution (normalised intrinsics hold at any size)
    scale = config.matching_side / max(height, width)
    match_size = (max(1, round(height * scale)), max(1, round(width * scale)))
    sift_config = MatchConfig(ratio=config.ratio, max_features=config.max_features)
    matches = sift_matches(*(_resize_for_matching(image, match_size) for image in images), sift_config)
    if len(matches) < config.min_matches:
        raise VideoSceneError(
            f"only {len(matches)} feature matches between the two images (need {config.min_matches}): "
            "they do not "
            "seem to show the same scene; give two overlapping photos or pass --cameras"
        )
    median_flow = float(np.median(np.linalg.norm(matches.points_b - matches.points_a, axis=1)))
    if median_flow < config.min_median_flow_px:
        raise VideoSceneError(
            f"the two images are the same picture (features move {median_flow:.2f} px); give two "
            "photos taken "
            "from different positions"
        )

    # 3. Essential matrix by MAGSAC on pixel coordinates (both views share K)
    pixel_k = _pixel_intrinsics(intrinsics, match_size)
    essential, ransac_mask = _find_essential(matches, pixel_k, config)
    ransac_inliers = np.zeros(len(matches), bool) if ransac_mask is None else ransac_mask.ravel() > 0
    if essential is None or ransac_inliers.sum() < config.min_inliers:
        raise VideoSceneError(_no_motion_message(len(matches), int(ransac_inliers.sum()), config))

    # 4. Pure rotation: one homography H = K R K⁻¹ explains the matches, and once R is undone the matched rays
    #    are parallel, so depth and translation are unobservable (cheirality would then reject most matches)
    rays_a, rays_b = _calibrated(matches.points_a, pixel_k), _calibrated(matches.points_b, pixel_k)
    homography_inliers, rotation_parallax = _homography_check(
        matches, ransac_inliers, pixel_k, rays_a, rays_b, config
    )
    if (
        homography_inliers >= config.homography_share * ransac_inliers.sum()
        and rotation_parallax < config.min_parallax_degrees
    ):
        raise VideoSceneError(
            f"the camera only turned between the two photos (a rotation explains {homography_inliers} of "
            f"{int(ransac_inliers.sum())} matches, median parallax {rotation_parallax:.2f}°), so depth "
            "is unobservable; "
            "take the second photo from a different position or pass --cameras"
        )

    # 5. The pose (of the four an essential matrix allows) that puts the most inliers in front of both cameras
    essential = essential[:3]  # a degenerate best sample can return several stacked solutions; take the first
    _, rotation, translation, pose_mask = cv2.recoverPose(
        essential, matches.points_a, matches.points_b, pixel_k, mask=ransac_mask.copy()
    )
    inliers = pose_mask.ravel() > 0
    # A sound essential matrix puts nearly all its inliers in front of both cameras; a degenerate one (no
    # parallax that the homography check let through) keeps a small, arbitrary subset.
    if inliers.sum() < max(config.min_inliers, config.min_cheirality_share * ransac_inliers.sum()):
        raise VideoSceneError(_no_motion_message(len(matches), int(inliers.sum()), config))
    parallax = _ray_angles_degrees(
        rotation @ _homogeneous(rays_a[inliers]).T, _homogeneous(rays_b[inliers]).T
    )

    # 6. Scale: translation of length `baseline`; near/far from the triangulated inliers
    translation = translation.ravel() / np.linalg.norm(translation) * config.baseline
    nearer, farther = _triangulated_depths(rays_a[inliers], rays_b[inliers], rotation, translation)
    near = float(np.percentile(nearer, config.depth_percentiles[0]) * config.near_margin)
    far = float(np.percentile(farther, config.depth_percentiles[1]) * config.far_margin)

    # 7. Camera-to-world: camera 0 is the world; x₁ = R x₀ + t, so camera 1's c2w is [Rᵀ, −Rᵀt]
    second = np.eye(4)
    second[:3, :3], second[:3, 3] = rotation.T, -rotation.T @ translation
    cameras = Cameras(
        torch.stack([torch.eye(4), torch.from_numpy(second).float()]), intrinsics.expand(2, 3, 3).clone()
    )
    estimate = RelativePoseEstimate(
        cameras=cameras,
        near=near,
        far=far,
        num_matches=len(matches),
        num_inliers=int(inliers.sum()),
        homography_inliers=homography_inliers,
        median_parallax_degrees=float(np.median(parallax)),
        median_flow_px=median_flow,
        fov_degrees=math.degrees(2 * math.atan(0.5 / focal)),
        focal_source=focal_source,
    )
    logger.info("estimated cameras: %s", estimate.summary())
    return estimate


def _resize_for_matching(
    image: Float[Tensor, "3 height width"], size: tuple[int, int]
) -> Float[Tensor, "3 h w"]:
    """Resize in 8 bits with OpenCV: the result, and so the matches, must not depend on torch's thread
    count."""
    pixels = to_uint8(image).permute(1, 2, 0).numpy()
    shrinking = size[0] < image.shape[-2]
    resized = cv2.resize(
        pixels, (size[1], size[0]), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    )
    return torch.from_numpy(resized).permute(2, 0, 1).float() / 255


def _find_essential(matches: Matches, pixel_k: np.ndarray, config: RelativePoseConfig):
    # Pixel coordinates rather than calibrated rays: USAC's thresholds misbehave at the ~1e-3 scale of rays.
    cv2.setRNGSeed(config.seed)
    arguments = (matches.points_a, matches.points_b, pixel_k)
    settings = {"prob": config.ransac_confidence, "threshold": config.ransac_threshold_px}
    try:
        return cv2.findEssentialMat(*arguments, method=cv2.USAC_MAGSAC, **settings)
    except cv2.error:
        # OpenCV 5's USAC aborts on some small match sets (assertion !model.empty()); classic RANSAC does not.
        return cv2.findEssentialMat(*arguments, method=cv2.RANSAC, **settings)


def _no_motion_message(num_matches: int, num_inliers: int, config: RelativePoseConfig) -> str:
    return (
        f"only {num_inliers} of {num_matches} feature matches agree with one camera motion (need "
        f"{config.min_inliers}): "
        "the photos barely overlap or show a moving scene; give two overlapping photos of a static "
        "scene or pass --cameras"
    )


def _pixel_intrinsics(intrinsics: Tensor, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    return (intrinsics.double() * torch.tensor([width, height, 1.0], dtype=torch.float64)[:, None]).numpy()


def _calibrated(points: Float[np.ndarray, "match 2"], pixel_k: np.ndarray) -> Float[np.ndarray, "match 2"]:
    """Pixels -> normalised image coordinates (x/z, y/z) with K⁻¹."""
    return (_homogeneous(points) @ np.linalg.inv(pixel_k).T)[:, :2]


def _homogeneous(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points, np.ones((len(points), 1))], axis=1)


def _ray_angles_degrees(rays_a: np.ndarray, rays_b: np.ndarray) -> np.ndarray:
    """Angle between column rays, in degrees."""
    cosine = (rays_a * rays_b).sum(0) / (np.linalg.norm(rays_a, axis=0) * np.linalg.norm(rays_b, axis=0))
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def _homography_check(
    matches: Matches,
    candidates: np.ndarray,
    pixel_k: np.ndarray,
    rays_a: np.ndarray,
    rays_b: np.ndarray,
    config: RelativePoseConfig,
) -> tuple[int, float]:
    """Fit a homography to the essential matrix's inliers: how many it explains, and the median angle between
    matched rays once the rotation nearest to K⁻¹HK is undone (≈ 0 for a pure rotation; for a plane seen
    from two positions K⁻¹HK = R + t nᵀ/d is no rotation and the angle grows with the translation)."""
    homography, mask = cv2.findHomography(
        matches.points_a[candidates], matches.points_b[candidates], cv2.RANSAC, config.ransac_threshold_px
    )
    if homography is None or mask is None or not mask.any():
        return 0, float("inf")
    explained = mask.ravel() > 0
    u, _, vt = np.linalg.svd(np.linalg.inv(pixel_k) @ homography @ pixel_k)
    rotation = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    angles = _ray_angles_degrees(
        rotation @ _homogeneous(rays_a[candidates][explained]).T,
        _homogeneous(rays_b[candidates][explained]).T,
    )
    return int(explained.sum()), float(np.median(angles))


def _triangulated_depths(
    rays_a: np.ndarray, rays_b: np.ndarray, rotation: np.ndarray, translation: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Depth (z) of each triangulated point in the camera that sees it closer, and in the one that sees it
    farther (near/far must hold for both views)."""
    projection_a = np.hstack([np.eye(3), np.zeros((3, 1))])
    projection_b = np.hstack([rotation, translation[:, None]])
    homogeneous = cv2.triangulatePoints(projection_a, projection_b, rays_a.T, rays_b.T)
    points_a = (homogeneous[:3] / homogeneous[3]).T
    points_b = points_a @ rotation.T + translation
    depths = np.stack([points_a[:, 2], points_b[:, 2]], axis=1)
    depths = depths[np.isfinite(depths).all(1) & (depths > 0).all(1)]
    if not len(depths):
        raise VideoSceneError(
            "no matched point triangulates in front of both cameras; give two overlapping photos or "
            "pass --cameras"
        )
    return depths.min(1), depths.max(1)
