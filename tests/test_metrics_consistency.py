import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from videoscene.cli import main
from videoscene.data.re10k import decode_image
from videoscene.geometry.cameras import cameras_from_re10k_vector, denormalize_intrinsics, opengl_to_opencv
from videoscene.geometry.matching import Matches, sift_matches
from videoscene.metrics.consistency import draw_matches, pair_consistency, video_consistency

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def rotated(extrinsics: torch.Tensor, degrees: float, axis: str = "y") -> torch.Tensor:
    """The same camera centre, turned by `degrees` about its own axis."""
    turned = extrinsics.clone()
    turn = torch.from_numpy(Rotation.from_euler(axis, degrees, degrees=True).as_matrix()).to(extrinsics.dtype)
    turned[:3, :3] = extrinsics[:3, :3] @ turn
    return turned


# ---------------------------------------------------------------- a textured plane seen by two cameras


def plane_views(height=160, width=200):
    """Camera a at the origin looking at the plane z = 3; camera b moved and turned. Image b is image a warped
    by the plane-induced homography H = K (R − t nᵀ/d) K⁻¹, so every true match obeys the epipolar
    geometry."""
    rng = np.random.default_rng(0)
    texture = cv2.resize(
        rng.uniform(0, 1, (height // 6, width // 6)).astype(np.float32),
        (width, height),
        interpolation=cv2.INTER_CUBIC,
    )
    image_a = np.clip(texture, 0, 1)
    intrinsics = torch.tensor([[0.9, 0, 0.5], [0, 0.9 * width / height, 0.5], [0, 0, 1]], dtype=torch.float64)
    extrinsics_a = torch.eye(4, dtype=torch.float64)
    extrinsics_b = rotated(torch.eye(4, dtype=torch.float64), -4.0)
    extrinsics_b[:3, 3] = torch.tensor([0.3, 0.05, 0.1], dtype=torch.float64)
    pose = torch.linalg.inv(extrinsics_b) @ extrinsics_a  # x_b = R x_a + t
    k = denormalize_intrinsics(intrinsics, width, height)
    normal, distance = torch.tensor([0, 0, 1.0], dtype=torch.float64), 3.0
    homography = k @ (pose[:3, :3] + pose[:3, 3:] @ normal[None] / distance) @ torch.linalg.inv(k)
    shift = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])  # our pixel coordinates -> OpenCV's
    homography_opencv = shift @ homography.numpy() @ np.linalg.inv(shift)
    image_b = cv2.warpPerspective(
        image_a, homography_opencv, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )
    image_a, image_b = (
        torch.from_numpy(np.clip(image, 0, 1)).expand(3, -1, -1).float() for image in (image_a, image_b)
    )
    return image_a, image_b, extrinsics_a, extrinsics_b, intrinsics


def test_matches_on_a_plane_obey_the_true_cameras_and_not_a_turned_one():
    image_a, image_b, extrinsics_a, extrinsics_b, intrinsics = plane_views()
    good = pair_consistency(image_a, image_b, extrinsics_a, intrinsics, extrinsics_b, intrinsics)
    assert good.num_matches > 50
    assert good.median_sampson_px < 0.3 and good.share_within > 0.9
    bad = pair_consistency(
        image_a, image_b, extrinsics_a, intrinsics, rotated(extrinsics_b, 2.0, "x"), intrinsics
    )
    assert bad.num_matches == good.num_matches
    assert bad.median_sampson_px > 10 * good.median_sampson_px and bad.share_within < 0.2
    assert bad.ransac_inliers == good.ransac_inliers  # RANSAC looks at the matches only


def test_featureless_frames_score_no_matches():
    blank = torch.full((3, 32, 32), 0.5)
    result = pair_consistency(blank, blank, torch.eye(4), torch.eye(3), torch.eye(4), torch.eye(3))
    assert result.num_matches == 0 and np.isnan(result.median_sampson_px) and result.ransac_inliers == 0


def test_draw_matches_colours_inliers_green_and_outliers_red():
    black = torch.zeros(3, 40, 50)
    matches = Matches(np.array([[10.5, 10.5], [30.5, 30.5]]), np.array([[12.5, 20.5], [40.5, 5.5]]))
    figure = draw_matches(black, black, matches, np.array([True, False]))
    assert figure.shape == (40, 100, 3) and figure.dtype == np.uint8
    inlier_end, outlier_end = figure[20, 50 + 12], figure[5, 50 + 40]
    assert inlier_end[1] > 150 and inlier_end[0] < 50
    assert outlier_end[0] > 150 and outlier_end[1] < 50


# ---------------------------------------------------------------- converted NeRF-synthetic lego (shared data)


@pytest.fixture(scope="module")
def lego(tmp_path_factory):
    if not (SHARED_DATA / "lego_test_400").is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    out = tmp_path_factory.mktemp("lego") / "re10k"
    assert (
        main(
            [
                "data",
                "convert",
                "--format",
                "nerf",
                "--input",
                str(SHARED_DATA / "lego_test_400"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    chunk = torch.load(out / "test" / "000000.torch", weights_only=True)
    return out, chunk[0]


@pytest.mark.shared_data
def test_converted_lego_is_a_re10k_chunk_with_the_blender_cameras(lego):
    out, scene = lego
    assert json.loads((out / "test" / "index.json").read_text()) == {"lego_test_400": "000000.torch"}
    assert scene["cameras"].shape == (200, 18) and len(scene["images"]) == 200
    assert all(
        image.dtype == torch.uint8 and bytes(image[:4].tolist()) == b"\x89PNG" for image in scene["images"]
    )
    assert decode_image(scene["images"][0]).shape == (3, 400, 400)
    extrinsics, intrinsics = cameras_from_re10k_vector(scene["cameras"])
    torch.testing.assert_close(
        intrinsics[0, 0, 0], torch.tensor(0.5 / np.tan(0.6911112070083618 / 2), dtype=torch.float32)
    )
    meta = json.loads((SHARED_DATA / "lego_test_400" / "transforms_test.json").read_text())
    blender = torch.tensor(meta["frames"][7]["transform_matrix"], dtype=torch.float64)
    torch.testing.assert_close(extrinsics[7], opengl_to_opencv(blender).float(), atol=1e-5, rtol=0)


@pytest.mark.shared_data
def test_lego_sift_matches_lie_on_the_stored_epipolar_lines(lego):
    _, scene = lego
    extrinsics, intrinsics = cameras_from_re10k_vector(scene["cameras"])
    frames = torch.stack([decode_image(scene["images"][i]) for i in range(11)])
    result = video_consistency(
        frames, extrinsics[:11], intrinsics[:11], gap=5
    )  # pairs (r_i, r_i+5), i = 0..5
    assert result.num_pairs == 6 and result.num_matches > 300
    assert result.median_sampson_px < 1.0 and result.share_within > 0.6
    assert result.ransac_inlier_ratio > 0.6
    assert all(pair.median_sampson_px < 1.0 for pair in result.pairs)


@pytest.mark.shared_data
def test_lego_with_a_turned_camera_scores_clearly_worse(lego):
    _, scene = lego
    extrinsics, intrinsics = cameras_from_re10k_vector(scene["cameras"])
    frame_a, frame_b = decode_image(scene["images"][0]), decode_image(scene["images"][5])
    good = pair_consistency(frame_a, frame_b, extrinsics[0], intrinsics[0], extrinsics[5], intrinsics[5])
    bad = pair_consistency(
        frame_a, frame_b, extrinsics[0], intrinsics[0], rotated(extrinsics[5], 3.0), intrinsics[5]
    )
    assert good.median_sampson_px < 1.0
    assert bad.median_sampson_px > 3.0 and bad.median_sampson_px > 5 * good.median_sampson_px
    assert bad.share_within < 0.5 * good.share_within
    figure = draw_matches(frame_a, frame_b, sift_matches(frame_a, frame_b), good.inlier_mask)
    assert figure.shape == (400, 800, 3)


def test_ransac_survives_small_match_sets_that_abort_opencv_magsac():
    # Regression: OpenCV 5's USAC_MAGSAC raises (-215) !model.empty() on this 26-match pair.
    import torch

    from videoscene.data.synthetic import SynthConfig, render_scene
    from videoscene.geometry.matching import sift_matches
    from videoscene.metrics.consistency import ransac_inliers

    frames = render_scene(0, 0, 17, 96, 128, SynthConfig(supersample=1))[0]
    frames = torch.as_tensor(frames).permute(0, 3, 1, 2).float() / 255
    matches = sift_matches(frames[0], frames[2])
    inliers = ransac_inliers(matches)
    assert inliers.shape == (len(matches),) and inliers.sum() > len(matches) // 2
