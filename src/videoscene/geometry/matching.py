"""SIFT feature matching between two images (Lowe's ratio test), in our pixel coordinates: what the
relative-pose estimate of unposed photos and the 3D-consistency metric both start from."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from jaxtyping import Float
from torch import Tensor

from videoscene.errors import VideoSceneError
from videoscene.image_io import to_uint8

# OpenCV puts the first pixel's centre at (0, 0); our pixel coordinates put the image corner there.
OPENCV_TO_PIXEL = 0.5


@dataclass
class MatchConfig:
    ratio: float = 0.75  # Lowe's ratio test
    max_features: int = 4000  # 0 = unlimited


@dataclass
class Matches:
    points_a: Float[np.ndarray, "match 2"]  # pixel coordinates, image corner at (0, 0)
    points_b: Float[np.ndarray, "match 2"]

    def __len__(self) -> int:
        return len(self.points_a)


def to_rgb_uint8(image: Float[Tensor, "3 height width"]) -> np.ndarray:
    if image.ndim != 3 or image.shape[0] != 3:
        raise VideoSceneError(f"expected an image [3, H, W] in [0, 1], got shape {list(image.shape)}")
    return to_uint8(image).permute(1, 2, 0).cpu().numpy()


def _to_gray_uint8(image: Float[Tensor, "3 height width"]) -> np.ndarray:
    return cv2.cvtColor(to_rgb_uint8(image), cv2.COLOR_RGB2GRAY)


def sift_matches(
    image_a: Float[Tensor, "3 height width"],
    image_b: Float[Tensor, "3 height width"],
    config: MatchConfig | None = None,
) -> Matches:
    """SIFT keypoints matched by nearest neighbour with Lowe's ratio test, in our pixel coordinates."""
    config = config or MatchConfig()
    sift = cv2.SIFT_create(nfeatures=config.max_features)
    keypoints_a, descriptors_a = sift.detectAndCompute(_to_gray_uint8(image_a), None)
    keypoints_b, descriptors_b = sift.detectAndCompute(_to_gray_uint8(image_b), None)
    empty = np.zeros((0, 2))
    if descriptors_a is None or descriptors_b is None or len(keypoints_a) < 2 or len(keypoints_b) < 2:
        return Matches(empty, empty.copy())
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(descriptors_a, descriptors_b, k=2)
    good = [
        best
        for best, second in (p for p in pairs if len(p) == 2)
        if best.distance < config.ratio * second.distance
    ]
    if not good:
        return Matches(empty, empty.copy())
    points_a = np.array([keypoints_a[m.queryIdx].pt for m in good], dtype=np.float64) + OPENCV_TO_PIXEL
    points_b = np.array([keypoints_b[m.trainIdx].pt for m in good], dtype=np.float64) + OPENCV_TO_PIXEL
    return Matches(points_a, points_b)
