"""What the output and input boundaries guarantee beyond refusing bad input: our own outputs can be
replaced, killed runs' staging folders are cleaned up (and nothing else), images of every bit depth and
with transparency read as they look, and the same frames encode to the same mp4 bytes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from videoscene.cli import main
from videoscene.errors import OutputError
from videoscene.geometry.image_ops import resize
from videoscene.image_io import encode_mp4, read_rgb
from videoscene.io_utils import OUTPUT_MARKER, remove_stale_stages, staged_output_dir
from videoscene.training.checkpoints import trim_log


def test_overwrite_replaces_an_output_of_ours(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--out", "demo", "--frames", "9", "--timestep", "400"]) == 0
    first = (tmp_path / "demo" / "report.json").read_text()
    assert (tmp_path / "demo" / OUTPUT_MARKER).is_file()
    assert main(["demo", "--out", "demo", "--overwrite", "--seed", "3", "--timestep", "400"]) == 0
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["num_frames"] == 17 and (tmp_path / "demo" / "report.json").read_text() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no staging or old copies left beside it


def test_staging_folders_of_dead_runs_are_removed_and_nothing_else(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)

    def stage(name: str, pid: int | None) -> None:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "frame.png").write_bytes(b"x")
        if pid is not None:
            (folder / OUTPUT_MARKER).write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))

    stage(".out.dead.partial", dead_pid)
    stage(".out.alive.partial", 1)  # pid 1 is always running
    stage(".out.unmarked.partial", None)  # not provably ours
    (tmp_path / ".out.empty.partial").mkdir()  # killed before it was marked
    (tmp_path / ".out.marking.partial").mkdir()
    (tmp_path / ".out.marking.partial" / OUTPUT_MARKER).write_text("")  # killed while marking it
    stage("user.partial", dead_pid)  # not hidden: not a staging folder name
    an_hour_ago = time.time() - 3600
    for name in (".out.empty.partial", ".out.marking.partial"):
        os.utime(tmp_path / name, (an_hour_ago, an_hour_ago))
    # a run starting beside ours: created a moment ago, not marked yet
    (tmp_path / ".other.starting.partial").mkdir()
    (tmp_path / ".other.marking.partial").mkdir()
    (tmp_path / ".other.marking.partial" / OUTPUT_MARKER).write_text("")
    removed = remove_stale_stages(tmp_path)
    assert sorted(p.name for p in removed) == [
        ".out.dead.partial",
        ".out.empty.partial",
        ".out.marking.partial",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".other.marking.partial",
        ".other.starting.partial",
        ".out.alive.partial",
        ".out.unmarked.partial",
        "user.partial",
    ]


def test_a_failed_build_leaves_the_previous_output_and_no_staging(tmp_path):
    out = tmp_path / "out"
    with staged_output_dir(out) as stage:
        (stage / "a.txt").write_text("first")
    with pytest.raises(RuntimeError), staged_output_dir(out, overwrite=True) as stage:
        (stage / "a.txt").write_text("second")
        raise RuntimeError("crash while writing")
    assert (out / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_full_disk_is_one_output_error(tmp_path, monkeypatch):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="No space left"), staged_output_dir(tmp_path / "out") as stage:
        monkeypatch.setattr(type(stage), "write_bytes", full)
        (stage / "video.mp4").write_bytes(b"frames")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "mode, value, expected", [("I;16", 32896, 128), ("I;16", 65535, 255), ("I", 16448, 64), ("L", 200, 200)]
)
def test_greyscale_of_any_bit_depth_is_scaled_to_8_bits(tmp_path, mode, value, expected):
    path = tmp_path / ("grey.tif" if mode == "I" else "grey.png")  # Pillow stops writing 32-bit PNGs
    Image.new(mode, (40, 40), value).save(path)
    pixels = read_rgb(path)
    assert pixels.dtype == np.uint8 and pixels.shape == (40, 40, 3)
    assert int(pixels.min()) == int(pixels.max()) == expected


@pytest.mark.parametrize("background, expected", [("white", [255, 128, 128]), ("black", [128, 0, 0])])
def test_transparency_is_composited_onto_the_stated_background(tmp_path, background, expected):
    path = tmp_path / "rgba.png"
    Image.new("RGBA", (40, 40), (255, 0, 0, 128)).save(path)
    assert read_rgb(path, background)[0, 0].tolist() == pytest.approx(expected, abs=1)


def test_same_frames_encode_to_the_same_mp4_bytes():
    frames = (np.random.default_rng(0).random((17, 64, 96, 3)) * 255).astype(np.uint8)
    assert encode_mp4(frames) == encode_mp4(frames)
    assert encode_mp4(frames[:, :63, :95])[:4] == encode_mp4(frames)[:4]  # odd sides are padded, not refused


def test_antialiased_shrink_stays_in_the_input_range():
    white = torch.ones(3, 300, 450)
    white[:, :, :7] = 0
    resized, _ = resize(white, torch.eye(3), (64, 96))
    assert resized.max() <= 1 and resized.min() >= 0


def test_trim_log_drops_replayed_and_torn_records(tmp_path):
    log = tmp_path / "train_log.jsonl"
    log.write_text(
        "".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in range(1, 7)) + '{"step": 7, "lo'
    )
    trim_log(log, 4)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3, 4]


def test_safetensors_files_are_the_same_bytes_whatever_the_metadata_order(tmp_path):
    from videoscene.io_utils import load_safetensors, save_safetensors

    tensors = {"b": torch.arange(6.0).reshape(2, 3), "a": torch.ones(4, dtype=torch.int64)}
    save_safetensors(tmp_path / "x.safetensors", tensors, {"format": "f", "config": "{}", "zeta": "z"})
    save_safetensors(
        tmp_path / "y.safetensors",
        dict(reversed(tensors.items())),
        {"zeta": "z", "config": "{}", "format": "f"},
    )
    assert (tmp_path / "x.safetensors").read_bytes() == (tmp_path / "y.safetensors").read_bytes()
    loaded = load_safetensors(tmp_path / "x.safetensors", "test file")
    assert all(torch.equal(loaded[key], value) for key, value in tensors.items())
