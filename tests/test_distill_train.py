"""The distillation trainer end to end on a tiny random teacher and tiny random caches: outputs, resume,
CLI."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from weights_factory import tiny_video_config

from videoscene.cli import main
from videoscene.distill.cache import CachedClip, CacheWriter, ClipCache
from videoscene.distill.config import DataConfig, DistillConfig, TrainConfig
from videoscene.distill.student import load_distilled
from videoscene.distill.train import DistillTrainer
from videoscene.errors import VideoSceneError
from videoscene.policy.ddpnet import DDPNet, PolicyConfig
from videoscene.training.randomness import batch_indices
from videoscene.video.models import VideoBackbone, trainable_parameter_names


def tiny_teacher() -> VideoBackbone:
    """9 frames at 32×48 → latents [5, 8, 16, 24]; one transformer block."""
    return VideoBackbone.build(tiny_video_config())


def random_cache(folder: Path, teacher: VideoBackbone, count: int, seed: int) -> ClipCache:
    """A cache of random latents and frames, written by the cache's own writer."""
    config = teacher.config
    shape = (config.latent_frames, config.latent_channels, config.latent_height, config.latent_width)
    generator = torch.Generator().manual_seed(seed)
    writer = CacheWriter(folder, spec={"random": seed})
    for i in range(count):
        frames = torch.randint(
            0,
            256,
            (config.num_frames, 3, config.height, config.width),
            generator=generator,
            dtype=torch.uint8,
        )
        latents = [torch.randn(shape, generator=generator) for _ in range(3)]
        disagreement = torch.rand((shape[0], 2, *shape[2:]), generator=generator)
        writer.write(
            i, CachedClip(*latents, disagreement, render_frames=frames, target_frames=frames.flip(0))
        )
    return writer.finish(count)


def small_config(steps: int, clips_per_step: int | None = None, **train) -> DistillConfig:
    return DistillConfig(
        teacher="unused",
        data=DataConfig(train_cache="unused"),
        policy=PolicyConfig(
            candidates=(199, 399, 599),
            hidden_channels=8,
            train_steps=3,
            learning_rate=1e-3,
            pulls_per_clip=2,
            clips_per_step=clips_per_step,
        ),
        train=TrainConfig(
            steps=steps, learning_rate=1e-4, checkpoint_every=2, validate_every=2, validation_clips=2, **train
        ),
    )


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.manual_seed(0)
    teacher = tiny_teacher()
    root = tmp_path_factory.mktemp("distill")
    return (
        teacher,
        random_cache(root / "train", teacher, 5, 0),
        random_cache(root / "val", teacher, 2, 1),
        root,
    )


def test_three_steps_end_to_end_write_every_output(setup, tmp_path):
    teacher, train_cache, val_cache, _ = setup
    out = tmp_path / "run"
    summary = DistillTrainer(small_config(3), teacher, train_cache, val_cache, out).train()
    assert summary["step"] == 3 and summary["validation"]["step"] == 3
    student = VideoBackbone.from_pretrained(out / "student")
    assert student.config == teacher.config
    assert DDPNet.load(out / "ddpnet.safetensors").config.candidates == (199, 399, 599)
    assert DistillConfig.load_json(out / "distill_config.json") == small_config(3)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all(r["loss"] > 0 for r in log)
    assert all(
        199 <= r["ddpnet_t_mean"] <= 599 and r["ddpnet_reward"] < 0 for r in log
    )  # DDPNet trains for 3 steps
    validation = [json.loads(line) for line in (out / "validation.jsonl").read_text().splitlines()]
    assert [v["step"] for v in validation] == [2, 3] and {"psnr", "coarse_psnr", "latent_mse", "t"} <= set(
        validation[-1]
    )
    assert (out / "validation" / "step_0000003.mp4").stat().st_size > 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_0000002", "step_0000003"]
    # The exported run as the pipeline opens it: DDPNet's t, then one student step.
    distilled = load_distilled(out)
    clip = val_cache.latent_batch([0, 1])
    chosen = distilled.start_timestep(clip.render_latents)
    assert set(chosen.tolist()) <= {199, 399, 599}
    generated = distilled.generate(
        clip.render_latents, clip.condition_latents, generator=torch.Generator().manual_seed(0)
    )
    assert generated.shape == clip.latents.shape and torch.isfinite(generated).all()
    # The student moved away from the teacher; its VAE is the teacher's.
    moved = [
        (a - b).abs().max().item()
        for a, b in zip(student.transformer.parameters(), teacher.transformer.parameters())
    ]
    assert max(moved) > 0
    for a, b in zip(student.vae.parameters(), teacher.vae.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("clips_per_step", [None, 3])
def test_resume_continues_identically(setup, tmp_path, clips_per_step):
    teacher, train_cache, val_cache, _ = setup
    straight = DistillTrainer(
        small_config(4, clips_per_step), teacher, train_cache, val_cache, tmp_path / "straight"
    )
    straight.train()

    first = DistillTrainer(
        small_config(2, clips_per_step), teacher, train_cache, val_cache, tmp_path / "resumed"
    )
    first.train()  # "crashes" after its step-2 checkpoint
    resumed = DistillTrainer(
        small_config(4, clips_per_step), teacher, train_cache, val_cache, tmp_path / "resumed", resume=True
    )
    assert resumed.step == 2
    resumed.train()
    log = [
        json.loads(line)["step"]
        for line in (tmp_path / "resumed" / "train_log.jsonl").read_text().splitlines()
    ]
    assert log == [1, 2, 3, 4]

    for a, b in zip(straight.student.transformer.parameters(), resumed.student.transformer.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(straight.target.transformer.parameters(), resumed.target.transformer.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(straight.bandit.net.parameters(), resumed.bandit.net.parameters()):
        assert torch.equal(a, b)
    assert straight.bandit.statistics == resumed.bandit.statistics
    # Frozen weights come from the teacher on resume, so another teacher is refused.
    other = tiny_teacher()
    with pytest.raises(VideoSceneError, match="different teacher"):
        DistillTrainer(
            small_config(6, clips_per_step), other, train_cache, val_cache, tmp_path / "resumed", resume=True
        )


def test_bandit_pulls_clips_of_its_own(setup, tmp_path):
    """policy.clips_per_step: each bandit update pulls that many distinct training clips, pulls_per_clip times
    each, whatever the student's batch size; without it the bandit pulls the student's batch."""
    teacher, train_cache, _, _ = setup
    cached = torch.stack([train_cache[i].render_latents for i in range(len(train_cache))])
    for clips_per_step, expected_clips in ((4, 4), (None, 2)):  # train.batch_size = 2 (TrainConfig default)
        trainer = DistillTrainer(
            small_config(2, clips_per_step), teacher, train_cache, None, tmp_path / f"run{clips_per_step}"
        )
        seen = []
        bandit_step = trainer.bandit.step

        def recording_step(render_latents, *args, **kwargs):
            seen.append((render_latents, kwargs["groups"]))
            return bandit_step(render_latents, *args, **kwargs)

        trainer.bandit.step = recording_step
        trainer.train()
        assert len(seen) == 2
        for render_latents, groups in seen:
            assert render_latents.shape[0] == expected_clips * 2 and groups.tolist() == sorted(
                groups.tolist()
            )
            # Every pulled row is one cached clip; the pulls of one clip share it; the clips are distinct.
            matches = [[torch.equal(row, clip) for clip in cached].index(True) for row in render_latents]
            assert [matches[i] for i in range(0, len(matches), 2)] == [
                matches[i] for i in range(1, len(matches), 2)
            ]
            assert len(set(matches)) == expected_clips


def test_attention_subset_trains_only_attention_and_ema_follows(setup, tmp_path):
    teacher, train_cache, val_cache, _ = setup
    names = trainable_parameter_names(teacher.transformer, "attention")
    assert names and all(
        ".attn1." in n and any(k in n for k in ("to_q", "to_k", "to_v", "to_out")) for n in names
    )
    assert len(trainable_parameter_names(teacher.transformer, "all")) == len(
        list(teacher.transformer.parameters())
    )
    trainer = DistillTrainer(
        small_config(1, trainable="attention"), teacher, train_cache, None, tmp_path / "run"
    )
    trainer.train()
    before = dict(teacher.transformer.named_parameters())
    after = dict(trainer.student.transformer.named_parameters())
    target = dict(trainer.target.transformer.named_parameters())
    for name, value in after.items():
        if name not in names:
            assert torch.equal(value, before[name]), name
    assert all(not torch.equal(after[name], before[name]) for name in names)
    # One EMA step from θ⁻₀ = φ: θ⁻₁ = μ·φ + (1 − μ)·θ₁.
    mu = trainer.config.train.ema_decay
    for name in names:
        torch.testing.assert_close(target[name], mu * before[name] + (1 - mu) * after[name])


def test_the_pixel_term_trains_from_the_cached_frames(setup, tmp_path):
    """λ_px alone (no teacher step): the training batch carries the cache's frames, and the loss moves the
    student."""
    teacher, train_cache, _, _ = setup
    config = small_config(2)
    config = replace(
        config,
        leap=replace(config.leap, leap_weight=0.0, pixel_weight=1.0),
        policy=replace(config.policy, train_steps=0),
    )
    trainer = DistillTrainer(config, teacher, train_cache, None, tmp_path / "run")
    summary = trainer.train()
    assert summary["step"] == 2
    assert trainer.batch.render_frames.shape == (2, *train_cache[0].render_frames.shape)
    assert 0 <= trainer.batch.target_frames.min() and trainer.batch.target_frames.max() <= 1
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert all(r["loss"] > 0 for r in log)
    moved = [
        (a - b).abs().max().item()
        for a, b in zip(trainer.student.transformer.parameters(), teacher.transformer.parameters())
    ]
    assert max(moved) > 0


def test_batch_order_covers_every_clip_each_epoch():
    steps = [batch_indices(5, 2, 1, 0, step, seed=0) for step in range(5)]  # 10 draws = 2 epochs
    flat = [i for batch in steps for i in batch]
    assert sorted(flat[:5]) == list(range(5)) and sorted(flat[5:]) == list(range(5))
    # Two processes split one global batch without overlap.
    assert set(batch_indices(6, 3, 2, 0, 0, 0)).isdisjoint(batch_indices(6, 3, 2, 1, 0, 0))


def _write_config(
    path: Path, teacher_dir: Path, train_folder: Path, val_folder: Path, changes: dict | None = None
) -> Path:
    data = small_config(2).to_dict()
    data["teacher"] = str(teacher_dir)
    data["data"].update(train_cache=str(train_folder), val_cache=str(val_folder))
    for section, values in (changes or {}).items():
        data[section].update(values)
    path.write_text(json.dumps(data))
    return path


def test_cli_runs_leap_and_no_leap(setup, tmp_path):
    teacher, train_cache, val_cache, root = setup
    teacher_dir = root / "teacher"
    if not teacher_dir.exists():
        teacher.save_pretrained(teacher_dir)
    config = _write_config(tmp_path / "distill.json", teacher_dir, train_cache.folder, val_cache.folder)
    assert main(["train", "distill", "--config", str(config), "--out", str(tmp_path / "leap")]) == 0
    assert (tmp_path / "leap" / "ddpnet.safetensors").is_file()
    assert (
        main(
            [
                "train",
                "distill",
                "--config",
                str(config),
                "--out",
                str(tmp_path / "noleap"),
                "--no-leap",
                "--steps",
                "1",
            ]
        )
        == 0
    )
    run = json.loads((tmp_path / "noleap" / "run.json").read_text())
    assert run["no_leap"] is True and run["step"] == 1
    assert not (tmp_path / "noleap" / "ddpnet.safetensors").exists()  # no t to choose without the leap
    distilled = load_distilled(tmp_path / "noleap")
    assert distilled.leap.no_leap and distilled.ddpnet is None
    clip = val_cache.latent_batch([0])
    assert distilled.start_timestep(clip.render_latents, 199).tolist() == [
        999
    ]  # pure noise, whatever t is asked for
    a = distilled.generate(clip.render_latents, clip.condition_latents, 199, torch.Generator().manual_seed(0))
    b = distilled.generate(
        clip.render_latents + 1, clip.condition_latents, 599, torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(a, b)  # from pure noise: neither the render nor t matters


@pytest.mark.parametrize(
    "change, message",
    [
        ({"leap": {"max_timestep": 2000}}, "max_timestep"),
        ({"policy": {"candidates": [200, 400]}}, "skip-20 grid"),
        ({"policy": {"clips_per_step": 0}}, "clips_per_step"),
        ({"train": {"learning_rte": 1e-4}}, "unknown key"),
        ({"train": {"trainable": "mlp"}}, "trainable"),
        ({"leap": {"distance": "l1"}}, "distance"),
    ],
)
def test_bad_config_is_a_one_line_error(setup, tmp_path, capsys, change, message):
    _, train_cache, val_cache, root = setup
    config = _write_config(
        tmp_path / "bad.json", root / "teacher", train_cache.folder, val_cache.folder, change
    )
    assert main(["train", "distill", "--config", str(config), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_missing_inputs_are_one_line_errors(setup, tmp_path, capsys):
    teacher, train_cache, val_cache, _ = setup
    assert main(["train", "distill", "--config", str(tmp_path / "none.json")]) == 2
    assert "not found" in capsys.readouterr().err
    config = _write_config(tmp_path / "c.json", tmp_path / "no_teacher", train_cache.folder, val_cache.folder)
    assert main(["train", "distill", "--config", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "is not a model folder" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "something").write_text("x")
    with pytest.raises(VideoSceneError, match="--resume"):
        DistillTrainer(small_config(1), teacher, train_cache, None, tmp_path / "full")


def test_repository_configs_parse():
    configs = Path(__file__).resolve().parents[1] / "configs"
    leap = DistillConfig.load_json(configs / "distill_tiny.json")
    no_leap = DistillConfig.load_json(configs / "distill_tiny_noleap.json")
    assert leap.trains_policy and not leap.leap.no_leap
    assert no_leap.leap.no_leap and not no_leap.trains_policy
    # The ablation differs only in the leap switch and DDPNet: same data, so the same cache.
    assert replace(no_leap, policy=leap.policy) == leap.with_no_leap()
