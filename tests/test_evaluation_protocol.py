"""Which generated frame stands for which target, and the camera path through the targets."""

import pytest
import torch
from scipy.spatial.transform import Rotation

from videoscene.errors import VideoSceneError
from videoscene.evaluation.protocol import fit_views, path_cameras, plan_frames
from videoscene.geometry.cameras import check_rigid
from videoscene.types import Cameras, Views


def test_lego_pair_ten_apart_in_seventeen_frames():
    plan = plan_frames((10, 20), range(10, 21), 17)
    assert plan.targets == tuple(range(10, 21))
    assert plan.slots[0] == 0 and plan.slots[-1] == 16
    assert len(set(plan.slots)) == len(plan.slots) and list(plan.slots) == sorted(plan.slots)
    assert plan.held_out == (False,) + (True,) * 9 + (False,)
    # Nine interior targets at tenths, fifteen interior slots at sixteenths: off by at most 1/40.
    assert plan.max_time_error == pytest.approx(0.025)
    assert all(abs(s - t) <= 0.025 + 1e-12 for s, t in zip(plan.slot_times, plan.times))
    assert plan.dropped == ()


def test_targets_on_slot_times_are_exact():
    plan = plan_frames((0, 16), range(0, 17, 2), 17)
    assert plan.slots == tuple(range(0, 17, 2)) and plan.max_time_error == 0.0


def test_more_targets_than_slots_keeps_the_best_fitting_ones():
    # RealEstate10K's index: 49 targets, every 2nd frame of a 96-frame gap; a 17-frame model.
    plan = plan_frames((0, 96), range(0, 97, 2), 17)
    assert plan.targets == tuple(range(0, 97, 6)) and plan.slots == tuple(range(17))
    assert plan.max_time_error == 0.0
    assert len(plan.dropped) == 49 - 17 and not set(plan.dropped) & set(plan.targets)


def test_reversed_context_pair_and_unsorted_duplicate_targets():
    plan = plan_frames((20, 10), [12, 18, 15, 18], 9)
    assert plan.targets == (18, 15, 12) and plan.times == (0.2, 0.5, 0.8)
    assert plan.slots == (2, 4, 6)


def test_bad_plans_are_one_line_errors():
    with pytest.raises(VideoSceneError, match="not between the context frames"):
        plan_frames((0, 10), [5, 12], 17)
    with pytest.raises(VideoSceneError, match="must differ"):
        plan_frames((3, 3), [3], 17)
    with pytest.raises(VideoSceneError, match="at least 3 frames"):
        plan_frames((0, 10), [5], 2)


def _camera(yaw_degrees: float, x: float) -> torch.Tensor:
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, :3] = torch.from_numpy(Rotation.from_euler("y", yaw_degrees, degrees=True).as_matrix())
    pose[0, 3] = x
    return pose


def test_path_passes_exactly_through_context_and_target_cameras():
    plan = plan_frames((0, 10), range(0, 11), 9)
    intrinsics = torch.tensor([[0.9, 0, 0.5], [0, 1.2, 0.5], [0, 0, 1]], dtype=torch.float64)
    poses = torch.stack([_camera(3.0 * k + 0.1 * k * k, 0.2 * k) for k in range(11)])
    context = Cameras(poses[[0, 10]], intrinsics.expand(2, 3, 3))
    targets = Cameras(poses[list(plan.targets)], intrinsics.expand(len(plan.targets), 3, 3))
    path, times = path_cameras(plan, context, targets)
    assert len(path) == 9 and torch.equal(times, torch.linspace(0, 1, 9, dtype=torch.float64))
    check_rigid(path.extrinsics, "path")
    for position, slot in enumerate(plan.slots):
        assert torch.equal(path.extrinsics[slot], targets.extrinsics[position])
    assert torch.equal(path.extrinsics[0], context.extrinsics[0]) and torch.equal(
        path.extrinsics[-1], context.extrinsics[1]
    )
    # Camera centres move monotonically along x, as the keyframes do.
    assert (path.extrinsics[1:, 0, 3] > path.extrinsics[:-1, 0, 3]).all()


def test_fit_views_crops_to_the_model_aspect_and_keeps_the_principal_point_centred():
    intrinsics = torch.tensor([[1.0, 0, 0.5], [0, 1.0, 0.5], [0, 0, 1]]).expand(2, 3, 3)
    views = Views(
        torch.rand(2, 3, 100, 100),
        torch.eye(4).expand(2, 4, 4),
        intrinsics,
        torch.ones(2),
        torch.full((2,), 10.0),
    )
    fitted = fit_views(views, (32, 48))
    assert fitted.image.shape == (2, 3, 32, 48)
    # A 100x100 image cropped to 67 rows (aspect 2:3) then resized: fy/H grows by 100/67, fx/W stays.
    assert fitted.intrinsics[0, 0, 0].item() == pytest.approx(1.0)
    assert fitted.intrinsics[0, 1, 1].item() == pytest.approx(100 / 67)
    assert fitted.intrinsics[0, 0, 2].item() == pytest.approx(0.5) and fitted.intrinsics[
        0, 1, 2
    ].item() == pytest.approx(0.5, abs=0.01)
