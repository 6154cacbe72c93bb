"""`videoscene data synth`: chunks on disk, determinism, stored cameras against pixels, bad input."""

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from videoscene.cli import main
from videoscene.data.re10k import iter_scenes
from videoscene.data.synthetic import render_scene
from videoscene.metrics.consistency import pair_consistency

SMALL = ["--frames", "9", "--height", "48", "--width", "64"]


def synth(out: Path, *extra: str, scenes: int = 2, seed: int = 0) -> int:
    return main(
        ["data", "synth", "--scenes", str(scenes), "--seed", str(seed), "--out", str(out), *SMALL, *extra]
    )


def _chunk_contents(split_dir: Path) -> list[tuple]:
    return [
        (
            scene.key,
            scene.cameras.numpy().tobytes(),
            scene.timestamps.tolist(),
            [bytes(image.numpy()) for image in scene.images],
        )
        for scene in iter_scenes(split_dir)
    ]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    assert synth(out, "--depth", "--scenes-per-chunk", "1") == 0
    return out


def test_writes_loadable_re10k_chunks(dataset):
    split = dataset / "train"
    index = json.loads((split / "index.json").read_text())
    assert sorted(index) == ["synth-0-000000", "synth-0-000001"]
    assert sorted(set(index.values())) == ["000000.torch", "000001.torch"]
    for chunk in sorted(split.glob("*.torch")):
        raw = torch.load(chunk, weights_only=True)
        assert isinstance(raw, list) and len(raw) == 1
        scene = raw[0]
        assert scene["cameras"].shape == (9, 18) and scene["cameras"].dtype == torch.float32
        assert len(scene["images"]) == 9 and scene["timestamps"].shape == (9,)
        for image in scene["images"]:
            assert image.dtype == torch.uint8 and image.ndim == 1
            assert bytes(image[:8].numpy()) == b"\x89PNG\r\n\x1a\n"
    settings = json.loads((dataset / "synthetic.json").read_text())
    assert settings["seed"] == 0 and settings["frames"] == 9 and settings["depth"] is True


def test_stored_scene_matches_render_scene(dataset):
    """Decoded pixels, stored cameras and stored depth are exactly what render_scene returns."""
    scene = next(iter_scenes(dataset / "train"))
    frames, extrinsics, intrinsics, depth = render_scene(0, 0, 9, 48, 64)
    np.testing.assert_array_equal(
        (scene.frames() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy(), frames
    )
    np.testing.assert_allclose(scene.extrinsics.numpy(), extrinsics, atol=1e-5)
    np.testing.assert_allclose(scene.intrinsics.numpy(), intrinsics, atol=1e-7)
    stored_depth = np.load(dataset / "train" / "depth" / f"{scene.key}.npz")["depth"]
    assert stored_depth.dtype == np.float16 and stored_depth.shape == (9, 48, 64)
    np.testing.assert_array_equal(stored_depth, depth.astype(np.float16))


def test_same_seed_same_bytes_other_seed_differs(dataset, tmp_path):
    assert synth(tmp_path / "again", "--depth", "--scenes-per-chunk", "1") == 0
    assert _chunk_contents(tmp_path / "again" / "train") == _chunk_contents(dataset / "train")
    for name in ("depth/synth-0-000000.npz", "index.json"):
        assert (tmp_path / "again" / "train" / name).read_bytes() == (dataset / "train" / name).read_bytes()
    assert synth(tmp_path / "other", seed=1) == 0
    other = _chunk_contents(tmp_path / "other" / "train")
    assert all(a[3] != b[3] for a, b in zip(other, _chunk_contents(dataset / "train")))


def test_scene_does_not_depend_on_scene_count_or_workers(dataset, tmp_path):
    assert synth(tmp_path / "one", scenes=1) == 0
    assert _chunk_contents(tmp_path / "one" / "train")[0] == _chunk_contents(dataset / "train")[0]
    assert synth(tmp_path / "parallel", "--workers", "2", "--scenes-per-chunk", "1") == 0
    assert _chunk_contents(tmp_path / "parallel" / "train") == _chunk_contents(dataset / "train")


def test_stored_cameras_pass_the_epipolar_check(tmp_path):
    """SIFT matches between frames read back from the chunks lie on the epipolar lines of the stored
    cameras (median Sampson distance < 1 px, pooled over three scenes); a camera turned by 1 degree fails."""
    out = tmp_path / "sift"
    assert (
        main(
            [
                "data",
                "synth",
                "--scenes",
                "3",
                "--frames",
                "3",
                "--height",
                "192",
                "--width",
                "288",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    turn = torch.from_numpy(cv2.Rodrigues(np.array([math.radians(1.0), 0.0, 0.0]))[0]).float()
    right, wrong = [], []
    for scene in iter_scenes(out / "train"):
        frames, extrinsics, intrinsics = scene.frames([0, 1]), scene.extrinsics, scene.intrinsics
        turned = extrinsics[1].clone()
        turned[:3, :3] = turned[:3, :3] @ turn
        for cameras, distances in ((extrinsics[1], right), (turned, wrong)):
            result = pair_consistency(
                frames[0], frames[1], extrinsics[0], intrinsics[0], cameras, intrinsics[1]
            )
            distances.append(result.sampson_px)
    right, wrong = np.concatenate(right), np.concatenate(wrong)
    assert len(right) >= 50
    assert np.median(right) < 1.0
    assert np.median(wrong) > 1.0


@pytest.mark.parametrize(
    "bad, message",
    [
        (["--frames", "0"], "--frames must be at least 2"),
        (["--height", "-4"], "--height and --width must be at least 8"),
        (["--scenes", "0"], "--scenes must be at least 1"),
        (["--supersample", "9"], "supersample must be"),
    ],
)
def test_bad_arguments_fail_with_one_line_and_no_output(tmp_path, capsys, bad, message):
    out = tmp_path / "out"
    args = ["data", "synth", "--scenes", "1", "--out", str(out), *SMALL, *bad]
    assert main(args) != 0
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0]
    assert list(tmp_path.iterdir()) == []


def test_existing_output_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert synth(out, scenes=1) != 0
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "already exists" in error[0]
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and [p.name for p in out.iterdir()] == ["keep.txt"]
