"""The typed containers of types.py: .to/.select over every tensor field (nested ones too), Cameras length,
Views.cameras and image_shape, Gaussians.sh_degree, length and covariances, check_finite."""

import math

import pytest
import torch
from scipy.spatial.transform import Rotation

from videoscene.errors import VideoSceneError
from videoscene.types import Cameras, Example, Gaussians, RenderOutput, Views, check_finite


def make_views(batch=2, views=3, height=4, width=6, index=True) -> Views:
    extrinsics = torch.eye(4).repeat(batch, views, 1, 1)
    extrinsics[..., 0, 3] = torch.arange(batch * views, dtype=torch.float32).view(batch, views)
    return Views(
        image=torch.rand(batch, views, 3, height, width),
        extrinsics=extrinsics,
        intrinsics=torch.tensor([[0.9, 0, 0.5], [0, 1.2, 0.5], [0, 0, 1]]).repeat(batch, views, 1, 1),
        near=torch.full((batch, views), 0.5),
        far=torch.full((batch, views), 20.0),
        index=torch.arange(batch * views).view(batch, views) if index else None,
    )


def make_gaussians(batch=2, count=5, degree=3, generator=None) -> Gaussians:
    return Gaussians(
        means=torch.randn(batch, count, 3, generator=generator),
        scales=torch.rand(batch, count, 3, generator=generator) + 0.1,
        rotations=torch.randn(batch, count, 4, generator=generator),
        harmonics=torch.randn(batch, count, (degree + 1) ** 2, 3, generator=generator),
        opacities=torch.rand(batch, count, generator=generator),
    )


def test_cameras_length_select_and_to():
    views = make_views(batch=4, views=1)
    cameras = Cameras(views.extrinsics[:, 0], views.intrinsics[:, 0])
    assert len(cameras) == 4
    picked = cameras.select(slice(1, 3))
    assert isinstance(picked, Cameras) and len(picked) == 2
    torch.testing.assert_close(picked.extrinsics[:, 0, 3], torch.tensor([1.0, 2.0]))
    assert torch.equal(picked.intrinsics, cameras.intrinsics[1:3])
    one = cameras.select(3)
    assert one.extrinsics.shape == (4, 4) and one.intrinsics.shape == (3, 3) and one.extrinsics[0, 3] == 3.0

    double = cameras.to(torch.float64)
    assert isinstance(double, Cameras) and double.extrinsics.dtype == double.intrinsics.dtype == torch.float64
    torch.testing.assert_close(double.extrinsics, cameras.extrinsics.double())
    assert cameras.extrinsics.dtype == torch.float32  # a new container; the original is left alone


def test_views_cameras_image_shape_and_select_keep_every_field():
    views = make_views()
    cameras = views.cameras
    assert isinstance(cameras, Cameras)
    assert cameras.extrinsics is views.extrinsics and cameras.intrinsics is views.intrinsics
    assert views.image_shape == (4, 6)

    second = views.select(1)  # the batch axis
    assert second.image.shape == (3, 3, 4, 6) and second.near.shape == (3,)
    assert torch.equal(second.index, torch.tensor([3, 4, 5]))
    assert torch.equal(second.image, views.image[1]) and torch.equal(second.far, views.far[1])

    ends = views.select((slice(None), [0, 2]))  # views 0 and 2 of every batch element
    assert ends.extrinsics.shape == (2, 2, 4, 4)
    assert torch.equal(ends.index, torch.tensor([[0, 2], [3, 5]]))
    torch.testing.assert_close(ends.extrinsics[..., 0, 3], torch.tensor([[0.0, 2.0], [3.0, 5.0]]))

    without_index = make_views(index=False).select(0)
    assert without_index.index is None and without_index.image.shape == (3, 3, 4, 6)


def test_example_to_and_select_reach_the_nested_views():
    example = Example(context=make_views(views=2), target=make_views(views=5), scene="room0")
    moved = example.to("cpu", torch.float64)
    assert moved.scene == "room0"
    for views in (moved.context, moved.target):
        assert views.image.dtype == views.extrinsics.dtype == views.near.dtype == torch.float64
    torch.testing.assert_close(moved.target.image, example.target.image.double())

    first = example.select(0)
    assert first.scene == "room0"
    assert first.context.image.shape == (2, 3, 4, 6) and first.target.image.shape == (5, 3, 4, 6)
    assert torch.equal(first.target.index, torch.arange(5))


@pytest.mark.parametrize(("d_sh", "degree"), [(1, 0), (4, 1), (9, 2), (16, 3), (25, 4)])
def test_gaussians_sh_degree_and_length(d_sh, degree):
    gaussians = make_gaussians(batch=2, count=7, degree=degree)
    assert gaussians.harmonics.shape[-2] == d_sh
    assert gaussians.sh_degree == degree
    assert len(gaussians) == 7  # Gaussians, not batch elements
    assert len(gaussians.select(0)) == 7 and gaussians.select(0).sh_degree == degree


def test_gaussians_select_splits_along_the_gaussian_axis():
    gaussians = make_gaussians(batch=2, count=6)
    part = gaussians.select((slice(None), slice(2, 5)))
    assert len(part) == 3 and part.means.shape == (2, 3, 3) and part.harmonics.shape == (2, 3, 16, 3)
    assert torch.equal(part.opacities, gaussians.opacities[:, 2:5])
    assert torch.equal(part.rotations, gaussians.rotations[:, 2:5])


def test_covariance_of_a_hand_made_gaussian():
    """90° about z maps x to y: scales (1, 2, 3) along the local axes are (2, 1, 3) along world x, y, z."""
    half = math.pi / 4
    gaussians = Gaussians(
        means=torch.zeros(1, 3),
        scales=torch.tensor([[1.0, 2.0, 3.0]]),
        rotations=torch.tensor([[math.cos(half), 0.0, 0.0, math.sin(half)]]),
        harmonics=torch.zeros(1, 1, 3),
        opacities=torch.ones(1),
    )
    torch.testing.assert_close(
        gaussians.covariances()[0], torch.diag(torch.tensor([4.0, 1.0, 9.0])), atol=1e-6, rtol=0
    )


def test_covariances_are_symmetric_psd_and_equal_r_s_s_r_transposed():
    gaussians = make_gaussians(batch=2, count=20, generator=torch.Generator().manual_seed(0)).to(
        torch.float64
    )
    covariances = gaussians.covariances()
    assert covariances.shape == (2, 20, 3, 3)
    torch.testing.assert_close(covariances, covariances.transpose(-1, -2), atol=1e-12, rtol=0)
    # Eigenvalues are the squared scales: positive semi-definite, with the scales as standard deviations.
    eigenvalues = torch.linalg.eigvalsh(covariances)
    torch.testing.assert_close(
        eigenvalues, gaussians.scales.square().sort(dim=-1).values, atol=1e-10, rtol=1e-10
    )
    # An independent Σ = R S Sᵀ Rᵀ: R from scipy (xyzw order), S = diag(scales).
    wxyz = gaussians.rotations.reshape(-1, 4).numpy()
    rotation = torch.from_numpy(Rotation.from_quat(wxyz[:, [1, 2, 3, 0]]).as_matrix())
    scale = torch.diag_embed(gaussians.scales.reshape(-1, 3))
    expected = rotation @ scale @ scale.transpose(-1, -2) @ rotation.transpose(-1, -2)
    torch.testing.assert_close(covariances.reshape(-1, 3, 3), expected, atol=1e-12, rtol=1e-10)
    # The quaternion's length does not matter (it is normalised, as in gsplat).
    longer = Gaussians(
        gaussians.means, gaussians.scales, 3.0 * gaussians.rotations, gaussians.harmonics, gaussians.opacities
    )
    torch.testing.assert_close(longer.covariances(), covariances, atol=1e-12, rtol=1e-10)


def test_render_output_select():
    output = RenderOutput(
        color=torch.rand(2, 3, 3, 4, 6), depth=torch.rand(2, 3, 4, 6), alpha=torch.rand(2, 3, 4, 6)
    )
    view = output.select((1, 2))
    assert view.color.shape == (3, 4, 6) and view.depth.shape == (4, 6)
    assert torch.equal(view.alpha, output.alpha[1, 2])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_check_finite_raises_one_line_naming_the_tensor(bad):
    check_finite("means", torch.randn(4, 3))  # finite: no error
    tensor = torch.zeros(4, 3)
    tensor[2, 1] = bad
    with pytest.raises(VideoSceneError, match="^means contains NaN or inf values") as error:
        check_finite("means", tensor)
    assert "\n" not in str(error.value)
