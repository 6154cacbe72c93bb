"""3D consistency of frames against the cameras they should show (the paper's Fig. 5; docs/evaluation.md).

SIFT keypoints are matched between two frames (Lowe's ratio test; `geometry.matching`). Each match is
scored against the fundamental matrix of the *given* cameras: its Sampson distance in pixels (median, and
the share within 1 px). Independently, RANSAC fits a fundamental matrix to the matches alone and counts
inliers, as the paper's matching figure does (green inliers, red outliers); `draw_matches` draws that figure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from videoscene.errors import VideoSceneError
from videoscene.geometry.epipolar import fundamental_matrix, sampson_distance
from videoscene.geometry.matching import OPENCV_TO_PIXEL, MatchConfig, Matches, sift_matches, to_rgb_uint8

logger = logging.getLogger(__name__)

_MIN_MATCHES_FOR_RANSAC = 8


@dataclass
class ConsistencyConfig:
    ratio: float = 0.75  # Lowe's ratio test
    max_features: int = 4000  # 0 = unlimited
    within_px: float = 1.0  # threshold for `share_within`
    ransac_threshold_px: float = 1.0
    ransac_confidence: float = 0.999
    ransac_method: int = cv2.USAC_MAGSAC  # or cv2.FM_RANSAC
    seed: int = 0  # OpenCV's RNG drives RANSAC's sampling

    @property
    def matching(self) -> MatchConfig:
        return MatchConfig(ratio=self.ratio, max_features=self.max_features)


@dataclass
class PairConsistency:
    num_matches: int
    median_sampson_px: (
        float  # median over matches of the Sampson distance to the given cameras' F (nan: no match)
    )
    share_within: float  # share of matches within `within_px` of the given epipolar geometry
    ransac_inliers: int  # matches consistent with a fundamental matrix fitted by RANSAC to the matches alone
    ransac_inlier_ratio: float
    sampson_px: Float[np.ndarray, " match"] = field(repr=False, default_factory=lambda: np.zeros(0))
    inlier_mask: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=bool))


@dataclass
class VideoConsistency:
    """Matches of all frame pairs (i, i + gap) pooled: medians and shares are over every match."""

    num_pairs: int
    num_matches: int
    median_sampson_px: float
    share_within: float
    ransac_inliers: int
    ransac_inlier_ratio: float
    pairs: list[PairConsistency] = field(repr=False, default_factory=list)


def ransac_inliers(matches: Matches, config: ConsistencyConfig | None = None) -> np.ndarray:
    """Boolean mask of matches that agree with a fundamental matrix fitted to the matches by RANSAC."""
    config = config or ConsistencyConfig()
    if len(matches) < _MIN_MATCHES_FOR_RANSAC:
        return np.zeros(len(matches), dtype=bool)
    cv2.setRNGSeed(config.seed)
    arguments = (matches.points_a, matches.points_b)
    settings = (config.ransac_threshold_px, config.ransac_confidence)
    try:
        _, mask = cv2.findFundamentalMat(*arguments, config.ransac_method, *settings)
    except cv2.error:
        # OpenCV 5's USAC/MAGSAC aborts on some small match sets (assertion !model.empty()); classic RANSAC
        # does not.
        _, mask = cv2.findFundamentalMat(*arguments, cv2.FM_RANSAC, *settings)
    return np.zeros(len(matches), dtype=bool) if mask is None else mask.ravel().astype(bool)


def score_matches(
    matches: Matches,
    extrinsics_a: Float[Tensor, "4 4"],
    intrinsics_a: Float[Tensor, "3 3"],
    extrinsics_b: Float[Tensor, "4 4"],
    intrinsics_b: Float[Tensor, "3 3"],
    image_size: tuple[int, int],
    config: ConsistencyConfig | None = None,
) -> PairConsistency:
    """Score matches against the epipolar geometry of the given cameras and against RANSAC."""
    config = config or ConsistencyConfig()
    fundamental = fundamental_matrix(
        extrinsics_a, intrinsics_a, image_size, extrinsics_b, intrinsics_b, image_size
    )
    distances = sampson_distance(
        fundamental.double(), torch.from_numpy(matches.points_a), torch.from_numpy(matches.points_b)
    ).numpy()
    inliers = ransac_inliers(matches, config)
    count = len(matches)
    return PairConsistency(
        num_matches=count,
        median_sampson_px=float(np.median(distances)) if count else float("nan"),
        share_within=float((distances <= config.within_px).mean()) if count else 0.0,
        ransac_inliers=int(inliers.sum()),
        ransac_inlier_ratio=float(inliers.mean()) if count else 0.0,
        sampson_px=distances,
        inlier_mask=inliers,
    )


def pair_consistency(
    image_a: Float[Tensor, "3 height width"],
    image_b: Float[Tensor, "3 height width"],
    extrinsics_a: Float[Tensor, "4 4"],
    intrinsics_a: Float[Tensor, "3 3"],
    extrinsics_b: Float[Tensor, "4 4"],
    intrinsics_b: Float[Tensor, "3 3"],
    config: ConsistencyConfig | None = None,
) -> PairConsistency:
    """How well two frames agree with the cameras they should show (camera-to-world, normalised K)."""
    config = config or ConsistencyConfig()
    if image_a.shape != image_b.shape:
        raise VideoSceneError(
            f"frames must share one size, got {list(image_a.shape)} and {list(image_b.shape)}"
        )
    matches = sift_matches(image_a, image_b, config.matching)
    return score_matches(
        matches, extrinsics_a, intrinsics_a, extrinsics_b, intrinsics_b, tuple(image_a.shape[-2:]), config
    )


def video_consistency(
    frames: Float[Tensor, "frame 3 height width"],
    extrinsics: Float[Tensor, "frame 4 4"],
    intrinsics: Float[Tensor, "frame 3 3"],
    gap: int = 5,
    config: ConsistencyConfig | None = None,
) -> VideoConsistency:
    """Score every frame pair (i, i + gap) of a video against its camera path, pooling all matches."""
    config = config or ConsistencyConfig()
    count = frames.shape[0]
    if extrinsics.shape != (count, 4, 4) or intrinsics.shape != (count, 3, 3):
        raise VideoSceneError(
            f"{count} frames need extrinsics [{count}, 4, 4] and intrinsics [{count}, 3, 3], "
            f"got {list(extrinsics.shape)} and {list(intrinsics.shape)}"
        )
    if not 1 <= gap < count:
        raise VideoSceneError(f"frame gap {gap} must be between 1 and {count - 1} for {count} frames")
    pairs = [
        pair_consistency(
            frames[i],
            frames[i + gap],
            extrinsics[i],
            intrinsics[i],
            extrinsics[i + gap],
            intrinsics[i + gap],
            config,
        )
        for i in range(count - gap)
    ]
    distances = np.concatenate([pair.sampson_px for pair in pairs])
    inliers = np.concatenate([pair.inlier_mask for pair in pairs])
    logger.debug("scored %d frame pairs at gap %d: %d matches", len(pairs), gap, len(distances))
    return VideoConsistency(
        num_pairs=len(pairs),
        num_matches=len(distances),
        median_sampson_px=float(np.median(distances)) if len(distances) else float("nan"),
        share_within=float((distances <= config.within_px).mean()) if len(distances) else 0.0,
        ransac_inliers=int(inliers.sum()),
        ransac_inlier_ratio=float(inliers.mean()) if len(inliers) else 0.0,
        pairs=pairs,
    )


def draw_matches(
    image_a: Float[Tensor, "3 height width"],
    image_b: Float[Tensor, "3 height width"],
    matches: Matches,
    inlier_mask: np.ndarray,
    line_width: int = 1,
) -> np.ndarray:
    """The matching figure: both frames side by side (uint8 [H, 2W, 3] RGB), inliers joined by green lines,
    outliers by red ones."""
    if image_a.shape != image_b.shape:
        raise VideoSceneError(
            f"frames must share one size, got {list(image_a.shape)} and {list(image_b.shape)}"
        )
    if len(inlier_mask) != len(matches):
        raise VideoSceneError(f"{len(inlier_mask)} inlier flags for {len(matches)} matches")
    canvas = np.ascontiguousarray(np.concatenate([to_rgb_uint8(image_a), to_rgb_uint8(image_b)], axis=1))
    offset = np.array([image_a.shape[-1], 0.0])
    # Draw outliers first so inliers stay visible on top.
    for is_inlier in (False, True):
        color = (0, 200, 0) if is_inlier else (220, 0, 0)
        for point_a, point_b in zip(
            matches.points_a[inlier_mask == is_inlier], matches.points_b[inlier_mask == is_inlier]
        ):
            start = tuple(int(v) for v in np.round(point_a - OPENCV_TO_PIXEL))
            end = tuple(int(v) for v in np.round(point_b - OPENCV_TO_PIXEL + offset))
            cv2.line(canvas, start, end, color, line_width, cv2.LINE_AA)
            cv2.circle(canvas, start, 2, color, -1, cv2.LINE_AA)
            cv2.circle(canvas, end, 2, color, -1, cv2.LINE_AA)
    return canvas
