import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from videoscene.errors import VideoSceneError
from videoscene.gaussians.ply import gaussians_from_points, load_ply, save_ply
from videoscene.gaussians.rasterizer import render
from videoscene.types import Gaussians


def some_gaussians(count: int = 50, degree: int = 3) -> Gaussians:
    """Gaussians in front of a camera at the origin looking down +z."""
    means = torch.rand(count, 3) * torch.tensor([2.0, 2.0, 2.0]) + torch.tensor([-1.0, -1.0, 3.0])
    return Gaussians(
        means=means,
        scales=torch.exp(torch.rand(count, 3) * 2 - 3.5),
        rotations=torch.randn(count, 4),
        harmonics=0.3 * torch.randn(count, (degree + 1) ** 2, 3),
        opacities=torch.rand(count) * 0.9 + 0.05,
    )


def batch_of_one(gaussians: Gaussians) -> Gaussians:
    return Gaussians(
        *(getattr(gaussians, n)[None] for n in ("means", "scales", "rotations", "harmonics", "opacities"))
    )


@pytest.mark.parametrize("degree", [0, 3, 4])
def test_write_then_read_gives_the_same_gaussians_and_render(tmp_path, degree):
    gaussians = some_gaussians(degree=degree)
    path = tmp_path / "scene.ply"
    save_ply(path, batch_of_one(gaussians))
    loaded = load_ply(path)
    for name in ("means", "rotations", "harmonics"):
        assert torch.equal(getattr(loaded, name), getattr(gaussians, name)), name
    # Logit opacities and log scales round-trip through float64, up to float32 rounding.
    torch.testing.assert_close(loaded.scales, gaussians.scales, rtol=2e-7, atol=0)
    torch.testing.assert_close(loaded.opacities, gaussians.opacities, rtol=2e-7, atol=1e-7)

    extrinsics = torch.eye(4)[None, None]
    intrinsics = torch.tensor([[1.0, 0, 0.5], [0, 1.0, 0.5], [0, 0, 1]])[None, None]
    before = render(batch_of_one(gaussians), extrinsics, intrinsics, (24, 24), backend="torch")
    after = render(batch_of_one(loaded), extrinsics, intrinsics, (24, 24), backend="torch")
    assert before.alpha.mean() > 0.05
    for name in ("color", "depth", "alpha"):
        torch.testing.assert_close(getattr(after, name), getattr(before, name), atol=1e-5, rtol=1e-5)


def test_file_has_the_inria_layout(tmp_path):
    gaussians = some_gaussians(count=3, degree=1)
    gaussians.opacities[:] = torch.tensor([0.5, 0.25, 0.75])
    path = tmp_path / "scene.ply"
    save_ply(path, gaussians)
    vertex = PlyData.read(str(path))["vertex"]
    names = [p.name for p in vertex.properties]
    assert names == (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(9)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )
    assert all(p.val_dtype == "f4" for p in vertex.properties)
    # Channel-major f_rest: the three band-1 coefficients of red, then of green, then of blue.
    np.testing.assert_array_equal(vertex["f_rest_0"], gaussians.harmonics[:, 1, 0].numpy())
    np.testing.assert_array_equal(vertex["f_rest_2"], gaussians.harmonics[:, 3, 0].numpy())
    np.testing.assert_array_equal(vertex["f_rest_3"], gaussians.harmonics[:, 1, 1].numpy())
    np.testing.assert_array_equal(vertex["f_rest_8"], gaussians.harmonics[:, 3, 2].numpy())
    np.testing.assert_allclose(vertex["opacity"], np.log([1.0, 1 / 3, 3.0]), atol=1e-6)
    np.testing.assert_allclose(vertex["scale_1"], np.log(gaussians.scales[:, 1].numpy()), rtol=1e-6)
    np.testing.assert_array_equal(vertex["rot_0"], gaussians.rotations[:, 0].numpy())  # w first
    assert np.all(vertex["nx"] == 0)


def test_bad_files_and_inputs_give_one_line_errors(tmp_path):
    with pytest.raises(VideoSceneError, match="does not exist"):
        load_ply(tmp_path / "missing.ply")
    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"not a ply file at all")
    with pytest.raises(VideoSceneError, match="not a readable PLY"):
        load_ply(garbage)
    points = np.zeros(4, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    plain = tmp_path / "points.ply"
    PlyData([PlyElement.describe(points, "vertex")]).write(str(plain))
    with pytest.raises(VideoSceneError, match="lacks 3D Gaussian properties"):
        load_ply(plain)
    odd = np.zeros(
        2, dtype=[(n, "f4") for n in ["x", "y", "z", "f_rest_0", "f_rest_1", "f_rest_2", "f_rest_3"]]
    )
    PlyData([PlyElement.describe(odd, "vertex")]).write(str(tmp_path / "odd.ply"))
    with pytest.raises(VideoSceneError, match="f_rest"):
        load_ply(tmp_path / "odd.ply")

    nan = some_gaussians(count=4)
    nan.means[0, 0] = float("nan")
    with pytest.raises(VideoSceneError, match="NaN"):
        save_ply(tmp_path / "nan.ply", nan)
    assert not list(tmp_path.glob("nan.ply*")) and not list(tmp_path.glob(".nan.ply*")), (
        "no half-written file"
    )
    with pytest.raises(VideoSceneError, match="one scene"):
        save_ply(
            tmp_path / "two.ply",
            Gaussians(
                *(
                    t[None].expand(2, *t.shape)
                    for t in (nan.means, nan.scales, nan.rotations, nan.harmonics, nan.opacities)
                )
            ),
        )


def test_gaussians_from_points_sizes_splats_by_neighbour_spacing():
    grid = torch.stack(torch.meshgrid(*(torch.arange(6.0),) * 3, indexing="ij"), -1).reshape(-1, 3) * 0.1
    gaussians = gaussians_from_points(grid, torch.rand(len(grid), 3), clip_quantile=1.0)
    # On a grid of spacing 0.1 the three nearest neighbours are all 0.1 away.
    torch.testing.assert_close(gaussians.scales, torch.full_like(grid, 0.1))
    assert gaussians.harmonics.shape == (len(grid), 1, 3) and torch.all(gaussians.opacities == 1)
