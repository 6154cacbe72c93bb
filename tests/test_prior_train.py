"""Training the prior: loss goes down on a tiny scene set, resuming equals not stopping, checkpoints are
atomic, the CLI works. Data: views of textured planes, rendered exactly (no dependency on the generator)."""

import json
import math
import signal
import subprocess
import sys
import time

import pytest
import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file

from videoscene.cli import main as cli_main
from videoscene.data.re10k import scene_from_frames, write_split
from videoscene.errors import VideoSceneError
from videoscene.prior.config import TINY
from videoscene.prior.encoder import GaussianEncoder
from videoscene.prior.train import PriorTrainConfig, StepBatches, evaluate, train_prior, validation_examples
from videoscene.training import checkpoints as checkpoints_module
from videoscene.training.checkpoints import checkpoint_folders, save_checkpoint

HEIGHT, WIDTH, FRAMES = 32, 48, 9


def plane_scene(key: str, depth: float, phase: float):
    """A camera trucking sideways (with a little yaw) in front of a textured plane z = depth."""
    intrinsics = torch.tensor([[0.9, 0, 0.5], [0, 1.35, 0.5], [0, 0, 1]])
    extrinsics = torch.eye(4).repeat(FRAMES, 1, 1)
    frames = []
    ys, xs = torch.meshgrid(
        (torch.arange(HEIGHT) + 0.5) / HEIGHT, (torch.arange(WIDTH) + 0.5) / WIDTH, indexing="ij"
    )
    pixels = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)  # [H, W, 3]
    for i in range(FRAMES):
        s = i / (FRAMES - 1) - 0.5
        yaw = 0.15 * s
        rotation = torch.tensor(
            [[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]]
        )
        extrinsics[i, :3, :3] = rotation
        extrinsics[i, :3, 3] = torch.tensor([0.8 * s, 0.05 * s, 0.0])
        rays = pixels @ torch.linalg.inv(intrinsics).T @ rotation.T  # world directions
        t = (depth - extrinsics[i, 2, 3]) / rays[..., 2]
        points = extrinsics[i, :3, 3] + rays * t[..., None]
        x, y = points[..., 0] + phase, points[..., 1]
        image = torch.stack(
            [
                0.5 + 0.3 * torch.sin(5 * x) * torch.cos(4 * y),
                0.5 + 0.3 * torch.sin(7 * y + x),
                0.5 + 0.3 * torch.cos(6 * (x + y)),
            ]
        )
        frames.append(image.clamp(0, 1))
    return scene_from_frames(key, torch.stack(frames), extrinsics, intrinsics.repeat(FRAMES, 1, 1))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def plane_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("planes")
    write_split(root / "train", [plane_scene(f"plane-{i}", 3.0 + i, 0.7 * i) for i in range(3)])
    write_split(root / "test", [plane_scene("held-out", 3.5, 2.0)])
    return root


def small_config(plane_data, **changes) -> PriorTrainConfig:
    values = dict(
        encoder="tiny",
        train_data=[str(plane_data / "train")],
        validation_data=[str(plane_data / "test")],
        image_size=(HEIGHT, WIDTH),
        num_frames=FRAMES,
        max_stride=1,
        near=1.0,
        far=20.0,
        targets_per_step=2,
        batch_size=2,
        steps=4,
        lr=2e-3,
        warmup_steps=1,
        checkpoint_every=2,
        validate_every=1000,
        log_every=1,
        num_threads=1,
        seed=3,
    )
    values.update(changes)
    return PriorTrainConfig(**values)


def test_a_few_steps_reduce_the_loss(plane_data, tmp_path):
    config = small_config(plane_data, steps=12)
    held_out = validation_examples(config)
    set_seed(config.seed)
    before = evaluate(GaussianEncoder(TINY), held_out, config.background, "cpu")
    summary = train_prior(config, tmp_path / "run")
    after = evaluate(GaussianEncoder.load(tmp_path / "run"), held_out, config.background, "cpu")
    assert summary["step"] == 12 and summary["psnr"] == pytest.approx(after["psnr"], abs=1e-4)
    assert after["psnr"] > before["psnr"] + 1.0, (before, after)
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 13))
    first, last = sum(r["loss"] for r in log[:3]), sum(r["loss"] for r in log[-3:])
    assert last < first


def test_resume_after_interruption_equals_an_uninterrupted_run(plane_data, tmp_path):
    config = small_config(plane_data)
    train_prior(config, tmp_path / "straight")
    train_prior(config, tmp_path / "interrupted", stop_after=2)  # as if killed after the step-2 checkpoint
    assert [step for step, _ in checkpoint_folders(tmp_path / "interrupted")] == [2]
    assert not (tmp_path / "interrupted" / "prior.safetensors").exists()
    (
        tmp_path / "interrupted" / "checkpoints" / ".step_0000003.x.partial"
    ).mkdir()  # debris of a crash mid-save
    with pytest.raises(VideoSceneError, match="--resume"):
        train_prior(config, tmp_path / "interrupted")
    summary = train_prior(config, tmp_path / "interrupted", resume=True)
    assert summary["step"] == 4
    straight = load_file(str(tmp_path / "straight" / "prior.safetensors"))
    resumed = load_file(str(tmp_path / "interrupted" / "prior.safetensors"))
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    optimizer_a = load_file(
        str(tmp_path / "straight" / "checkpoints" / "step_0000004" / "optimizer.safetensors")
    )
    optimizer_b = load_file(
        str(tmp_path / "interrupted" / "checkpoints" / "step_0000004" / "optimizer.safetensors")
    )
    assert all(torch.equal(optimizer_a[k], optimizer_b[k]) for k in optimizer_a)
    state = json.loads((tmp_path / "interrupted" / "checkpoints" / "step_0000004" / "state.json").read_text())
    assert state["step"] == 4 and state["scheduler"]["last_epoch"] == 4


def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before(plane_data, tmp_path, caplog):
    config = small_config(plane_data, checkpoint_every=1, keep_checkpoints=2)
    train_prior(config, tmp_path / "straight")
    train_prior(config, tmp_path / "run", stop_after=3)  # keeps the checkpoints of steps 2 and 3
    newest = tmp_path / "run" / "checkpoints" / "step_0000003"
    (newest / "model.safetensors").write_bytes(b"torn by a crash")
    with caplog.at_level("WARNING"):
        assert train_prior(config, tmp_path / "run", resume=True)["step"] == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "step_0000003" in warnings[0] and "the one before it" in warnings[0]
    assert (tmp_path / "run" / "checkpoints" / "step_0000003.corrupt").is_dir()
    straight = load_file(str(tmp_path / "straight" / "prior.safetensors"))
    resumed = load_file(str(tmp_path / "run" / "prior.safetensors"))
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)
    log = [
        json.loads(line)["step"] for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    ]
    assert log == [1, 2, 3, 4]  # step 3 was replayed from the step-2 checkpoint but is logged once


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_matches_an_uninterrupted_run(plane_data, tmp_path):
    """A real crash: SIGKILL the CLI once its first checkpoint exists, then --resume."""
    config = small_config(plane_data, steps=6)
    config_path = tmp_path / "prior.json"
    config_path.write_text(json.dumps(config.to_dict()))
    command = [
        sys.executable,
        "-m",
        "videoscene.cli",
        "train",
        "prior",
        "--config",
        str(config_path),
        "--out",
        str(tmp_path / "run"),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not checkpoint_folders(tmp_path / "run") and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    if (tmp_path / "run" / "prior.safetensors").exists():
        pytest.skip("training finished before it could be killed")
    killed_at = checkpoint_folders(tmp_path / "run")[-1][0]
    assert killed_at < 6
    assert subprocess.run(command + ["--resume"], capture_output=True).returncode == 0
    train_prior(config, tmp_path / "straight")
    straight = load_file(str(tmp_path / "straight" / "prior.safetensors"))
    resumed = load_file(str(tmp_path / "run" / "prior.safetensors"))
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)


def test_resume_refuses_a_different_encoder(plane_data, tmp_path):
    train_prior(small_config(plane_data, steps=2), tmp_path / "run", stop_after=1)
    other = small_config(plane_data, steps=2, encoder=TINY.replace(d_feature=32).to_dict())
    with pytest.raises(VideoSceneError, match="different encoder config"):
        train_prior(other, tmp_path / "run", resume=True)


def test_failed_checkpoint_write_leaves_no_partial_folder(tmp_path, monkeypatch):
    model = GaussianEncoder(TINY)
    optimizer = torch.optim.AdamW(model.parameters())
    save_checkpoint(tmp_path, 1, {"model": model.state_dict()}, {"optimizer": optimizer}, {}, keep=2)

    def broken_save(path, tensors, metadata=None):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints_module, "save_safetensors", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path, 2, {"model": model.state_dict()}, {"optimizer": optimizer}, {}, keep=2)
    assert [step for step, _ in checkpoint_folders(tmp_path)] == [1]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_0000001"]


def test_step_batches_are_a_function_of_the_step():
    full = list(StepBatches(scenes=5, batch_size=3, seed=7, start=0, steps=6))
    assert list(StepBatches(scenes=5, batch_size=3, seed=7, start=4, steps=6)) == full[4:]
    # Every epoch is a permutation of the scenes.
    positions = [position for batch in full for position, _ in batch]
    assert sorted(positions[:5]) == list(range(5)) and sorted(positions[5:10]) == list(range(5))
    # Two processes see disjoint samples that together are the single-process stream at twice the batch.
    p0 = list(StepBatches(5, 3, 7, 0, 2, process=0, processes=2))
    p1 = list(StepBatches(5, 3, 7, 0, 2, process=1, processes=2))
    assert [item for pair in zip(p0, p1) for batch in pair for item in batch] == [
        item for batch in full[:4] for item in batch
    ]


def test_cli_trains_and_refuses_to_overwrite(plane_data, tmp_path, capsys):
    config = small_config(plane_data, steps=2, train_data=[], validation_data=[])
    config_path = tmp_path / "prior.json"
    config_path.write_text(json.dumps(config.to_dict()))
    out = tmp_path / "run"
    args = ["train", "prior", "--config", str(config_path), "--data", str(plane_data), "--out", str(out)]
    assert cli_main(args) == 0
    assert (out / "prior.safetensors").is_file() and (out / "prior_config.json").is_file()
    assert json.loads((out / "train_config.json").read_text())["validation_data"] == [
        str(plane_data / "test")
    ]
    assert (out / "validation.jsonl").is_file()  # the dataset root's test/ split became validation data
    assert cli_main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert cli_main(args + ["--resume"]) == 0  # already finished: nothing to do
    assert (
        cli_main(
            [
                "train",
                "prior",
                "--config",
                str(config_path),
                "--data",
                str(tmp_path / "nowhere"),
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
