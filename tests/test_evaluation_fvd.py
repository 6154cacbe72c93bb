"""FVD in the evaluation: per method over all scenes, from a TorchScript detector given by path (here a small
scripted module with the call signature of StyleGAN-V's I3D), null without one."""

import json
import logging

import numpy as np
import pytest
import torch
from torch import Tensor

from videoscene.cli import main
from videoscene.data.evaluation_index import IndexEntry
from videoscene.data.re10k import read_chunk, scene_from_frames, write_split
from videoscene.data.synthetic import SynthConfig, render_scene
from videoscene.errors import VideoSceneError
from videoscene.evaluation.methods import MethodResources, MethodSpec, build_nearest
from videoscene.evaluation.runner import EvalConfig, evaluate, prepare_scene
from videoscene.metrics.frechet import I3DFeatures, frechet_distance_of_features

SCENES = 3
CONFIG = EvalConfig(image_size=(32, 48), num_frames=9)


class VideoStatistics(torch.nn.Module):
    """A stand-in I3D with the same call: `detector(videos [B, 3, F, H, W] in [0, 255], rescale=, resize=,
    return_features=) -> [B, D]`. Features: a fixed random projection of per-channel colour statistics and
    frame-to-frame change. It refuses inputs laid out or flagged otherwise, so wrong plumbing fails."""

    def __init__(self):
        super().__init__()
        self.projection = torch.nn.Linear(12, 6)

    def forward(
        self, videos: Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False
    ) -> Tensor:
        if videos.dim() != 5 or videos.shape[1] != 3:
            raise ValueError("expected videos [batch, 3, frames, height, width]")
        if videos.shape[2] < 4:  # like I3D, whose temporal pooling needs a few frames
            raise ValueError("too few frames")
        if not (rescale and resize and return_features):
            raise ValueError("expected rescale=True, resize=True, return_features=True")
        if bool(videos.min() < 0) or bool(videos.max() > 255):
            raise ValueError("expected values in [0, 255]")
        x = videos / 127.5 - 1  # what rescale=True does in I3D
        change = (x[:, :, 1:] - x[:, :, :-1]).abs().mean(dim=(2, 3, 4))
        statistics = torch.cat(
            [x.mean(dim=(2, 3, 4)), x.std(dim=(2, 3, 4)), change, x.amax(dim=(2, 3, 4))], dim=1
        )
        return self.projection(statistics)


@pytest.fixture(scope="module")
def detector_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("i3d") / "i3d_torchscript.pt"
    torch.jit.script(VideoStatistics()).save(str(path))
    return path


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    scenes = []
    for index in range(SCENES):
        frames, extrinsics, intrinsics, _ = render_scene(1, index, 9, 48, 72, SynthConfig(supersample=1))
        scenes.append(
            scene_from_frames(
                f"room{index}", frames, torch.from_numpy(extrinsics), torch.from_numpy(intrinsics)
            )
        )
    folder = tmp_path_factory.mktemp("synthetic") / "test"
    write_split(folder, scenes)
    return folder


def full_index():
    return {f"room{i}": IndexEntry((0, 8), tuple(range(9))) for i in range(SCENES)}


def black(request):
    return torch.zeros(request.num_frames, 3, *request.image_shape)


def test_fvd_is_the_frechet_distance_of_the_detector_features(split, detector_path):
    detector = I3DFeatures(detector_path)
    nearest = build_nearest(MethodSpec("nearest", "nearest"), MethodResources(None, torch.device("cpu")))
    result = evaluate(
        split, full_index(), {"nearest": nearest, "black": black}, CONFIG, "cpu", fvd_detector=detector
    )

    # The same distance computed by hand: one feature vector per scene, ground truth vs nearest.
    truth, copies = [], []
    for scene in read_chunk(next(split.glob("*.torch"))):
        prepared = prepare_scene(scene, full_index()[scene.key], CONFIG)
        truth.append(detector(prepared.targets.image[None])[0])
        copies.append(detector(nearest(prepared.request)[list(prepared.plan.slots)][None])[0])
    assert len(truth) == SCENES
    expected = frechet_distance_of_features(np.stack(truth), np.stack(copies))
    assert result.fvd["nearest"] == pytest.approx(expected, rel=1e-6)
    assert 0 < result.fvd["nearest"] < result.fvd["black"]


def test_fvd_needs_two_scenes_and_a_detector(split, detector_path, caplog):
    one_scene = EvalConfig(image_size=(32, 48), num_frames=9, max_scenes=1)
    with caplog.at_level(logging.WARNING):
        result = evaluate(
            split, full_index(), {"black": black}, one_scene, "cpu", fvd_detector=I3DFeatures(detector_path)
        )
    assert result.fvd == {"black": None} and "at least two scenes" in caplog.text
    assert evaluate(split, full_index(), {"black": black}, CONFIG, "cpu").fvd == {"black": None}


def run_eval(split, tmp_path, out, *extra):
    index = tmp_path / "index.json"
    index.write_text(
        json.dumps(
            {key: {"context": list(e.context), "target": list(e.target)} for key, e in full_index().items()}
        )
    )
    return main(
        [
            "eval",
            "--data",
            str(split),
            "--index",
            str(index),
            "--out",
            str(out),
            "--size",
            "32x48",
            "--frames",
            "9",
            "--methods",
            "nearest",
            *extra,
        ]
    )


def test_eval_cli_reports_fvd_with_a_detector_and_null_without(split, detector_path, tmp_path):
    assert run_eval(split, tmp_path, tmp_path / "with", "--fvd-detector", str(detector_path)) == 0
    metrics = json.loads((tmp_path / "with" / "metrics.json").read_text())
    assert metrics["methods"]["nearest"]["fvd"] > 0 and metrics["config"]["fvd_detector"] == str(
        detector_path
    )
    assert "FVD ↓" in (tmp_path / "with" / "metrics.md").read_text()

    assert run_eval(split, tmp_path, tmp_path / "without") == 0
    metrics = json.loads((tmp_path / "without" / "metrics.json").read_text())
    assert "fvd" in metrics["methods"]["nearest"] and metrics["methods"]["nearest"]["fvd"] is None
    assert "FVD" not in (tmp_path / "without" / "metrics.md").read_text()


def test_missing_detector_file_is_one_line_and_leaves_nothing(split, tmp_path, capsys):
    assert (
        run_eval(split, tmp_path, tmp_path / "out", "--fvd-detector", str(tmp_path / "i3d_torchscript.pt"))
        == 2
    )
    error = capsys.readouterr().err.strip()
    assert "never downloaded" in error and "\n" not in error
    assert not (tmp_path / "out").exists()


def test_a_detector_failure_names_the_scene_in_one_line(split, detector_path):
    two_frames = {"room0": IndexEntry((0, 8), (0, 8)), "room1": IndexEntry((0, 8), (0, 8))}
    with pytest.raises(
        VideoSceneError, match=r"failed on the 2-frame video of scene room0 \(.*too few frames"
    ) as error:
        evaluate(split, two_frames, {"black": black}, CONFIG, "cpu", fvd_detector=I3DFeatures(detector_path))
    assert "\n" not in str(error.value)
