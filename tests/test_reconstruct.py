"""`videoscene reconstruct` on the bundled demo's output, its refusals, and the pieces it is made of: the
confidence weights, the fly-through path and 3DGS's densification with its cap."""

import json
import math
import shutil

import pytest
import torch

from videoscene.cli import main
from videoscene.gaussians.ply import load_ply
from videoscene.geometry.trajectory import offset_path
from videoscene.metrics.image import psnr
from videoscene.reconstruct.cli import load_generated
from videoscene.reconstruct.densify import DensifyConfig, GaussianParameters
from videoscene.reconstruct.optimize import confidence_weights, render_views
from videoscene.types import Gaussians

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory):
    """The demo at 9 frames, with `--reconstruct 3` (generate's flag), then `videoscene reconstruct`. A
    large t, so that the video differs from the prior's own render and the fit has somewhere to go."""
    root = tmp_path_factory.mktemp("reconstruct")
    demo = ["demo", "--out", str(root / "demo"), "--frames", "9", "--timestep", "599", "--reconstruct", "3"]
    assert main(demo) == 0
    assert (
        main(["reconstruct", "--input", str(root / "demo"), "--out", str(root / "fit"), "--steps", "20"]) == 0
    )
    return root


def test_generate_reconstruct_writes_the_reconstruction_beside_the_video(demo_output):
    inner = demo_output / "demo" / "reconstruction"
    assert {p.name for p in inner.iterdir()} >= {
        "gaussians.ply",
        "cameras.json",
        "flythrough.mp4",
        "report.json",
    }
    assert json.loads((inner / "report.json").read_text())["steps"] == 3


def test_reconstruct_writes_its_files_and_the_ply_renders_what_the_report_says(demo_output):
    out = demo_output / "fit"
    assert {p.name for p in out.iterdir()} == {
        ".videoscene-output",
        "gaussians.ply",
        "cameras.json",
        "flythrough.mp4",
        "report.json",
    }
    report = json.loads((out / "report.json").read_text())
    assert report["steps"] == 20 and report["seconds"] > 0
    assert [point["step"] for point in report["loss_curve"]] == [10, 20]
    counts = report["gaussians"]
    assert counts["final"] <= counts["cap"] == 2 * counts["initial"]
    weights = report["confidence_weights"]
    assert len(weights) == 9 and weights[0] == weights[-1] == 1.0 and min(weights) == weights[4] < 1
    assert len(json.loads((out / "cameras.json").read_text())) == 9
    assert report["psnr"] > report["initial_psnr"]  # the fit moved towards the frames

    scene = load_generated(demo_output / "demo")
    gaussians = load_ply(out / "gaussians.ply")
    assert len(gaussians) == counts["final"]
    renders = render_views(gaussians, scene.cameras, (64, 96), scene.background)
    assert psnr(renders, scene.frames).tolist() == pytest.approx(report["psnr_per_frame"], abs=0.05)


def _one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("videoscene: error:")
    return lines[0]


def test_a_folder_that_is_not_a_generate_output_is_refused(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    code = main(["reconstruct", "--input", str(tmp_path / "photos"), "--out", str(tmp_path / "out")])
    assert code == 2 and "not a `videoscene generate` output" in _one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_missing_frames_are_refused_before_anything_is_written(demo_output, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(demo_output / "demo", broken)
    (broken / "frames" / "005.png").unlink()
    code = main(["reconstruct", "--input", str(broken), "--out", str(tmp_path / "out"), "--steps", "1"])
    assert code == 2 and "005.png" in _one_error_line(capsys)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def test_confidence_weights_trust_the_context_frames_most():
    extrinsics = torch.eye(4).repeat(5, 1, 1)
    extrinsics[:, 0, 3] = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0])
    weights = confidence_weights(extrinsics, tau=0.5)
    assert weights.tolist() == pytest.approx([1, math.exp(-0.5), math.exp(-1), math.exp(-0.5), 1])
    assert confidence_weights(extrinsics, tau=math.inf).tolist() == [1.0] * 5
    still = torch.eye(4).repeat(3, 1, 1)  # a camera that does not move: by frame index
    assert confidence_weights(still, 0.5).tolist() == pytest.approx([1, math.exp(-1), 1])


def test_the_flythrough_leaves_the_input_path_by_a_fraction_of_the_baseline():
    extrinsics = torch.eye(4).repeat(3, 1, 1)
    extrinsics[:, 0, 3] = torch.tensor([0.0, 1.0, 2.0])
    path = offset_path(extrinsics, offset=0.25)
    shift = path[:, :3, 3] - extrinsics[:, :3, 3]
    assert shift.tolist() == [[0.5, -0.25, 0.0]] * 3  # right 0.25 × 2, up (−y) half that
    assert torch.equal(path[:, :3, :3], extrinsics[:, :3, :3])


def _gaussians(count: int, scale: float) -> Gaussians:
    return Gaussians(
        means=torch.randn(count, 3),
        scales=torch.full((count, 3), scale),
        rotations=torch.tensor([[1.0, 0, 0, 0]]).repeat(count, 1),
        harmonics=torch.zeros(count, 1, 3),
        opacities=torch.full((count,), 0.5),
    )


def _parameters(gaussians: Gaussians) -> GaussianParameters:
    names = ("means", "log_scales", "rotations", "sh0", "sh_rest", "opacity_logits")
    return GaussianParameters(gaussians, dict.fromkeys(names, 1e-3))


def test_densification_clones_small_splits_large_prunes_transparent_and_respects_the_cap():
    generator = torch.Generator().manual_seed(0)
    small, large = _gaussians(4, 0.001), _gaussians(4, 1.0)
    both = Gaussians(
        *(torch.cat([getattr(small, n), getattr(large, n)]) for n in Gaussians.__dataclass_fields__)
    )
    params = _parameters(both)
    params.grad_sum = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0])  # two of each are steep
    params.views_seen = torch.ones(8)
    with torch.no_grad():
        params.tensors["opacity_logits"][3] = -10  # transparent: pruned
    config = DensifyConfig(grad_threshold=0.5, percent_dense=0.01)
    counts = params.densify_and_prune(config, extent=1.0, cap=100, prune_large=False, generator=generator)
    assert counts == {"cloned": 2, "split": 2, "pruned": 1}
    assert len(params) == 8 - 2 - 1 + 2 + 2 * 2  # split parents replaced by two children each
    children = params.gaussians().scales[-4:]
    assert torch.allclose(children, torch.full_like(children, 1 / 1.6))
    assert params.grad_sum.shape == (len(params),) and not params.grad_sum.any()  # statistics restart

    # The cap: only the steepest candidates grow, never beyond it.
    params = _parameters(_gaussians(10, 0.001))
    params.grad_sum, params.views_seen = torch.arange(10.0), torch.ones(10)
    counts = params.densify_and_prune(config, extent=1.0, cap=13, prune_large=False, generator=generator)
    assert counts["cloned"] == 3 and len(params) == 13
    assert params.densify_and_prune(config, 1.0, 13, False, generator)["cloned"] == 0


def test_densification_keeps_the_adam_moments_of_survivors():
    params = _parameters(_gaussians(3, 0.001))
    loss = params.gaussians().means.sum() + params.gaussians().opacities.sum()
    loss.backward()
    params.optimizer.step()
    moment = params.optimizer.state[params.tensors["means"]]["exp_avg"].clone()
    params.grad_sum, params.views_seen = torch.tensor([0.0, 0.0, 1.0]), torch.ones(3)
    params.densify_and_prune(DensifyConfig(grad_threshold=0.5), 1.0, 10, False, torch.Generator())
    state = params.optimizer.state[params.tensors["means"]]
    assert torch.equal(state["exp_avg"][:3], moment) and not state["exp_avg"][3:].any()
    params.reset_opacity()
    assert (params.gaussians().opacities <= 0.01 + 1e-6).all()
