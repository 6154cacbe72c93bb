"""The evaluation loop on a tiny synthetic scene, with methods that render the scene exactly (the procedural
ray tracer at the requested cameras) or with a deliberate camera error: the 3D-consistency metric must tell
them apart, and ground truth must score sub-pixel. With the scene's depth stored beside it, quality is also
scored apart on the pixels the context views see and on those they do not."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from videoscene.data.depth import DEPTH_FOLDER, depth_path, read_depth, write_depth
from videoscene.data.evaluation_index import IndexEntry
from videoscene.data.re10k import iter_scenes, scene_from_frames, write_split
from videoscene.data.synthetic import SynthConfig, render_scene, render_view, sample_scene
from videoscene.errors import LoadError, VideoSceneError
from videoscene.evaluation.methods import FAMILIES, MethodFamily, MethodResources, build_method, parse_method
from videoscene.evaluation.runner import EvalConfig, evaluate, prepare_scene, score_frames

FAST = SynthConfig(supersample=1)
INDEX = {
    "room": IndexEntry((0, 16), tuple(range(0, 17, 2))),
    "absent": IndexEntry((0, 4), (2,)),
    "skipped": None,
}
SEEN_UNSEEN = ("psnr_seen", "psnr_unseen", "ssim_seen", "ssim_unseen", "unseen_share")


@pytest.fixture(scope="module")
def rendered():
    """Scene 0 of seed 0: 17 frames at 96x128 (aspect 4:3, so evaluating at 64x96 crops and resizes)."""
    return render_scene(0, 0, 17, 96, 128, FAST)


def write_room(folder, rendered, with_depth: bool):
    frames, extrinsics, intrinsics, depth = rendered
    write_split(
        folder,
        [scene_from_frames("room", frames, torch.from_numpy(extrinsics), torch.from_numpy(intrinsics))],
    )
    if with_depth:  # as `videoscene data synth --depth` stores it
        (folder / DEPTH_FOLDER).mkdir()
        write_depth(depth_path(folder, "room"), depth)
    return folder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, rendered):
    return write_room(tmp_path_factory.mktemp("synthetic") / "test", rendered, with_depth=False)


@pytest.fixture(scope="module")
def data_with_depth(tmp_path_factory, rendered):
    return write_room(tmp_path_factory.mktemp("synthetic_depth") / "test", rendered, with_depth=True)


def ray_traced(error_degrees: float):
    """A method that renders the true scene at each path camera, turned by `error_degrees` about a random
    axis per frame (0: the ground truth itself, at any camera)."""
    room, _ = sample_scene(0, 0, FAST)

    def build(spec, resources):
        def generate(request):
            rng = np.random.default_rng(request.seed)
            frames = []
            for extrinsics, intrinsics in zip(
                request.path.extrinsics.double().numpy(), request.path.intrinsics.double().numpy()
            ):
                axis = rng.normal(size=3)
                turn = Rotation.from_rotvec(
                    np.deg2rad(error_degrees) * axis / np.linalg.norm(axis)
                ).as_matrix()
                pose = extrinsics.copy()
                pose[:3, :3] = pose[:3, :3] @ turn
                image, _ = render_view(room, pose, intrinsics, *request.image_shape, FAST.supersample)
                frames.append(torch.from_numpy(image).permute(2, 0, 1).float() / 255)
            return torch.stack(frames)

        return generate

    return build


@pytest.fixture
def methods(monkeypatch):
    monkeypatch.setitem(FAMILIES, "truth", MethodFamily(ray_traced(0.0), "truth"))
    monkeypatch.setitem(FAMILIES, "camera-error", MethodFamily(ray_traced(2.0), "camera-error"))
    resources = MethodResources(None, torch.device("cpu"))
    return {
        name: build_method(parse_method(name), resources) for name in ("nearest", "truth", "camera-error")
    }


def test_ground_truth_scores_subpixel_and_a_camera_error_scores_worse(data_dir, methods):
    result = evaluate(data_dir, INDEX, methods, EvalConfig(image_size=(64, 96), num_frames=17))
    scores = {row.method: row for row in result.per_scene}
    assert [row.scene for row in result.per_scene] == [
        "room"
    ] * 4  # "absent" is not in the data, "skipped" is null
    assert list(scores) == ["ground-truth", "nearest", "truth", "camera-error"]
    truth, wrong, nearest, reference = (
        scores["truth"],
        scores["camera-error"],
        scores["nearest"],
        scores["ground-truth"],
    )
    assert truth.num_matches >= 30
    assert truth.sampson_px < 0.5 and truth.share_within_1px > 0.8
    assert wrong.sampson_px > 3 * truth.sampson_px and wrong.sampson_px > 0.5
    assert wrong.share_within_1px < truth.share_within_1px - 0.2
    # Quality against ground truth that was cropped and resized the same way as the cameras were adjusted.
    assert truth.psnr > 30 and truth.ssim > 0.9
    assert nearest.psnr < truth.psnr - 5 and wrong.psnr < truth.psnr - 3
    assert truth.targets == tuple(range(0, 17, 2)) and truth.max_time_error == 0.0
    assert np.isfinite(truth.temporal_error) and truth.seconds > 0
    # The reference row scores the ground-truth frames themselves: sub-pixel as well, nothing else measured.
    assert reference.sampson_px < 0.5 and reference.share_within_1px > 0.8
    assert np.isnan(reference.psnr) and np.isnan(reference.seconds) and np.isnan(reference.temporal_error)
    # Without depth in the split, the seen/unseen scores are not measured (null in metrics.json).
    assert all(np.isnan(getattr(row, key)) for row in scores.values() for key in SEEN_UNSEEN)
    assert all(truth.record()[key] is None for key in SEEN_UNSEEN)
    assert set(result.showcase.frames) == {"nearest", "truth", "camera-error"}
    assert result.showcase.frames["truth"].shape == (9, 3, 64, 96)


def test_at_native_resolution_ground_truth_is_reproduced_exactly(data_dir, methods):
    truth = {"truth": methods["truth"]}
    _, row = evaluate(
        data_dir,
        {"room": IndexEntry((0, 16), (4, 8, 12))},
        truth,
        EvalConfig(image_size=(96, 128), num_frames=9),
    ).per_scene
    assert (
        row.method == "truth" and row.psnr > 60
    )  # same cameras, same renderer: the frames at the target slots are the targets


def test_same_seed_same_metrics(data_dir, methods):
    config = EvalConfig(image_size=(64, 96), num_frames=9, seed=5)
    chosen = {name: methods[name] for name in ("nearest", "camera-error")}
    first, second = (
        [
            {k: v for k, v in row.record().items() if k != "seconds"}
            for row in evaluate(data_dir, INDEX, chosen, config).per_scene
        ]
        for _ in range(2)
    )
    assert first == second


def test_index_without_these_scenes_is_an_error(data_dir, methods):
    with pytest.raises(VideoSceneError, match="none of the index's 1 scenes"):
        evaluate(
            data_dir, {"elsewhere": IndexEntry((0, 4), (2,))}, {"nearest": methods["nearest"]}, EvalConfig()
        )


def test_a_method_returning_the_wrong_frame_count_is_named(data_dir, monkeypatch):
    short = MethodFamily(
        lambda spec, resources: lambda request: torch.zeros(3, 3, *request.image_shape), "short"
    )
    monkeypatch.setitem(FAMILIES, "short", short)
    generate = build_method(parse_method("short"), MethodResources(None, torch.device("cpu")))
    with pytest.raises(
        VideoSceneError, match=r"method short returned frames \[3, 3, 64, 96\] for scene room; expected \[17"
    ):
        evaluate(data_dir, INDEX, {"short": generate}, EvalConfig())


def test_with_depth_quality_is_scored_apart_on_seen_and_unseen_pixels(data_with_depth, methods):
    chosen = {name: methods[name] for name in ("nearest", "truth")}
    result = evaluate(data_with_depth, INDEX, chosen, EvalConfig(image_size=(64, 96), num_frames=17))
    reference, nearest, truth = result.per_scene
    # The camera moves, so a little of the held-out targets is seen by neither context frame (0.3 % here:
    # near the image borders and beside the furniture), the same for every method.
    assert 0 < truth.unseen_share < 0.1 and nearest.unseen_share == truth.unseen_share
    assert all(np.isfinite(getattr(row, key)) for row in (nearest, truth) for key in SEEN_UNSEEN)
    assert truth.psnr_seen > 30 and truth.ssim_seen > 0.9 and truth.psnr_unseen > 25
    assert nearest.psnr_unseen < truth.psnr_unseen - 5 and nearest.psnr_seen < truth.psnr_seen - 5
    assert all(np.isnan(getattr(reference, key)) for key in SEEN_UNSEEN)
    # The other scores do not depend on whether the split has depth.
    assert truth.psnr > 30 and np.isfinite(truth.sampson_px)


def test_ground_truth_frames_score_the_psnr_cap_on_seen_and_unseen_pixels(data_with_depth):
    scene = next(iter_scenes(data_with_depth))
    depth = read_depth(data_with_depth, scene.key, len(scene))
    config = EvalConfig(image_size=(64, 96), num_frames=17)
    prepared = prepare_scene(scene, INDEX["room"], config, depth)
    unseen = prepared.unseen
    assert unseen.shape == (9, 64, 96) and unseen.dtype == torch.bool
    assert not unseen[0].any() and not unseen[-1].any()  # the context frames see themselves
    frames = torch.zeros(17, 3, 64, 96)
    frames[list(prepared.plan.slots)] = prepared.targets.image
    row = score_frames("copy", frames, 0.0, prepared, config)
    # Identical pixels: the PSNR cap of metrics/image.py (MSE floored at 1e-10) on both regions, SSIM 1.
    assert row.psnr_seen == pytest.approx(100.0) and row.psnr_unseen == pytest.approx(100.0)
    assert row.ssim_seen == pytest.approx(1.0) and row.ssim_unseen == pytest.approx(1.0)
    assert row.unseen_share == pytest.approx(unseen[1:-1].float().mean().item())
    with pytest.raises(LoadError, match="depth maps are 96x100 but its frames 96x128"):
        prepare_scene(scene, INDEX["room"], config, depth[..., :100])
