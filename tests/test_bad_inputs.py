"""Every entry point answers bad input, hostile files and unwritable outputs with one line, exit status 2
and nothing written: a table of cases over generate, demo, data, eval, train and the web app.

Each CLI case runs `videoscene` in-process from a working directory holding a sentinel file, and checks
the exit status, that exactly one error line names the problem (no traceback), that the sentinel is
untouched and that no file appeared anywhere under the test's folder.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from videoscene.cli import main
from videoscene.demo import DEMO_ASSETS
from videoscene.pipeline import BUNDLED_WEIGHTS

VIEW_0, VIEW_1, CAMS = (str(DEMO_ASSETS / name) for name in ("view_0.png", "view_1.png", "cams.json"))
SENTINEL = "keep-me.txt"


# -- hostile files -------------------------------------------------------------------------------------------
def bomb_png(path: Path, side: int = 100_000) -> str:
    """A valid PNG header declaring side × side pixels (10 gigapixels) with almost no data: a decompression
    bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
    return str(path)


def text_file(path: Path, text: str = "not an image at all\n") -> str:
    path.write_text(text)
    return str(path)


def png(path: Path, size: tuple[int, int], mode: str = "RGB") -> str:
    Image.new(mode, size).save(path)
    return str(path)


def cams_with(path: Path, **changes) -> str:
    data = json.loads(Path(CAMS).read_text())
    data.update(changes)
    path.write_text(json.dumps(data))
    return str(path)


def weights_copy(root: Path, name: str) -> Path:
    """A private copy of the bundled weights (hard links: a file is replaced, never edited in place)."""
    folder = root / name
    shutil.copytree(BUNDLED_WEIGHTS, folder, copy_function=os.link)
    return folder


def replace_file(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def truncated(path: Path) -> None:
    replace_file(path, path.read_bytes()[:200])


def pickled(path: Path) -> None:
    replace_file(path, pickle.dumps({"weight": [1.0, 2.0]}))


def edited_json(path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    replace_file(path, json.dumps(data).encode())


# -- the table -----------------------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    argv: Callable[[Path], list[str]]  # from the test folder (the working directory is folder/work)
    message: str


def generate(
    *extra: str, images: tuple[str, ...] = (VIEW_0, VIEW_1), cams: str | None = CAMS, out: str = "out"
) -> list[str]:
    argv = ["generate", "--images", *images, "--out", out, *extra]
    return argv + (["--cameras", cams] if cams else [])


def _weights(t: Path, edit: Callable[[Path], None]) -> str:
    folder = weights_copy(t, "weights")
    edit(folder)
    return str(folder)


def _unmarked(t: Path) -> str:
    (t / "work" / "mine").mkdir()
    (t / "work" / "mine" / "notes.txt").write_text("precious")
    return "mine"


def _symlink(t: Path) -> str:
    (t / "elsewhere").mkdir()
    (t / "elsewhere" / "notes.txt").write_text("precious")
    (t / "work" / "link").symlink_to(t / "elsewhere")
    return "link"


def _file(t: Path, name: str = "afile") -> str:
    (t / "work" / name).write_text("a file")
    return name


def _other_architecture(folder: Path) -> None:
    def fewer_layers(config: dict) -> None:
        config["denoiser"]["num_layers"] = 2

    edited_json(folder / "distilled" / "student" / "video_model.json", fewer_layers)


def _transforms(t: Path, **frame_changes) -> str:
    scene = t / "scene"
    scene.mkdir()
    png(scene / "r_0.png", (40, 40))
    frame = {"file_path": "r_0", "transform_matrix": np.eye(4).tolist(), **frame_changes}
    (scene / "transforms_test.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": [frame]}))
    return str(scene)


def _bomb_scene(t: Path) -> str:
    scene = t / "scene"
    scene.mkdir()
    bomb_png(scene / "r_0.png")
    (scene / "transforms_test.json").write_text(
        json.dumps(
            {
                "camera_angle_x": 0.7,
                "w": 64,
                "h": 64,
                "frames": [{"file_path": "r_0", "transform_matrix": np.eye(4).tolist()}],
            }
        )
    )
    return str(scene)


def _split_with_index(t: Path, index: dict) -> str:
    split = t / "data" / "test"
    split.mkdir(parents=True)
    (split / "index.json").write_text(json.dumps(index))
    return str(split)


def _eval_index(t: Path) -> str:
    (t / "index.json").write_text(json.dumps({"scene": {"context": [0, 4], "target": [1, 2, 3]}}))
    return str(t / "index.json")


def _eval(t: Path, *extra: str, out: str = "out", methods: str = "nearest") -> list[str]:
    return [
        "eval",
        "--data",
        str(t / "missing-data"),
        "--index",
        _eval_index(t),
        "--methods",
        methods,
        "--out",
        out,
        *extra,
    ]


def _config(t: Path, source: str, **changes) -> str:
    data = json.loads(Path(source).read_text())
    if isinstance(
        data.get("video"), str
    ):  # the repository's configs name the video config from the repository root
        data["video"] = str(REPO / data["video"])
    for key, value in changes.items():
        if "." in key:  # section.key (distillation configs)
            section, name = key.split(".")
            data[section][name] = value
        else:
            data[key] = value
    path = t / "config.json"
    path.write_text(json.dumps(data, allow_nan=True))
    return str(path)


REPO = Path(__file__).resolve().parents[1]
PRIOR, VAE, TEACHER, DISTILL = (
    str(REPO / "configs" / f"{name}.json")
    for name in ("prior_tiny", "vae_tiny_train", "teacher_tiny_train", "distill_tiny")
)

CASES = [
    # generate: the output location (nothing is loaded before these are refused)
    Case("out-is-cwd", lambda t: generate("--overwrite", out="."), "working directory"),
    Case("out-is-parent", lambda t: generate("--overwrite", out=".."), "working directory"),
    Case("out-is-root", lambda t: generate(out="/"), "working directory"),
    Case("out-is-home", lambda t: generate(out=str(Path.home())), "working directory"),
    Case("out-is-symlink", lambda t: generate("--overwrite", out=_symlink(t)), "symbolic link"),
    Case(
        "overwrite-unmarked", lambda t: generate("--overwrite", out=_unmarked(t)), "not written by videoscene"
    ),
    Case("out-exists", lambda t: generate(out=_unmarked(t)), "already exists"),
    Case("out-is-file", lambda t: generate(out=_file(t)), "not a folder"),
    Case("out-parent-is-file", lambda t: generate(out=_file(t) + "/sub"), "is a file"),
    Case("out-under-proc", lambda t: generate(out="/proc/videoscene-out"), "cannot write"),
    # generate: arguments
    Case("frames-0", lambda t: generate("--frames", "0"), "8k+1"),
    Case("frames-10", lambda t: generate("--frames", "10"), "8k+1"),
    Case("frames-word", lambda t: generate("--frames", "many"), "whole number"),
    Case("frames-too-many", lambda t: generate("--frames", "100001"), "GiB"),
    Case("timestep-0", lambda t: generate("--timestep", "0"), "timestep"),
    Case("timestep-1000", lambda t: generate("--timestep", "1000"), "timestep"),
    Case("timestep-word", lambda t: generate("--timestep", "soon"), "timestep"),
    Case("seed-2**70", lambda t: generate("--seed", str(2**70)), "seed"),
    Case("seed-negative", lambda t: generate("--seed", "-1"), "seed"),
    Case("seed-word", lambda t: generate("--seed", "abc"), "seed"),
    Case("device-tpu", lambda t: generate("--device", "tpu"), "unknown device"),
    Case("device-cuda-absent", lambda t: generate("--device", "cuda:7"), "CUDA"),
    Case("steps-0", lambda t: generate("--steps", "0"), "positive"),
    Case("student-steps-4", lambda t: generate("--steps", "4"), "exactly one step"),
    Case("fov-with-cameras", lambda t: generate("--fov", "50"), "apply only"),
    Case("fov-0", lambda t: generate("--fov", "0", cams=None), "field of view"),
    # generate: images
    Case("one-image", lambda t: generate(images=(VIEW_0,)), "exactly two images"),
    Case("image-missing", lambda t: generate(images=(VIEW_0, str(t / "nope.png"))), "does not exist"),
    Case("image-is-text", lambda t: generate(images=(VIEW_0, text_file(t / "a.png"))), "not an image"),
    Case(
        "image-is-bomb", lambda t: generate(images=(VIEW_0, bomb_png(t / "bomb.png"))), "decompression bomb"
    ),
    Case(
        "image-1x1",
        lambda t: generate(images=(png(t / "a.png", (1, 1)), png(t / "b.png", (1, 1)))),
        "at least 32 pixels",
    ),
    Case(
        "image-sizes-differ",
        lambda t: generate(images=(VIEW_0, png(t / "b.png", (40, 40)))),
        "differ in size",
    ),
    Case("image-is-folder", lambda t: generate(images=(VIEW_0, str(t))), "does not exist"),
    # generate: the cameras file
    Case("cams-not-json", lambda t: generate(cams=text_file(t / "c.json", "{nope")), "not valid JSON"),
    Case("cams-a-list", lambda t: generate(cams=text_file(t / "c.json", "[1, 2]")), "must hold"),
    Case("cams-binary", lambda t: generate(cams=str(DEMO_ASSETS / "view_0.png")), "cannot be read"),
    Case(
        "cams-near-word",
        lambda t: generate(cams=cams_with(t / "c.json", near="abc")),
        "'near' must be a positive number",
    ),
    Case(
        "cams-far-negative",
        lambda t: generate(cams=cams_with(t / "c.json", far=-3)),
        "'far' must be a positive number",
    ),
    Case(
        "cams-near-beyond-far", lambda t: generate(cams=cams_with(t / "c.json", near=30.0)), "less than far"
    ),
    Case(
        "cams-one-camera",
        lambda t: generate(
            cams=cams_with(t / "c.json", cameras=json.loads(Path(CAMS).read_text())["cameras"][:1])
        ),
        "exactly one per image",
    ),
    Case(
        "cams-3x3-extrinsics",
        lambda t: generate(
            cams=cams_with(
                t / "c.json",
                cameras=[{"extrinsics": np.eye(3).tolist(), "intrinsics": np.eye(3).tolist()}] * 2,
            )
        ),
        "4x4",
    ),
    Case(
        "cams-not-numbers",
        lambda t: generate(
            cams=cams_with(t / "c.json", cameras=[{"extrinsics": "eye", "intrinsics": "eye"}] * 2)
        ),
        "needs 'extrinsics'",
    ),
    Case(
        "cams-convention",
        lambda t: generate(cams=cams_with(t / "c.json", convention="directx")),
        "convention must be",
    ),
    Case(
        "cams-targets-count",
        lambda t: generate(
            cams=cams_with(t / "c.json", targets=json.loads(Path(CAMS).read_text())["cameras"] * 2)
        ),
        "8k+1",
    ),
    # generate: the weights folder
    Case(
        "weights-missing", lambda t: generate("--weights", str(t / "none")), "not a VideoScene weights folder"
    ),
    Case(
        "weights-pipeline-type",
        lambda t: generate(
            "--weights",
            _weights(t, lambda w: edited_json(w / "pipeline.json", lambda c: c.update(height="64"))),
        ),
        "'height' must be a whole number",
    ),
    Case(
        "weights-pipeline-not-json",
        lambda t: generate("--weights", _weights(t, lambda w: replace_file(w / "pipeline.json", b"{"))),
        "not valid JSON",
    ),
    Case(
        "weights-prior-truncated",
        lambda t: generate("--weights", _weights(t, lambda w: truncated(w / "prior" / "prior.safetensors"))),
        "not a readable .safetensors",
    ),
    Case(
        "weights-prior-pickle",
        lambda t: generate("--weights", _weights(t, lambda w: pickled(w / "prior" / "prior.safetensors"))),
        "not a readable .safetensors",
    ),
    Case(
        "weights-student-truncated",
        lambda t: generate(
            "--weights",
            _weights(t, lambda w: truncated(w / "distilled" / "student" / "transformer.safetensors")),
        ),
        "not a readable .safetensors",
    ),
    Case(
        "weights-ddpnet-pickle",
        lambda t: generate(
            "--weights", _weights(t, lambda w: pickled(w / "distilled" / "ddpnet.safetensors"))
        ),
        "not a readable .safetensors",
    ),
    Case(
        "weights-student-architecture",
        lambda t: generate("--weights", _weights(t, _other_architecture)),
        "does not fit",
    ),
    # demo
    Case("demo-out-cwd", lambda t: ["demo", "--out", ".", "--overwrite"], "working directory"),
    Case("demo-out-parent", lambda t: ["demo", "--out", "..", "--overwrite"], "working directory"),
    Case(
        "demo-overwrite-unmarked",
        lambda t: ["demo", "--out", _unmarked(t), "--overwrite"],
        "not written by videoscene",
    ),
    # data convert
    Case(
        "convert-out-cwd",
        lambda t: [
            "data",
            "convert",
            "--format",
            "nerf",
            "--input",
            _transforms(t),
            "--out",
            ".",
            "--overwrite",
        ],
        "working directory",
    ),
    Case(
        "convert-path-escapes",
        lambda t: [
            "data",
            "convert",
            "--format",
            "nerf",
            "--input",
            _transforms(t, file_path="../../etc/passwd"),
            "--out",
            "o",
        ],
        "points outside",
    ),
    Case(
        "convert-angle-0",
        lambda t: [
            "data",
            "convert",
            "--format",
            "nerf",
            "--input",
            _transforms(t, camera_angle_x=0),
            "--out",
            "o",
        ],
        "field of view",
    ),
    Case(
        "convert-width-word",
        lambda t: [
            "data",
            "convert",
            "--format",
            "nerf",
            "--input",
            _transforms(t, w="abc", h=40),
            "--out",
            "o",
        ],
        "not a number",
    ),
    Case(
        "convert-bomb",
        lambda t: ["data", "convert", "--format", "nerf", "--input", _bomb_scene(t), "--out", "o"],
        "decompression bomb",
    ),
    Case(
        "convert-missing-input",
        lambda t: ["data", "convert", "--format", "nerf", "--input", str(t / "none"), "--out", "o"],
        "does not exist",
    ),
    # eval
    Case("eval-out-cwd", lambda t: _eval(t, "--overwrite", out="."), "working directory"),
    Case("eval-device-tpu", lambda t: _eval(t, "--device", "tpu"), "unknown device"),
    Case("eval-seed-huge", lambda t: _eval(t, "--seed", str(2**70)), "seed"),
    Case("eval-bad-method", lambda t: _eval(t, methods="magic"), "magic"),
    Case(
        "eval-fvd-garbage",
        lambda t: _eval(t, "--fvd-detector", text_file(t / "i3d.pt")),
        "not a TorchScript file",
    ),
    Case(
        "eval-lpips-garbage",
        lambda t: _eval(t, "--lpips", text_file(t / "vgg.safetensors")),
        "not a readable .safetensors",
    ),
    Case("eval-make-index-exists", lambda t: _eval(t, "--make-index", "4"), "already exists"),
    Case(
        "eval-make-index-fails",
        lambda t: [
            "eval",
            "--data",
            str(t / "none"),
            "--index",
            str(t / "new.json"),
            "--make-index",
            "4",
            "--methods",
            "nearest",
            "--out",
            "o",
        ],
        "index.json",
    ),
    Case(
        "eval-index-escapes",
        lambda t: [
            "eval",
            "--data",
            _split_with_index(t, {"s": "../../../etc/passwd"}),
            "--index",
            _eval_index(t),
            "--methods",
            "nearest",
            "--out",
            "o",
        ],
        "points outside",
    ),
    Case(
        "eval-max-overlap-without-make-index",
        lambda t: _eval(t, "--max-overlap", "0.5"),
        "pass --make-index GAP with it",
    ),
    Case(
        "index-neither-gap-nor-overlap",
        lambda t: ["data", "make-index", "--data", str(t / "none"), "--out", str(t / "i.json")],
        "pass --gap N",
    ),
    Case(
        "index-overlap-above-1",
        lambda t: [
            "data",
            "make-index",
            "--data",
            str(t / "none"),
            "--out",
            str(t / "i.json"),
            "--max-overlap",
            "1.5",
        ],
        "share in [0, 1]",
    ),
    # train
    Case(
        "prior-lr-nan",
        lambda t: ["train", "prior", "--config", _config(t, PRIOR, lr=float("nan")), "--out", "run"],
        "NaN",
    ),
    Case(
        "prior-mixed-precision",
        lambda t: ["train", "prior", "--config", _config(t, PRIOR, mixed_precision="fp8"), "--out", "run"],
        "mixed_precision",
    ),
    Case(
        "prior-image-size-word",
        lambda t: ["train", "prior", "--config", _config(t, PRIOR, image_size="64"), "--out", "run"],
        "image_size",
    ),
    Case(
        "prior-near-word",
        lambda t: ["train", "prior", "--config", _config(t, PRIOR, near="abc"), "--out", "run"],
        "'near'",
    ),
    Case("prior-out-cwd", lambda t: ["train", "prior", "--config", PRIOR, "--out", "."], "working directory"),
    Case(
        "prior-seed-huge",
        lambda t: ["train", "prior", "--config", PRIOR, "--seed", str(2**70), "--out", "run"],
        "seed",
    ),
    Case(
        "prior-config-not-json",
        lambda t: ["train", "prior", "--config", text_file(t / "c.json", "{"), "--out", "run"],
        "not valid JSON",
    ),
    Case(
        "prior-data-missing",
        lambda t: ["train", "prior", "--config", PRIOR, "--data", str(t / "none"), "--out", "run"],
        "holds neither",
    ),
    Case(
        "vae-lr-word",
        lambda t: ["train", "vae", "--config", _config(t, VAE, lr="fast"), "--out", "run"],
        "'lr'",
    ),
    Case(
        "vae-out-cwd",
        lambda t: ["train", "vae", "--config", _config(t, VAE), "--out", "."],
        "working directory",
    ),
    Case(
        "teacher-mixed-precision",
        lambda t: [
            "train",
            "teacher",
            "--config",
            _config(t, TEACHER, mixed_precision="int4"),
            "--out",
            "run",
        ],
        "mixed_precision",
    ),
    Case(
        "teacher-out-cwd",
        lambda t: ["train", "teacher", "--config", _config(t, TEACHER), "--out", "."],
        "working directory",
    ),
    Case(
        "distill-lr-nan",
        lambda t: [
            "train",
            "distill",
            "--config",
            _config(t, DISTILL, **{"train.learning_rate": float("nan")}),
            "--out",
            "run",
        ],
        "NaN",
    ),
    Case(
        "distill-mixed-precision",
        lambda t: [
            "train",
            "distill",
            "--config",
            _config(t, DISTILL, **{"train.mixed_precision": "fp8"}),
            "--out",
            "run",
        ],
        "mixed_precision",
    ),
    Case(
        "distill-out-cwd",
        lambda t: ["train", "distill", "--config", DISTILL, "--out", "."],
        "working directory",
    ),
]


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root (not following links) with file contents, to compare before and after."""
    tree = {}
    for path in sorted(root.rglob("*")):
        tree[str(path.relative_to(root))] = (
            path.read_bytes() if path.is_file() and not path.is_symlink() else None
        )
    return tree


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(case: Case, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    (work / SENTINEL).write_text("still here")
    argv = case.argv(tmp_path)
    monkeypatch.chdir(work)
    before = _tree(tmp_path)
    capsys.readouterr()

    status = main(argv)

    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert status == 2, err
    assert len(errors) == 1 and "Traceback" not in err, err
    assert case.message in errors[0], errors[0]
    assert (work / SENTINEL).read_text() == "still here"
    assert _tree(tmp_path) == before, "files appeared or changed"


def test_the_table_covers_every_entry_point():
    assert len(CASES) >= 60
    prefixes = {case.name.split("-")[0] for case in CASES}
    assert {
        "demo",
        "convert",
        "eval",
        "prior",
        "vae",
        "teacher",
        "distill",
        "weights",
        "cams",
        "image",
    } <= prefixes


def test_verbose_shows_the_traceback_of_a_refusal(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["-v", *generate(images=(VIEW_0, text_file(tmp_path / "a.png")))]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("videoscene: error:")


# -- the web app ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def app(tmp_path_factory):
    gr = pytest.importorskip("gradio")
    from videoscene.app import AppConfig, VideoSceneApp
    from videoscene.pipeline import VideoScenePipeline

    root = tmp_path_factory.mktemp("app-runs")
    return VideoSceneApp(VideoScenePipeline.from_pretrained(None), AppConfig(output_root=root)), gr


APP_CASES = [
    ("photo-is-text", lambda t: dict(image_b=text_file(t / "upload.png")), "not an image"),
    ("photo-is-bomb", lambda t: dict(image_b=bomb_png(t / "upload.png")), "decompression bomb"),
    (
        "photo-1x1",
        lambda t: dict(image_a=png(t / "a.png", (1, 1)), image_b=png(t / "b.png", (1, 1))),
        "at least 32 pixels",
    ),
    ("photo-missing", lambda t: dict(image_b=None), "upload two photos"),
    (
        "cams-near-word",
        lambda t: dict(cameras_file=cams_with(t / "cams.json", near="abc")),
        "'near' must be a positive number",
    ),
    ("cams-not-json", lambda t: dict(cameras_file=text_file(t / "cams.json", "{")), "not valid JSON"),
    ("frames-10", lambda t: dict(frames="10"), "frames must be one of"),
    ("timestep-word", lambda t: dict(timestep="soon"), "timestep must be"),
    ("seed-word", lambda t: dict(seed="abc"), "seed must be"),
]


@pytest.mark.parametrize(
    "make, message", [case[1:] for case in APP_CASES], ids=[case[0] for case in APP_CASES]
)
def test_app_refusals_are_its_own_line_without_server_paths(app, tmp_path, make, message):
    app, gr = app
    runs_before = sorted(app.output_root.iterdir())
    request = dict(
        image_a=VIEW_0, image_b=VIEW_1, cameras_file=CAMS, frames=None, timestep="auto", seed=0, fov=None
    )
    request.update(make(tmp_path))
    with pytest.raises(gr.Error) as refused:
        app.generate(**request)
    text = refused.value.message
    assert message in text and "\n" not in text
    assert str(tmp_path) not in text and "/tmp" not in text
    assert sorted(app.output_root.iterdir()) == runs_before
