"""Moving Gaussians and cameras to another world frame (gaussians/transform.py) changes no rendered pixel, and
the Inria cameras.json beside a PLY holds the cameras' centres, rotations and pixel focal lengths."""

import json
import math

import pytest
import torch
from test_gaussians_ply import batch_of_one, some_gaussians
from weights_factory import random_rotation

from videoscene.gaussians.math import eval_sh, sh_rotation
from videoscene.gaussians.ply import save_cameras_json
from videoscene.gaussians.rasterizer import render
from videoscene.gaussians.transform import Y_UP, transform_cameras, transform_gaussians
from videoscene.types import Cameras


@pytest.mark.parametrize("degree", [1, 3, 4])
def test_rotated_coefficients_give_the_same_colour_along_the_rotated_direction(degree):
    generator = torch.Generator().manual_seed(degree)
    rotation = random_rotation(generator, torch.float64)
    harmonics = torch.randn(5, (degree + 1) ** 2, 3, generator=generator, dtype=torch.float64)
    directions = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    rotated = torch.einsum("jk,gkc->gjc", sh_rotation(degree, rotation), harmonics)
    torch.testing.assert_close(eval_sh(rotated, directions @ rotation.T), eval_sh(harmonics, directions))
    assert not torch.allclose(eval_sh(rotated, directions), eval_sh(harmonics, directions))


@pytest.mark.parametrize("name", ["y-up", "random"])
def test_a_rigid_motion_of_gaussians_and_cameras_renders_the_same_images(name):
    torch.manual_seed(0)
    gaussians = some_gaussians(count=60, degree=3)
    transform = Y_UP.clone()
    if name == "random":
        transform[:3, :3] = random_rotation(torch.Generator().manual_seed(1))
        transform[:3, 3] = torch.tensor([0.5, -2.0, 1.0])
    angle = 0.2
    extrinsics = torch.eye(4).repeat(2, 1, 1)
    extrinsics[1, :3, :3] = torch.tensor(
        [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]]
    )
    extrinsics[1, 0, 3] = -0.4
    cameras = Cameras(extrinsics, torch.tensor([[1.0, 0, 0.5], [0, 1.2, 0.5], [0, 0, 1]]).repeat(2, 1, 1))
    moved_cameras = transform_cameras(cameras, transform)
    moved = transform_gaussians(gaussians, transform)

    def images(g, c):
        return render(batch_of_one(g), c.extrinsics[None], c.intrinsics[None], (20, 24), backend="torch")

    before, after = images(gaussians, cameras), images(moved, moved_cameras)
    assert before.alpha.mean() > 0.05
    torch.testing.assert_close(after.color, before.color, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(after.alpha, before.alpha, atol=2e-5, rtol=1e-4)
    if name == "y-up":  # camera 0 looked down +z with y down; now it looks down −z with y up
        assert torch.equal(moved_cameras.extrinsics[0, :3, 2], torch.tensor([0.0, 0.0, -1.0]))
        assert torch.allclose(moved.means[:, 2], -gaussians.means[:, 2])


def test_cameras_json_has_the_inria_layout(tmp_path):
    extrinsics = torch.eye(4).repeat(2, 1, 1)
    extrinsics[1, :3, 3] = torch.tensor([0.3, -0.1, 0.2])
    intrinsics = torch.tensor([[0.9, 0, 0.5], [0, 1.35, 0.5], [0, 0, 1]]).repeat(2, 1, 1)
    save_cameras_json(tmp_path / "cameras.json", Cameras(extrinsics, intrinsics), (64, 96))
    entries = json.loads((tmp_path / "cameras.json").read_text())
    assert [e["id"] for e in entries] == [0, 1] and entries[1]["img_name"] == "00001"
    assert (entries[1]["width"], entries[1]["height"]) == (96, 64)
    assert entries[1]["fx"] == pytest.approx(0.9 * 96) and entries[1]["fy"] == pytest.approx(1.35 * 64)
    assert entries[1]["position"] == pytest.approx([0.3, -0.1, 0.2])
    assert entries[0]["rotation"] == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
