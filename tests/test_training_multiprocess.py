"""Every trainer on two CPU processes, launched as on a multi-GPU machine (`torchrun --nproc_per_node 2`,
gloo): the processes read disjoint shares of every step's batch, end with the same weights and optimiser
state, the main process alone writes the run's logs, and the teacher's and distillation caches are built once
(by the main process) and reused by the other. What each process read and its final state come from the debug
log (`videoscene -v`): `training.randomness.batch_indices` and the loop's sha256 of the state at the end."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_prior_train import plane_scene
from test_video_train_vae import MICRO_VIDEO, moving_pattern_scene
from weights_factory import tiny_video_config

from videoscene.data.re10k import write_split
from videoscene.prior.config import encoder_config
from videoscene.prior.encoder import GaussianEncoder
from videoscene.video.config import VideoModelConfig

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

STEPS, SCENES = 2, 4  # a global batch of 2 (1 per process) walks through 4 scenes without crossing an epoch
ITEMS = re.compile(r"step (\d+), process (\d+) of (\d+): items \[([\d, ]*)\]")
STATE = re.compile(r"step (\d+), process (\d+) of (\d+): state sha256 ([0-9a-f]{64})")
LOOP = dict(steps=STEPS, batch_size=1, warmup_steps=1, checkpoint_every=1, log_every=1, num_threads=1, seed=5)


def run_on_two_processes(*arguments: str) -> str:
    """`videoscene -v ARGUMENTS` in two CPU processes (one torch thread each); their merged output."""
    with socket.socket() as probe:  # a free port for the processes' rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"),
        *("--master_addr", "127.0.0.1", "--master_port", str(port)),
        *("-m", "videoscene.cli", "-v", *arguments),
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # gloo, even beside GPUs
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=400)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def check_data_parallel(output: str, out: Path) -> None:
    """Both processes read each step, disjoint items; both end in the same state; one log line per step."""
    read: dict[tuple[int, int], list[int]] = {}
    for step, process, processes, items in ITEMS.findall(output):
        assert processes == "2" and (int(step), int(process)) not in read
        read[int(step), int(process)] = [int(item) for item in items.split(",")]
    assert sorted(read) == [(step, process) for step in range(STEPS) for process in (0, 1)]
    for step in range(STEPS):
        assert set(read[step, 0]).isdisjoint(read[step, 1]), read
    states = final_states(output)
    assert sorted(states) == [0, 1] and states[0] == states[1], states
    logged = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert logged == list(range(1, STEPS + 1))
    assert json.loads((out / "run.json").read_text())["step"] == STEPS


def final_states(output: str) -> dict[int, str]:
    """Process → sha256 of its state after the last step."""
    return {int(process): digest for step, process, _, digest in STATE.findall(output) if int(step) == STEPS}


def write_config(path: Path, values: dict) -> str:
    path.write_text(json.dumps(values))
    return str(path)


@pytest.fixture(scope="module")
def planes(tmp_path_factory) -> Path:
    """Scenes of 9 frames at 32×48 (the prior's and the tiny video model's size)."""
    split = tmp_path_factory.mktemp("planes") / "train"
    write_split(split, [plane_scene(f"plane-{i}", 3.0 + i, 0.7 * i) for i in range(SCENES)])
    return split


@pytest.fixture(scope="module")
def patterns(tmp_path_factory) -> Path:
    """Scenes of 12 frames at 16×24 and the micro video config (test_video_train_vae)."""
    root = tmp_path_factory.mktemp("patterns")
    write_split(root / "train", [moving_pattern_scene(f"pattern-{i}", 0.3 * i) for i in range(SCENES)])
    VideoModelConfig.from_dict(MICRO_VIDEO).save_json(root / "micro_video.json")
    return root


def test_prior_and_its_resume(planes, tmp_path):
    config = {
        **LOOP,
        "encoder": "tiny",
        "train_data": [str(planes)],
        "image_size": [32, 48],
        "max_stride": 1,
        "near": 1.0,
        "far": 20.0,
    }
    command = ("train", "prior", "--config", write_config(tmp_path / "prior.json", config))
    straight = run_on_two_processes(*command, "--out", str(tmp_path / "straight"))
    check_data_parallel(straight, tmp_path / "straight")

    # Stopped after step 1, with a torn step-2 checkpoint beside it: the main process sets that one aside and
    # both processes resume from step 1, to end where the uninterrupted run ended.
    out = tmp_path / "sliced"
    run_on_two_processes(*command, "--out", str(out), "--stop-after", "1")
    torn = out / "checkpoints" / "step_0000002"
    shutil.copytree(out / "checkpoints" / "step_0000001", torn)
    (torn / "model.safetensors").write_bytes(b"torn")
    resumed = run_on_two_processes(*command, "--out", str(out), "--resume")
    assert final_states(resumed) == final_states(straight)
    assert (out / "checkpoints" / "step_0000002.corrupt").is_dir()


def test_vae(patterns, tmp_path):
    config = {
        **LOOP,
        "video": str(patterns / "micro_video.json"),
        "train_data": [str(patterns / "train")],
        "crop_size": [8, 16],
        "max_stride": 1,
        "scale_clips": 1,
    }
    out = tmp_path / "run"
    output = run_on_two_processes(
        "train", "vae", "--config", write_config(tmp_path / "vae.json", config), "--out", str(out)
    )
    check_data_parallel(output, out)


def test_teacher_builds_its_latent_cache_once(patterns, tmp_path):
    from diffusers import AutoencoderKLCogVideoX

    video = VideoModelConfig.from_dict(MICRO_VIDEO)
    AutoencoderKLCogVideoX(**video.vae_kwargs()).save_pretrained(tmp_path / "vae")
    config = {
        **LOOP,
        "video": str(patterns / "micro_video.json"),
        "vae": str(tmp_path / "vae"),
        "train_data": [str(patterns / "train")],
        "max_stride": 1,
        "clips_per_scene": 1,
        "cache_dir": str(tmp_path / "cache"),
    }
    out = tmp_path / "run"
    output = run_on_two_processes(
        "train", "teacher", "--config", write_config(tmp_path / "teacher.json", config), "--out", str(out)
    )
    check_data_parallel(output, out)
    assert len(re.findall(rf"latent cache \S+: {SCENES} clips", output)) == 1  # built by one process
    assert len(re.findall(r"reusing latent cache", output)) == 1  # and read by the other


def test_distill_builds_its_cache_once(planes, tmp_path):
    from videoscene.video.models import VideoBackbone

    torch.manual_seed(0)
    VideoBackbone.build(tiny_video_config()).save_pretrained(tmp_path / "teacher")
    GaussianEncoder(encoder_config("tiny")).save(tmp_path / "prior")
    config = {
        "teacher": str(tmp_path / "teacher"),
        "prior": str(tmp_path / "prior"),
        "data": {
            "train_dirs": [str(planes)],
            "cache_dir": str(tmp_path / "cache"),
            "num_frames": 9,
            "max_stride": 1,
            "near": 1.0,
            "far": 20.0,
            "clips_per_scene": 1,
            "store_frames": False,
        },
        "policy": {"candidates": [199, 399, 599], "hidden_channels": 8, "train_steps": STEPS},
        "train": {"steps": STEPS, "batch_size": 1, "checkpoint_every": 1, "num_threads": 1, "seed": 5},
    }
    out = tmp_path / "run"
    output = run_on_two_processes(
        "train", "distill", "--config", write_config(tmp_path / "distill.json", config), "--out", str(out)
    )
    check_data_parallel(output, out)  # the state includes DDPNet and its reward statistics
    assert len(re.findall(rf"distillation cache \S+: {SCENES} clips", output)) == 1
    assert len(re.findall(r"reusing distillation cache", output)) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="mixed precision is refused only without CUDA")
def test_mixed_precision_on_cpu_is_one_clear_error():
    from videoscene.errors import VideoSceneError
    from videoscene.training.processes import make_accelerator

    for precision in ("bf16", "fp16"):
        with pytest.raises(VideoSceneError, match=f"mixed_precision '{precision}' needs a CUDA GPU"):
            make_accelerator(precision)
    assert make_accelerator("no").device.type == "cpu"
