"""`videoscene eval` takes the model's resolution, frame count and depth range from the weights folder's
pipeline.json; explicit flags override it; a --size the pipeline cannot generate is one clear error."""

import json

import pytest
import torch

from videoscene.cli import main
from videoscene.data.re10k import scene_from_frames, write_split
from videoscene.data.synthetic import SynthConfig, render_scene
from videoscene.evaluation.runner import EvalConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    frames, extrinsics, intrinsics, _ = render_scene(2, 0, 9, 48, 72, SynthConfig(supersample=1))
    folder = tmp_path_factory.mktemp("synthetic") / "test"
    write_split(
        folder,
        [scene_from_frames("room0", frames, torch.from_numpy(extrinsics), torch.from_numpy(intrinsics))],
    )
    return folder


def test_config_comes_from_pipeline_json_and_flags_override(tiny_weights, tmp_path):
    config = EvalConfig.for_weights(tiny_weights, seed=3)
    assert (config.image_size, config.num_frames, config.near, config.far, config.seed) == (
        (32, 48),
        9,
        0.5,
        20.0,
        3,
    )
    overridden = EvalConfig.for_weights(tiny_weights, image_size=(40, 60), num_frames=17, near=1.0, far=None)
    assert (overridden.image_size, overridden.num_frames, overridden.near, overridden.far) == (
        (40, 60),
        17,
        1.0,
        20.0,
    )
    # Without pipeline.json (a prior-only folder, or no weights): the tiny preset's defaults.
    (tmp_path / "prior").mkdir()
    for folder in (None, tmp_path):
        config = EvalConfig.for_weights(folder)
        assert (config.image_size, config.num_frames, config.near, config.far) == ((64, 96), 17, 1.0, 100.0)


def run_eval(split, tmp_path, out, *extra):
    index = tmp_path / "index.json"
    index.write_text(json.dumps({"room0": {"context": [0, 8], "target": [0, 2, 4, 6, 8]}}))
    return main(["eval", "--data", str(split), "--index", str(index), "--out", str(out), *extra])


def test_eval_without_size_flags_runs_the_pipeline_at_its_own_resolution(tiny_weights, split, tmp_path):
    assert (
        run_eval(
            split, tmp_path, tmp_path / "out", "--weights", str(tiny_weights), "--methods", "nearest,student"
        )
        == 0
    )
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    config = metrics["config"]
    assert (config["image_size"], config["num_frames"], config["near"], config["far"]) == (
        [32, 48],
        9,
        0.5,
        20.0,
    )
    assert metrics["methods"]["student"]["psnr"] is not None and metrics["methods"]["student"]["seconds"] > 0


def test_explicit_size_overrides_and_a_size_the_pipeline_cannot_make_is_an_error(
    tiny_weights, split, tmp_path, capsys
):
    assert (
        run_eval(
            split,
            tmp_path,
            tmp_path / "a",
            "--weights",
            str(tiny_weights),
            "--methods",
            "nearest",
            "--size",
            "40x60",
        )
        == 0
    )
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["config"]["image_size"] == [40, 60]
    capsys.readouterr()  # the first run's progress bar

    assert (
        run_eval(
            split,
            tmp_path,
            tmp_path / "b",
            "--weights",
            str(tiny_weights),
            "--methods",
            "nearest,teacher@2",
            "--size",
            "40x60",
        )
        == 2
    )
    error = capsys.readouterr().err.strip()
    assert "teacher@2 generate at 32x48" in error and "drop --size" in error and "\n" not in error
    assert not (tmp_path / "b").exists()
