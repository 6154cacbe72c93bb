"""Scoring 3D scenes off the generated path: index entries with holdout frames, `make-index --holdout`, and
the `prior` / `recon-*` methods on a tiny synthetic scene, where Gaussians fitted to the ground-truth targets
(`recon-gt`, the upper bound) must render the held-out frames better than the prior's own."""

import math

import pytest
import torch

from videoscene.cli import main
from videoscene.data.evaluation_index import (
    IndexEntry,
    make_evaluation_index,
    read_evaluation_index,
    write_evaluation_index,
)
from videoscene.data.re10k import scene_from_frames, write_split
from videoscene.data.synthetic import SynthConfig, render_scene
from videoscene.errors import VideoSceneError
from videoscene.evaluation.methods import MethodOutput, MethodResources, Oracle, build_method, parse_method
from videoscene.evaluation.runner import EvalConfig, evaluate
from videoscene.pipeline import BUNDLED_WEIGHTS
from videoscene.reconstruct.optimize import ReconstructConfig

pytestmark = pytest.mark.usefixtures("one_thread")

ENTRY = IndexEntry((0, 8), (0, 2, 4, 6, 8), holdout=(1, 3, 5, 7))


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """One synthetic room, 9 frames at the bundled weights' 64x96."""
    frames, extrinsics, intrinsics, _ = render_scene(0, 0, 9, 64, 96, SynthConfig(supersample=1))
    folder = tmp_path_factory.mktemp("holdout") / "test"
    write_split(
        folder,
        [scene_from_frames("room", frames, torch.from_numpy(extrinsics), torch.from_numpy(intrinsics))],
    )
    return folder


def test_holdout_frames_round_trip_through_the_index_file(tmp_path):
    write_evaluation_index(tmp_path / "index.json", {"room": ENTRY, "skipped": None})
    assert read_evaluation_index(tmp_path / "index.json") == {"room": ENTRY, "skipped": None}
    (tmp_path / "bad.json").write_text('{"room": {"context": [0, 8], "target": [4], "holdout": [-1]}}')
    with pytest.raises(VideoSceneError, match="holdout"):
        read_evaluation_index(tmp_path / "bad.json")


def test_make_index_holds_out_the_frames_between_the_targets(split, tmp_path):
    index = make_evaluation_index(split, gap=8, target_stride=2, centered=True, holdout=True)
    assert index == {"room": ENTRY}
    assert (
        main(["data", "make-index", "--data", str(split), "--out", str(tmp_path / "i.json"), "--gap", "8"])
        == 0
    )
    assert read_evaluation_index(tmp_path / "i.json")["room"].holdout == ()
    with pytest.raises(VideoSceneError, match="target-stride 2"):
        make_evaluation_index(split, gap=8, target_stride=1, holdout=True)


def test_recon_gt_renders_the_holdout_frames_better_than_the_prior(split):
    config = EvalConfig.for_weights(BUNDLED_WEIGHTS, num_frames=9)
    resources = MethodResources(BUNDLED_WEIGHTS, torch.device("cpu"), ReconstructConfig(steps=40))
    names = ["nearest", "prior", "recon-gt", "recon-coarse"]
    methods = {name: build_method(parse_method(name), resources) for name in names}
    assert isinstance(methods["recon-gt"], Oracle) and not isinstance(methods["recon-coarse"], Oracle)
    result = evaluate(split, {"room": ENTRY}, methods, config)
    rows = {row.method: row for row in result.per_scene}
    assert math.isnan(rows["nearest"].psnr_holdout)  # a method without a 3D scene renders no holdout frame
    assert math.isnan(rows["nearest"].sampson_px_off_path)  # ... nor a path beside the generated one
    for name in ("prior", "recon-gt", "recon-coarse"):
        assert math.isfinite(rows[name].psnr_holdout) and math.isfinite(rows[name].ssim_holdout)
        # Renders of one set of Gaussians at known cameras agree with those cameras' epipolar geometry.
        assert rows[name].sampson_px_off_path < 1.0 and rows[name].inlier_ratio_off_path > 0
    assert rows["recon-gt"].psnr_holdout > rows["prior"].psnr_holdout + 0.2  # 29.70 vs 29.12 dB when written
    assert rows["recon-gt"].ssim_holdout > rows["prior"].ssim_holdout
    assert rows["prior"].psnr == pytest.approx(
        evaluate(split, {"room": ENTRY}, {"coarse": build_method(parse_method("coarse"), resources)}, config)
        .per_scene[-1]
        .psnr
    )  # prior is coarse, plus its holdout renders


def test_non_finite_off_path_renders_are_refused(split):
    config = EvalConfig.for_weights(BUNDLED_WEIGHTS, num_frames=9)

    def broken(request):
        frames = torch.zeros(request.num_frames, 3, *request.image_shape)
        return MethodOutput(frames, off_path=torch.full_like(frames, math.nan))

    with pytest.raises(VideoSceneError, match="off-path renders"):
        evaluate(split, {"room": ENTRY}, {"broken": broken}, config)


def test_eval_cli_makes_a_holdout_index_and_reports_the_holdout_columns(split, tmp_path, capsys):
    index, out = tmp_path / "index.json", tmp_path / "eval"
    arguments = ["eval", "--data", str(split), "--index", str(index), "--out", str(out), "--frames", "9"]
    options = ["--make-index", "8", "--target-stride", "2", "--holdout", "--recon-steps", "2"]
    assert main(arguments + options + ["--methods", "nearest,prior,recon-gt"]) == 0
    assert read_evaluation_index(index)["room"].holdout == (1, 3, 5, 7)
    table = (out / "metrics.md").read_text()
    assert "PSNR holdout" in table and "SSIM holdout" in table and "Sampson px off path" in table
    capsys.readouterr()
    code = main(
        ["eval", "--data", str(split), "--index", str(tmp_path / "x.json"), "--out", str(tmp_path / "o")]
        + ["--methods", "nearest", "--holdout"]
    )
    assert code == 2 and "--make-index" in capsys.readouterr().err
