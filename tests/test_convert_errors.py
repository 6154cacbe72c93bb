"""Bad input to `videoscene data convert`: one clear line on stderr, a non-zero exit, nothing left behind."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from videoscene.cli import main


def nerf_scene(folder, matrix=None):
    (folder / "test").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 4), np.uint8)).save(folder / "test" / "r_0.png")
    frame = {
        "file_path": "./test/r_0",
        "transform_matrix": matrix if matrix is not None else torch.eye(4).tolist(),
    }
    (folder / "transforms_test.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": [frame]}))
    return folder


def nan_matrix():
    matrix = torch.eye(4).tolist()
    matrix[1][3] = float("nan")
    return matrix


def unknown_format(tmp):
    return ["--format", "blender", "--input", nerf_scene(tmp / "scene")], "unknown format"


def missing_transforms(tmp):
    (tmp / "empty").mkdir()
    return ["--format", "nerf", "--input", tmp / "empty"], "transforms"


def missing_input(tmp):
    return ["--format", "colmap", "--input", tmp / "nowhere"], "does not exist"


def nan_in_transform(tmp):
    return ["--format", "nerf", "--input", nerf_scene(tmp / "scene", nan_matrix())], "NaN"


def not_a_rotation(tmp):
    return ["--format", "nerf", "--input", nerf_scene(tmp / "scene", (2 * torch.eye(4)).tolist())], "rigid"


def missing_image(tmp):
    scene = nerf_scene(tmp / "scene")
    (scene / "test" / "r_0.png").unlink()
    return ["--format", "nerf", "--input", scene], "missing"


def llff_count_mismatch(tmp):
    (tmp / "fern" / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp / "fern" / "images" / "a.png")
    pose = np.concatenate([np.eye(3), np.zeros((3, 1)), [[8], [8], [10]]], axis=1)
    np.save(tmp / "fern" / "poses_bounds.npy", np.tile(np.concatenate([pose.ravel(), [1, 5]]), (2, 1)))
    return ["--format", "llff", "--input", tmp / "fern"], "2 poses but"


def bad_key(tmp):
    return ["--format", "nerf", "--input", nerf_scene(tmp / "scene"), "--key", "a/b"], "scene key"


CASES = [
    bad_key,
    unknown_format,
    missing_transforms,
    missing_input,
    nan_in_transform,
    not_a_rotation,
    missing_image,
    llff_count_mismatch,
]


@pytest.mark.parametrize("case", CASES, ids=[case.__name__ for case in CASES])
def test_bad_input_gives_one_line_and_leaves_nothing(tmp_path, capsys, case):
    args, message = case(tmp_path)
    out = tmp_path / "out"
    code = main(["data", "convert", *map(str, args), "--out", str(out)])
    stderr = capsys.readouterr().err.strip()
    assert code != 0
    assert len(stderr.splitlines()) == 1 and stderr.startswith("videoscene: error:") and message in stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_existing_output_folder_is_left_untouched(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code = main(
        [
            "data",
            "convert",
            "--format",
            "nerf",
            "--input",
            str(nerf_scene(tmp_path / "scene")),
            "--out",
            str(out),
        ]
    )
    stderr = capsys.readouterr().err.strip()
    assert code != 0 and len(stderr.splitlines()) == 1 and "already exists" in stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_corrupt_image_midway_leaves_nothing(tmp_path, capsys):
    scene = nerf_scene(tmp_path / "scene")
    meta = json.loads((scene / "transforms_test.json").read_text())
    meta["frames"].append({"file_path": "./test/r_1", "transform_matrix": torch.eye(4).tolist()})
    (scene / "transforms_test.json").write_text(json.dumps(meta))
    (scene / "test" / "r_1.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    code = main(
        ["data", "convert", "--format", "nerf", "--input", str(scene), "--out", str(tmp_path / "out")]
    )
    assert code != 0 and "cannot be read" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
