"""Method names, their errors, and the built-in methods (nearest, coarse)."""

import pytest
import torch

from videoscene.errors import VideoSceneError
from videoscene.evaluation.methods import (
    GenerationRequest,
    MethodResources,
    MethodSpec,
    build_method,
    parse_method,
    parse_methods,
)
from videoscene.prior.config import TINY
from videoscene.prior.encoder import GaussianEncoder
from videoscene.types import Cameras, Views

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    "name, spec",
    [
        ("nearest", MethodSpec("nearest", "nearest")),
        ("coarse", MethodSpec("coarse", "coarse")),
        ("teacher@50", MethodSpec("teacher@50", "teacher", num_steps=50)),
        ("teacher-leap@4", MethodSpec("teacher-leap@4", "teacher-leap", num_steps=4)),
        ("student", MethodSpec("student", "student")),
        ("student@t549", MethodSpec("student@t549", "student", timestep=549)),
        ("student@t0", MethodSpec("student@t0", "student", timestep=0)),
        ("student-noleap", MethodSpec("student-noleap", "student-noleap")),
    ],
)
def test_valid_names_parse(name, spec):
    assert parse_method(name) == spec


@pytest.mark.parametrize(
    "name",
    [
        "nearst",
        "teacher",
        "teacher@0",
        "teacher@t5",
        "student@t1000",
        "student@549",
        "coarse@3",
        "",
        "Student",
    ],
)
def test_invalid_names_are_one_line_errors_listing_the_valid_ones(name):
    with pytest.raises(VideoSceneError) as error:
        parse_method(name)
    message = str(error.value)
    assert "\n" not in message and repr(name) in message
    assert "teacher@N" in message or "needs its parameter" in message


def test_method_lists():
    assert [s.name for s in parse_methods(" nearest, student@t459 ,coarse")] == [
        "nearest",
        "student@t459",
        "coarse",
    ]
    with pytest.raises(VideoSceneError, match="more than once"):
        parse_methods("nearest,nearest")
    with pytest.raises(VideoSceneError, match="no methods"):
        parse_methods(" , ")


@pytest.mark.parametrize(
    "name", ["teacher@50", "teacher-leap@4", "student", "student@t549", "student-noleap"]
)
def test_generative_methods_without_weights_say_so(name):
    with pytest.raises(VideoSceneError, match="needs trained weights: pass --weights"):
        build_method(parse_method(name), MethodResources(None, CPU))


def test_generative_methods_with_a_folder_that_holds_no_pipeline_say_so(tmp_path):
    with pytest.raises(VideoSceneError, match="not a VideoScene weights folder"):
        build_method(parse_method("student"), MethodResources(tmp_path, CPU))


def test_coarse_without_prior_weights_says_so(tmp_path):
    with pytest.raises(VideoSceneError, match="needs prior weights: pass --weights"):
        build_method(parse_method("coarse"), MethodResources(None, CPU))
    with pytest.raises(VideoSceneError, match="needs prior weights: neither"):
        build_method(parse_method("coarse"), MethodResources(tmp_path, CPU))


def _request(frames: int = 5, size=(32, 48)) -> GenerationRequest:
    intrinsics = torch.tensor([[0.9, 0, 0.5], [0, 1.35, 0.5], [0, 0, 1]])
    poses = torch.eye(4).repeat(frames, 1, 1)
    poses[:, 0, 3] = torch.linspace(0, 0.4, frames)
    images = torch.stack([torch.full((3, *size), 0.2), torch.full((3, *size), 0.8)])
    context = Views(
        images, poses[[0, -1]], intrinsics.expand(2, 3, 3), torch.full((2,), 0.5), torch.full((2,), 20.0)
    )
    return GenerationRequest(
        context,
        Cameras(poses, intrinsics.expand(frames, 3, 3)),
        torch.linspace(0, 1, frames),
        seed=3,
        scene="s",
    )


def test_nearest_copies_the_context_view_nearer_in_time():
    frames = build_method(parse_method("nearest"), MethodResources(None, CPU))(_request(5))
    # Times 0, .25, .5 -> first view (the middle goes to the first); .75, 1 -> second.
    assert [round(f.mean().item(), 3) for f in frames] == [0.2, 0.2, 0.2, 0.8, 0.8]


def test_coarse_renders_a_prior_from_its_folder(tmp_path):
    torch.manual_seed(0)
    GaussianEncoder(TINY).save(tmp_path / "prior")  # a randomly initialised tiny prior, in WEIGHTS/prior/
    (tmp_path / "prior" / "train_config.json").write_text('{"background": [1.0, 1.0, 1.0]}')
    generate = build_method(parse_method("coarse"), MethodResources(tmp_path, CPU))
    request = _request(3)
    with torch.no_grad():
        frames = generate(request)
        again = generate(request)
    assert frames.shape == (3, 3, 32, 48) and 0 <= frames.min() and frames.max() <= 1
    torch.testing.assert_close(frames, again, rtol=0, atol=0)
