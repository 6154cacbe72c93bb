"""The tiled torch rasterizer against its brute-force twin (forward and gradients), against gsplat on a
GPU, and on a real point cloud."""

import importlib.metadata
import logging
import math
import sys
import types

import numpy as np
import pytest
import torch
from shape_checks import unchecked

from videoscene.errors import VideoSceneError
from videoscene.gaussians import rasterizer
from videoscene.gaussians.ply import gaussians_from_points
from videoscene.gaussians.rasterizer import (
    TorchRasterizerConfig,
    bin_into_tiles,
    gsplat_available,
    gsplat_cuda_error,
    project_gaussians,
    render,
    render_reference,
)
from videoscene.types import Gaussians

PARAMETERS = ("means", "scales", "rotations", "harmonics", "opacities")


def look_at(eye: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """OpenCV camera-to-world looking from `eye` at `target`, world -y up."""
    forward = torch.nn.functional.normalize(target - eye, dim=0)
    right = torch.nn.functional.normalize(
        torch.linalg.cross(forward, eye.new_tensor([0.0, -1.0, 0.0])), dim=0
    )
    down = torch.linalg.cross(forward, right)
    camera_to_world = torch.eye(4, dtype=eye.dtype)
    camera_to_world[:3, :3] = torch.stack([right, down, forward], dim=1)
    camera_to_world[:3, 3] = eye
    return camera_to_world


def random_scene(
    seed: int,
    batch: int = 1,
    views: int = 2,
    count: int = 40,
    degree: int = 3,
    spread: float = 1.5,
    camera_distance: float = 4.0,
    log_scale: tuple[float, float] = (-3.0, -1.0),
    opacity: tuple[float, float] = (0.05, 0.95),
    dtype=torch.float64,
):
    generator = torch.Generator().manual_seed(seed)

    def uniform(*shape, low=0.0, high=1.0):
        return low + (high - low) * torch.rand(*shape, generator=generator, dtype=torch.float64)

    gaussians = Gaussians(
        means=uniform(batch, count, 3, low=-spread, high=spread),
        scales=uniform(batch, count, 3, low=log_scale[0], high=log_scale[1]).exp(),
        rotations=torch.randn(batch, count, 4, generator=generator, dtype=torch.float64),
        harmonics=0.4
        * torch.randn(batch, count, (degree + 1) ** 2, 3, generator=generator, dtype=torch.float64),
        opacities=uniform(batch, count, low=opacity[0], high=opacity[1]),
    )
    angles = uniform(batch, views, high=2 * math.pi)
    heights = uniform(batch, views, low=-0.5, high=0.5)
    extrinsics = torch.stack(
        [
            torch.stack(
                [
                    look_at(
                        camera_distance * torch.stack([torch.cos(a), h, torch.sin(a)]),
                        uniform(3, low=-0.2, high=0.2),
                    )
                    for a, h in zip(angles[b], heights[b])
                ]
            )
            for b in range(batch)
        ]
    )
    focal = uniform(batch, views, low=0.8, high=1.2)
    intrinsics = torch.zeros(batch, views, 3, 3, dtype=torch.float64)
    intrinsics[..., 0, 0], intrinsics[..., 1, 1] = focal, focal * 1.3
    intrinsics[..., 0, 2], intrinsics[..., 1, 2] = uniform(batch, views, low=0.4, high=0.6), 0.5
    intrinsics[..., 2, 2] = 1
    return gaussians.to(dtype), extrinsics.to(dtype), intrinsics.to(dtype)


def with_grad(gaussians: Gaussians) -> Gaussians:
    for name in PARAMETERS:
        getattr(gaussians, name).requires_grad_(True)
    return gaussians


def weighted_sum(output, seed: int = 7):
    """A scalar that depends on every output pixel with fixed random weights."""
    generator = torch.Generator().manual_seed(seed)
    return sum(
        (
            getattr(output, name)
            * torch.randn(getattr(output, name).shape, generator=generator, dtype=output.color.dtype)
        ).sum()
        for name in ("color", "depth", "alpha")
    )


def assert_twins_agree(
    gaussians,
    extrinsics,
    intrinsics,
    image_shape,
    background=None,
    config=None,
    views_per_chunk=None,
    **kwargs,
):
    gaussians = with_grad(gaussians)
    reference = render_reference(gaussians, extrinsics, intrinsics, image_shape, background, **kwargs)
    tiled = render(
        gaussians,
        extrinsics,
        intrinsics,
        image_shape,
        background,
        backend="torch",
        config=config,
        views_per_chunk=views_per_chunk,
        **kwargs,
    )
    for name in ("color", "depth", "alpha"):
        torch.testing.assert_close(getattr(tiled, name), getattr(reference, name), atol=1e-10, rtol=1e-10)
    parameters = [getattr(gaussians, name) for name in PARAMETERS]
    expected = torch.autograd.grad(weighted_sum(reference), parameters)
    actual = torch.autograd.grad(weighted_sum(tiled), parameters)
    for name, got, want in zip(PARAMETERS, actual, expected):
        assert want.abs().max() > 0, f"no gradient reached {name}: the scene tests nothing"
        torch.testing.assert_close(got, want, atol=1e-9 * want.abs().max().item(), rtol=1e-7, msg=name)
    return reference


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_on_random_scenes(seed):
    # 21 x 30 is not a whole number of tiles, so partial tiles are exercised too.
    reference = assert_twins_agree(*random_scene(seed), (21, 30))
    assert 0.05 < reference.alpha.mean() < 0.95


def test_matches_reference_when_overlapping_gaussians_saturate():
    # Many large, nearly opaque Gaussians on top of each other: pixels stop early (T <= 1e-4) and some
    # opacities are 1, so the 0.999 clamp is hit.
    gaussians, extrinsics, intrinsics = random_scene(
        3, count=60, spread=0.4, log_scale=(-1.5, -0.8), opacity=(0.85, 1.0)
    )
    gaussians.opacities[:, :10] = 1.0
    reference = assert_twins_agree(gaussians, extrinsics, intrinsics, (20, 24))
    assert (reference.alpha > 0.999).any(), "no pixel saturated: the early stop is not exercised"


def test_matches_reference_with_gaussians_behind_and_beside_the_camera():
    # Cameras inside the cloud: some Gaussians are behind the near plane, some just outside the
    # frustum where the Jacobian clamp applies, and some very close and large.
    gaussians, extrinsics, intrinsics = random_scene(
        4, count=50, spread=1.5, camera_distance=0.7, log_scale=(-2.5, -1.0), opacity=(0.2, 0.9)
    )
    world_to_camera = torch.linalg.inv(extrinsics)
    depth = (world_to_camera[:, :, None, :3, :3] @ gaussians.means[:, None, :, :, None]).squeeze(-1)[..., 2]
    depth = depth + world_to_camera[:, :, None, 2, 3]
    assert (depth < 0.2).any() and (depth > 0.2).any()
    assert_twins_agree(gaussians, extrinsics, intrinsics, (18, 26), near=0.2)


def test_matches_reference_batched_with_background_and_lower_sh_degree():
    gaussians, extrinsics, intrinsics = random_scene(5, batch=2, views=3, count=30, degree=4)
    background = torch.tensor([[0.2, 0.5, 0.9], [1.0, 0.0, 0.3]], dtype=torch.float64)
    assert_twins_agree(gaussians, extrinsics, intrinsics, (16, 20), background, sh_degree=2)


def test_float32_forward_matches_reference():
    gaussians, extrinsics, intrinsics = random_scene(6, dtype=torch.float32)
    reference = render_reference(gaussians, extrinsics, intrinsics, (21, 30))
    tiled = render(gaussians, extrinsics, intrinsics, (21, 30), backend="torch")
    torch.testing.assert_close(tiled.color, reference.color, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tiled.alpha, reference.alpha, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tiled.depth, reference.depth, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("tile_size, chunk_elements", [(1, 64), (3, 200), (16, 10**7)])
def test_tiling_and_chunking_do_not_change_the_result(tile_size, chunk_elements):
    gaussians, extrinsics, intrinsics = random_scene(7, count=60)
    gaussians = with_grad(gaussians)
    config = TorchRasterizerConfig(tile_size=tile_size, chunk_elements=chunk_elements)
    baseline = render(gaussians, extrinsics, intrinsics, (19, 23), backend="torch")
    varied = render(gaussians, extrinsics, intrinsics, (19, 23), backend="torch", config=config)
    for name in ("color", "depth", "alpha"):
        torch.testing.assert_close(getattr(varied, name), getattr(baseline, name), atol=1e-12, rtol=1e-12)
    parameters = [getattr(gaussians, name) for name in PARAMETERS]
    for got, want in zip(
        torch.autograd.grad(weighted_sum(varied), parameters),
        torch.autograd.grad(weighted_sum(baseline), parameters),
    ):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-9)
    # Memory bound: every chunk but single-tile ones stays within the element budget.
    with torch.no_grad():
        projected = project_gaussians(gaussians, extrinsics, intrinsics, (19, 23), 0.01, 1e10, 3)
        bins = bin_into_tiles(projected, (19, 23), config)
    assert len(bins.chunks) > 0
    for tiles, longest in bins.chunks:
        assert len(tiles) == 1 or len(tiles) * longest * tile_size**2 <= chunk_elements


@pytest.mark.parametrize("views_per_chunk", [1, 2])
def test_view_chunks_match_the_reference_twin(views_per_chunk):
    # 2 batch elements x 3 views: chunks of 1 and of 2 (+ a last chunk of 1), forward and gradients.
    gaussians, extrinsics, intrinsics = random_scene(11, batch=2, views=3, count=30)
    background = torch.tensor([[0.2, 0.5, 0.9], [1.0, 0.0, 0.3]], dtype=torch.float64)
    assert_twins_agree(
        gaussians, extrinsics, intrinsics, (15, 18), background, views_per_chunk=views_per_chunk
    )


def saved_tensor_bytes(function):
    """Run `function` and count the bytes autograd saves for backward outside any checkpoint."""
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = function()
    return result, total


def test_view_chunks_change_neither_images_nor_gradients_and_keep_no_intermediates(monkeypatch):
    gaussians, extrinsics, intrinsics = random_scene(12, batch=2, views=5, count=60)
    gaussians = with_grad(gaussians)
    parameters = [getattr(gaussians, name) for name in PARAMETERS]

    def run(**options):
        output, saved = saved_tensor_bytes(
            lambda: render(gaussians, extrinsics, intrinsics, (19, 23), backend="torch", **options)
        )
        return output, torch.autograd.grad(weighted_sum(output), parameters), saved

    whole, whole_gradients, whole_saved = run()
    # The default chunk size comes from the (image x Gaussian) pair budget: 2 x 2 x 60 pairs per chunk here.
    monkeypatch.setitem(rasterizer.VIEW_CHUNK_PAIRS, "torch", 2 * 2 * 60)
    for options in ({"views_per_chunk": 1}, {"views_per_chunk": 3}, {}):
        chunked, chunked_gradients, chunked_saved = run(**options)
        for name in ("color", "depth", "alpha"):
            torch.testing.assert_close(getattr(chunked, name), getattr(whole, name), atol=1e-12, rtol=1e-12)
        for name, got, want in zip(PARAMETERS, chunked_gradients, whole_gradients):
            torch.testing.assert_close(got, want, atol=1e-12 * want.abs().max().item(), rtol=1e-10, msg=name)
        # Checkpointed chunks keep only their inputs for backward, not the per-view projections and bins.
        assert chunked_saved < whole_saved / 10, (options, chunked_saved, whole_saved)
    with torch.no_grad():  # without gradients the chunks are written into images allocated once
        chunked = render(gaussians, extrinsics, intrinsics, (19, 23), backend="torch", views_per_chunk=2)
    for name in ("color", "depth", "alpha"):
        torch.testing.assert_close(getattr(chunked, name), getattr(whole, name), atol=1e-12, rtol=1e-12)


def test_gsplat_without_its_cuda_code_falls_back_or_names_nvcc(monkeypatch, caplog):
    monkeypatch.setattr(rasterizer, "gsplat_available", lambda: True)
    monkeypatch.setattr(rasterizer, "gsplat_cuda_error", lambda: "no CUDA toolkit found")
    rasterizer._warn_gsplat_fallback.cache_clear()
    with caplog.at_level(logging.WARNING, logger=rasterizer.__name__):
        assert rasterizer._choose_backend("auto", True, {torch.float32}) == "torch"
        assert rasterizer._choose_backend("auto", True, {torch.float32}) == "torch"
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1, "the fallback is said once"
    assert "nvcc" in warnings[0] and "torch renderer" in warnings[0] and "\n" not in warnings[0]
    with pytest.raises(VideoSceneError, match=r"nvcc.*backend='torch'"):
        rasterizer._choose_backend("gsplat", True, {torch.float32})
    rasterizer._warn_gsplat_fallback.cache_clear()


@pytest.mark.parametrize(
    "backend_module, reason",
    [(types.SimpleNamespace(_C=None), "no CUDA toolkit found"), (types.SimpleNamespace(), "ImportError")],
)
def test_gsplat_cuda_error_reports_a_missing_toolkit_or_a_failed_build(monkeypatch, backend_module, reason):
    # gsplat 1.5 leaves _C as None without nvcc; a failed build fails the import of gsplat.cuda._backend.
    for name, module in (
        ("gsplat", types.ModuleType("gsplat")),
        ("gsplat.cuda", types.ModuleType("gsplat.cuda")),
        ("gsplat.cuda._backend", backend_module),
    ):
        monkeypatch.setitem(sys.modules, name, module)
    gsplat_cuda_error.cache_clear()
    try:
        assert gsplat_cuda_error().startswith(reason)
    finally:
        gsplat_cuda_error.cache_clear()


def test_empty_view_shows_the_background():
    gaussians, extrinsics, intrinsics = random_scene(8, count=5)
    gaussians.means[...] = extrinsics[0, 0, :3, 3] - 10 * extrinsics[0, 0, :3, 2]  # all behind camera 0
    background = torch.tensor([[0.1, 0.2, 0.3]], dtype=torch.float64)
    output = render(gaussians, extrinsics[:, :1], intrinsics[:, :1], (8, 8), background, backend="torch")
    assert torch.all(output.alpha == 0) and torch.all(output.depth == 0)
    torch.testing.assert_close(output.color, background[:, None, :, None, None].expand_as(output.color))


def test_bad_inputs_raise_one_line_errors():
    gaussians, extrinsics, intrinsics = random_scene(9, count=4)
    shape = (8, 8)
    with pytest.raises(VideoSceneError, match="batched Gaussians"):
        render(gaussians.select(0), extrinsics, intrinsics, shape)
    with unchecked(), pytest.raises(VideoSceneError, match="intrinsics must have shape"):
        render(gaussians, extrinsics, intrinsics[:, :1], shape)
    skewed = extrinsics.clone()
    skewed[0, 0, 0, 0] += 0.5
    with pytest.raises(VideoSceneError, match="not rigid"):
        render(gaussians, skewed, intrinsics, shape)
    broken = Gaussians(
        gaussians.means.clone(),
        gaussians.scales,
        gaussians.rotations,
        gaussians.harmonics,
        gaussians.opacities,
    )
    broken.means[0, 0, 0] = float("nan")
    with pytest.raises(VideoSceneError, match="NaN"):
        render(broken, extrinsics, intrinsics, shape)
    with pytest.raises(VideoSceneError, match="near < far"):
        render(gaussians, extrinsics, intrinsics, shape, near=2.0, far=1.0)
    with pytest.raises(VideoSceneError, match="unknown rasterizer backend"):
        render(gaussians, extrinsics, intrinsics, shape, backend="vulkan")
    with pytest.raises(VideoSceneError, match="views_per_chunk"):
        render(gaussians, extrinsics, intrinsics, shape, views_per_chunk=0)
    with pytest.raises(VideoSceneError, match="sh_degree"):
        render(gaussians, extrinsics, intrinsics, shape, sh_degree=4)
    with unchecked(), pytest.raises(VideoSceneError, match="background"):
        render(gaussians, extrinsics, intrinsics, shape, background=torch.zeros(3))
    if not torch.cuda.is_available():
        with pytest.raises(VideoSceneError, match="CUDA"):
            render(gaussians, extrinsics, intrinsics, shape, backend="gsplat")


def gsplat_version() -> tuple[int, ...]:
    return tuple(int(part) for part in importlib.metadata.version("gsplat").split(".")[:2])


def assert_close_but_for_threshold_flips(got, want, atol, name):
    """float32 agreement on nearly every pixel. A Gaussian whose α lands within float32 rounding of the
    1/255 cut-off (gsplat evaluates exp with __expf) may be drawn by one backend only, moving a pixel by at
    most ~α·|value| <= 1e-2; a convention error (pixel centres, intrinsics, camera direction) moves most."""
    difference = (got - want).abs()
    assert difference.max() < 1e-2 * max(1.0, want.abs().max().item()), (name, difference.max().item())
    assert (difference > atol).float().mean() < 1e-3, (name, (difference > atol).float().mean().item())


def conditioned_sum(output, seed: int = 7):
    """`weighted_sum` with the accumulated depth alpha·depth instead of depth: the division by alpha is the
    same autograd in both backends, and at faint pixels it would amplify float32 noise."""
    generator = torch.Generator().manual_seed(seed)
    terms = (output.color, output.alpha, output.alpha * output.depth)
    return sum((t * torch.randn(t.shape, generator=generator).to(t)).sum() for t in terms)


GSPLAT_SCENES = {
    # cameras outside the cloud, all SH bands
    "outside": (dict(seed=10, count=300, degree=3), dict(near=0.01)),
    # cameras inside the cloud: near-plane culling, the 1.3x frustum clamp, large close Gaussians; degree 4
    # coefficients with only bands 0-2 used
    "inside": (
        dict(seed=4, count=200, degree=4, camera_distance=0.7, log_scale=(-2.5, -1.0), opacity=(0.2, 0.9)),
        dict(near=0.2, sh_degree=2),
    ),
}


@pytest.mark.gpu
@pytest.mark.skipif(not (torch.cuda.is_available() and gsplat_available()), reason="needs CUDA and gsplat")
@pytest.mark.parametrize("scene", sorted(GSPLAT_SCENES))
def test_torch_backend_matches_gsplat(scene):
    if gsplat_version() < (1, 5):
        pytest.skip(
            "gsplat < 1.5 bins Gaussians by a 3-sigma circle and drops faint tails the torch backend draws"
        )
    scene_options, render_options = GSPLAT_SCENES[scene]
    gaussians, extrinsics, intrinsics = random_scene(batch=2, views=3, dtype=torch.float32, **scene_options)
    gaussians, extrinsics, intrinsics = gaussians.to("cuda"), extrinsics.cuda(), intrinsics.cuda()
    background = torch.rand(2, 3, generator=torch.Generator().manual_seed(0)).cuda()
    gaussians = with_grad(gaussians)
    parameters = [getattr(gaussians, name) for name in PARAMETERS]
    image_shape = (48, 64)  # 4 x 3 of gsplat's 16-pixel tiles
    outputs, gradients = {}, {}
    for backend in ("torch", "gsplat"):
        outputs[backend] = render(
            gaussians, extrinsics, intrinsics, image_shape, background, backend=backend, **render_options
        )
        gradients[backend] = torch.autograd.grad(conditioned_sum(outputs[backend]), parameters)
    ours, theirs = outputs["torch"], outputs["gsplat"]
    assert 0.05 < theirs.alpha.mean() < 0.95
    assert_close_but_for_threshold_flips(ours.color, theirs.color, 1e-4, "color")
    assert_close_but_for_threshold_flips(ours.alpha, theirs.alpha, 1e-4, "alpha")
    assert_close_but_for_threshold_flips(
        ours.alpha * ours.depth, theirs.alpha * theirs.depth, 1e-3, "alpha·depth"
    )
    covered = (ours.alpha > 0.5) & (theirs.alpha > 0.5)
    assert covered.any()
    torch.testing.assert_close(ours.depth[covered], theirs.depth[covered], atol=1e-3, rtol=1e-4)
    for name, got, want in zip(PARAMETERS, gradients["torch"], gradients["gsplat"]):
        assert want.abs().max() > 0, f"no gradient reached {name}"
        assert (got - want).norm() < 5e-3 * want.norm(), (name, ((got - want).norm() / want.norm()).item())
        torch.testing.assert_close(got, want, atol=1e-2 * want.abs().max().item(), rtol=1e-2, msg=name)
    # "auto" takes gsplat for float32 CUDA tensors and the torch backend otherwise; gsplat refuses float64.
    automatic = render(
        gaussians, extrinsics, intrinsics, image_shape, background, backend="auto", **render_options
    )
    torch.testing.assert_close(automatic.color, theirs.color, atol=0, rtol=0)
    double = gaussians.to(torch.float64)
    with pytest.raises(VideoSceneError, match="float32"):
        render(
            double,
            extrinsics.double(),
            intrinsics.double(),
            image_shape,
            background.double(),
            backend="gsplat",
        )
    automatic = render(
        double, extrinsics.double(), intrinsics.double(), (8, 8), background.double(), backend="auto"
    )
    reference = render(
        double, extrinsics.double(), intrinsics.double(), (8, 8), background.double(), backend="torch"
    )
    torch.testing.assert_close(automatic.color, reference.color, atol=0, rtol=0)


def garden_gaussians(shared_data):
    data = np.load(shared_data / "garden_points_cams" / "test_garden.npz")
    points = torch.from_numpy(data["means3d"]).float()
    colors = torch.from_numpy(data["colors"]).float() / 255
    width, height = int(data["width"]), int(data["height"])
    gaussians = gaussians_from_points(points, colors, scale_factor=0.5, clip_quantile=0.8)
    return (
        gaussians,
        torch.from_numpy(data["viewmats"]).float(),
        torch.from_numpy(data["Ks"]).float(),
        (height, width),
    )


def point_zbuffer(points, colors, world_to_camera, pixel_intrinsics, height, width):
    """Nearest point per pixel: a plain z-buffer straight from the file's w2c matrix and pixel K."""
    camera = points @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    depth = camera[:, 2]
    projected = camera @ pixel_intrinsics.T
    u, v = projected[:, 0] / depth, projected[:, 1] / depth
    keep = (depth > 0.01) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    pixel = v[keep].long() * width + u[keep].long()
    nearest = torch.full((height * width,), math.inf).scatter_reduce(0, pixel, depth[keep], "amin")
    winner = depth[keep] == nearest[pixel]
    image = torch.full((height * width, 3), math.nan)
    image[pixel[winner]] = colors[keep][winner]
    return image.T.reshape(3, height, width), nearest.reshape(height, width)


@pytest.mark.shared_data
def test_garden_point_cloud_renders_like_its_zbuffer(shared_data):
    gaussians, world_to_camera, pixel_intrinsics, (height, width) = garden_gaussians(shared_data)
    scale = 4
    low_height, low_width = height // scale, width // scale
    low_intrinsics = pixel_intrinsics * torch.tensor([low_width / width, low_height / height, 1.0])[:, None]
    extrinsics = torch.linalg.inv(world_to_camera.double()).float()
    intrinsics = pixel_intrinsics / torch.tensor([width, height, 1.0])[:, None]
    batched = Gaussians(
        *(
            t[None]
            for t in (
                gaussians.means,
                gaussians.scales,
                gaussians.rotations,
                gaussians.harmonics,
                gaussians.opacities,
            )
        )
    )
    output = render(batched, extrinsics[None], intrinsics[None], (low_height, low_width), backend="torch")
    colors = gaussians.harmonics[:, 0] * 0.28209479177387814 + 0.5
    for view in range(len(world_to_camera)):
        zbuffer_color, zbuffer_depth = point_zbuffer(
            gaussians.means, colors, world_to_camera[view], low_intrinsics[view], low_height, low_width
        )
        hit = torch.isfinite(zbuffer_depth)
        assert hit.float().mean() > 0.5
        assert (output.alpha[0, view] > 0.5).float().mean() > 0.7, (
            "the splats should cover most of the picture"
        )
        rendered = output.color[0, view]
        error = (rendered - zbuffer_color).abs().mean(0)[hit].mean()
        assert error < 0.13, error
        # Brightness patterns line up with the z-buffer's, and far better than a mirrored picture's would.
        correlation = brightness_correlation(rendered, zbuffer_color, hit)
        mirrored = max(
            brightness_correlation(rendered.flip(-1), zbuffer_color, hit),
            brightness_correlation(rendered.flip(-2), zbuffer_color, hit),
        )
        assert correlation > 0.6 and correlation > mirrored + 0.2, (correlation, mirrored)
        relative_depth = ((output.depth[0, view] - zbuffer_depth).abs() / zbuffer_depth)[
            hit & (output.alpha[0, view] > 0.5)
        ]
        assert relative_depth.median() < 0.05


def brightness_correlation(image, other, mask):
    a, b = image.mean(0)[mask], other.mean(0)[mask]
    a, b = a - a.mean(), b - b.mean()
    return ((a * b).sum() / (a.norm() * b.norm())).item()
