"""benchmarks/step_sweep.py and benchmarks/make_results_tables.py on tiny random weights (plumbing, not
quality): the sweep's points, figure and report, and the markdown tables of Tables 1, 3 and 6."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
from test_evaluation_fvd import VideoStatistics  # a small TorchScript stand-in with I3D's call signature
from weights_factory import make_tiny_weights

from videoscene.cli import main
from videoscene.data.re10k import scene_from_frames, write_split
from videoscene.data.synthetic import SynthConfig, render_scene
from videoscene.errors import VideoSceneError

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
PNG = b"\x89PNG\r\n\x1a\n"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Tiny random weights (32x48, 9 frames) with the no-leap ablation student beside the full one."""
    folder = make_tiny_weights(tmp_path_factory.mktemp("weights"))
    noleap = folder / "distilled_noleap"
    shutil.copytree(folder / "distilled", noleap, ignore=shutil.ignore_patterns("ddpnet.safetensors"))
    config = json.loads((noleap / "distill_config.json").read_text())
    (noleap / "distill_config.json").write_text(
        json.dumps(config | {"leap": {"no_leap": True}})
    )  # as `train distill --no-leap`
    return folder


@pytest.fixture(scope="module")
def split_and_index(tmp_path_factory):
    scenes = []
    for index in range(2):
        frames, extrinsics, intrinsics, _ = render_scene(3, index, 9, 48, 72, SynthConfig(supersample=1))
        scenes.append(
            scene_from_frames(
                f"room{index}", frames, torch.from_numpy(extrinsics), torch.from_numpy(intrinsics)
            )
        )
    root = tmp_path_factory.mktemp("synthetic")
    write_split(root / "test", scenes)
    index = root / "index.json"
    index.write_text(
        json.dumps({f"room{i}": {"context": [0, 8], "target": [0, 2, 4, 6, 8]} for i in range(2)})
    )
    return root / "test", index


@pytest.fixture(scope="module")
def sweep(weights, split_and_index, tmp_path_factory):
    data, index = split_and_index
    root = tmp_path_factory.mktemp("sweep")
    out, detector = root / "out", root / "i3d_torchscript.pt"
    torch.jit.script(VideoStatistics()).save(str(detector))
    threads = (
        torch.get_num_threads()
    )  # --threads sets torch's global count (module fixtures run outside one_thread)
    points = load_script("step_sweep").main(
        [
            "--weights",
            str(weights),
            "--data",
            str(data),
            "--index",
            str(index),
            "--out",
            str(out),
            "--steps",
            "2",
            "1",
            "--threads",
            "1",
            "--metrics",
            "psnr",
            "fvd",
            "--fvd-detector",
            str(detector),
        ]
    )
    torch.set_num_threads(threads)
    return out, points


def test_step_sweep_points_figure_and_report(sweep):
    out, points = sweep
    assert json.loads((out / "step_sweep.json").read_text())["curves"] == points["curves"]
    assert [p["method"] for p in points["curves"]["teacher"]] == ["teacher@1", "teacher@2"]
    assert [p["steps"] for p in points["curves"]["teacher-leap"]] == [1, 2]
    assert (
        points["curves"]["student"] == [points["curves"]["student"][0]]
        and points["curves"]["student"][0]["steps"] == 1
    )
    assert set(points["references"]) == {"nearest", "coarse"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["methods"]) == [
        "nearest",
        "coarse",
        "teacher@1",
        "teacher@2",
        "teacher-leap@1",
        "teacher-leap@2",
        "student",
    ]
    for curve in [*points["curves"].values(), list(points["references"].values())]:
        for point in curve:
            assert point["psnr"] == metrics["methods"][point["method"]]["psnr"] and point["psnr"] > 0
            assert point["fvd"] == metrics["methods"][point["method"]]["fvd"] and point["fvd"] >= 0
            assert point["seconds"] > 0
    assert (out / "step_sweep.png").read_bytes()[:8] == PNG and (out / "metrics.png").read_bytes()[:8] == PNG


def test_step_sweep_needs_a_teacher(weights, split_and_index, tmp_path):
    data, index = split_and_index
    no_teacher = tmp_path / "weights"
    shutil.copytree(weights, no_teacher, ignore=shutil.ignore_patterns("teacher"))
    with pytest.raises(VideoSceneError, match="no teacher/ video model"):
        load_script("step_sweep").main(
            [
                "--weights",
                str(no_teacher),
                "--data",
                str(data),
                "--index",
                str(index),
                "--out",
                str(tmp_path / "o"),
            ]
        )
    assert not (tmp_path / "o").exists()


SPEED = {
    "seconds_median": {
        "student": {
            "prior": 0.01,
            "render": 0.02,
            "vae_encode": 0.03,
            "policy": 0.002,
            "denoise": 0.01,
            "vae_decode": 0.03,
            "total": 0.1,
        },
        "teacher@50": {
            "prior": 0.01,
            "render": 0.02,
            "vae_encode": 0.03,
            "policy": 0.002,
            "denoise": 4.88,
            "vae_decode": 0.06,
            "total": 5.0,
        },
    },
    "ratio_total": {"teacher@50/student": 50.0},
    "peak_rss_mib": 812.0,
    "resolution": [17, 64, 96],
    "machine": {"platform": "Linux", "processor": "x86_64", "threads": 2, "device": "cpu"},
    "repeats": 3,
}


def table_rows(text: str, title: str) -> list[list[str]]:
    """The body rows of the markdown table under `### title`, as lists of cells."""
    section = text.split(f"### {title}")[1].split("###")[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def test_tables_1_3_and_6_from_an_eval_run_and_the_speed_json(weights, split_and_index, tmp_path):
    data, index = split_and_index
    out = tmp_path / "eval"
    methods = "nearest,coarse,teacher@1,teacher@2,teacher-leap@1,student,student@t549,student-noleap"
    arguments = [
        "--data",
        str(data),
        "--index",
        str(index),
        "--weights",
        str(weights),
        "--out",
        str(out),
        "--scenes",
        "1",
    ]
    assert main(["eval", "--methods", methods, *arguments]) == 0
    speed = tmp_path / "pipeline_speed.json"
    speed.write_text(json.dumps(SPEED))
    metrics = json.loads((out / "metrics.json").read_text())["methods"]

    text = load_script("make_results_tables").main(
        ["--metrics", str(out / "metrics.json"), "--speed", str(speed), "--steps", "1", "2"]
    )

    table1 = table_rows(text, "Table 1 analogue")
    assert [row[:2] for row in table1] == [
        ["nearest view", "–"],
        ["coarse render (prior)", "–"],
        ["teacher from noise", "2"],
        ["", "1"],
        ["teacher from render (leap)", "1"],
        ["**VideoScene student** (DDPNet t)", "1"],
        ["*ground-truth frames (3D-consistency floor)*", "–"],
    ]
    assert (
        table1[-2][2] == f"{metrics['student']['psnr']:.2f}" and table1[-1][2] == "–"
    )  # no PSNR for the reference row
    assert "Not in this run: `teacher-leap@2`." in text.split("### Table 3")[0]

    table3 = table_rows(text, "Table 3 analogue")
    assert [row[:2] for row in table3] == [
        ["Base rendered video", "`coarse`"],
        ["w/o 3D-aware leap flow", "`student-noleap`"],
        ["w/o DDPNet (fixed t = 549)", "`student@t549`"],
        ["**VideoScene (full model)**", "`student`"],
    ]
    assert table3[1][2] == f"{metrics['student-noleap']['psnr']:.2f}" and "FVD" not in text

    table6 = table_rows(text, "Table 6 analogue (runtime)")
    assert table6 == [
        ["`student`", "0.010", "0.020", "0.030", "0.002", "0.010", "0.030", "0.100", "1.0×"],
        ["`teacher@50`", "0.010", "0.020", "0.030", "0.002", "4.880", "0.060", "5.000", "50.0×"],
    ]
    assert "17×64×96" in text and "2.98 s" in text


def test_tables_read_the_sweep_output_and_reject_other_files(sweep, tmp_path):
    out, _ = sweep
    tables = load_script("make_results_tables")
    text = tables.main(["--metrics", str(out / "metrics.json"), "--steps", "1", "2"])
    assert [row[:2] for row in table_rows(text, "Table 1 analogue")][2:6] == [
        ["teacher from noise", "2"],
        ["", "1"],
        ["teacher from render (leap)", "2"],
        ["", "1"],
    ]
    assert "Not in this run: `student-noleap`, `student@tT`." in text
    (tmp_path / "speed.json").write_text(json.dumps({"seconds_median": {}}))
    with pytest.raises(VideoSceneError, match="no seconds_median.student"):
        tables.main(["--speed", str(tmp_path / "speed.json")])
    with pytest.raises(VideoSceneError, match="has no 'methods'"):
        tables.main(["--metrics", str(tmp_path / "speed.json")])
