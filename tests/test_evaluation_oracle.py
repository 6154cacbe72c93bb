"""Oracle analysis: the regret maths on a hand-made table, and the enumeration on a tiny random student."""

import json
import math

import pytest
import torch
from weights_factory import tiny_video_config

from videoscene.cli import main
from videoscene.distill import policy_fit
from videoscene.distill.cache import CachedClip, CacheWriter, ClipCache, clip_generator
from videoscene.distill.config import DataConfig, DistillConfig, LeapConfig
from videoscene.distill.leap import one_step_generate
from videoscene.distill.policy_fit import ScoreTable, fit_policy, score_table
from videoscene.distill.student import load_distilled
from videoscene.errors import VideoSceneError
from videoscene.evaluation.oracle import oracle_analysis, regret_analysis
from videoscene.geometry.image_ops import gaussian_blur
from videoscene.metrics.image import ssim
from videoscene.policy.ddpnet import DDPNet, DDPNetConfig, PolicyConfig
from videoscene.video.models import VideoBackbone
from videoscene.video.schedule import NoiseSchedule

pytestmark = pytest.mark.usefixtures("one_thread")


def test_regret_maths_on_a_hand_made_table():
    # Three clips, three candidates; MSEs chosen as powers of ten so qualities are whole decibels.
    mse = torch.tensor(
        [
            [1e-1, 1e-2, 1e-3],  # best t = 300: quality 10, 20, 30 dB
            [1e-3, 1e-2, 1e-1],  # best t = 100
            [1e-2, 1e-3, 1e-2],  # best t = 200
        ]
    )
    report = regret_analysis(mse, [100, 200, 300], policy_choice=torch.tensor([2, 0, 0]))
    assert report.oracle_timesteps == [300, 100, 200]
    assert report.oracle_db == pytest.approx(30.0)
    # Mean quality per fixed t: 100 → (10+30+20)/3 = 20, 200 → (20+20+30)/3 = 23.33, 300 → 20 ⇒ fixed t = 200.
    assert report.fixed_timestep == 200
    assert report.fixed_db == pytest.approx(70 / 3)
    assert report.fixed_regret_db == pytest.approx((10 + 10 + 0) / 3)
    # The policy is right on clips 1 and 2 and loses 10 dB on clip 3.
    assert report.policy_db == pytest.approx(80 / 3)
    assert report.policy_regret_db == pytest.approx(10 / 3)
    assert report.policy_regret_mse == pytest.approx((1e-2 - 1e-3) / 3)
    assert report.fixed_regret_mse == pytest.approx((9e-3 + 9e-3) / 3)
    assert "DDPNet" in report.table()
    with pytest.raises(VideoSceneError, match="do not match"):
        regret_analysis(mse, [100, 200], torch.tensor([0, 0, 0]))


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A tiny random student saved as a distillation run, a random DDPNet, and a 3-clip cache."""
    torch.manual_seed(0)
    config = tiny_video_config()
    student = VideoBackbone.build(config).eval()
    root = tmp_path_factory.mktemp("oracle")
    student.save_pretrained(root / "run" / "student")
    candidates = (199, 399, 599)
    DDPNet(DDPNetConfig(config.latent_frames, config.latent_channels, candidates, 8)).save(
        root / "run" / "ddpnet.safetensors"
    )
    DistillConfig(teacher="unused", data=DataConfig(train_cache="unused")).save_json(
        root / "run" / "distill_config.json"
    )
    writer = CacheWriter(root / "cache", spec={"test": True})
    shape = (config.latent_frames, config.latent_channels, config.latent_height, config.latent_width)
    for i in range(3):
        frames = torch.randint(0, 256, (9, 3, 32, 48), dtype=torch.uint8)
        writer.write(
            i,
            CachedClip(
                torch.randn(shape),
                torch.randn(shape),
                torch.randn(shape),
                torch.rand(shape[0], 2, *shape[2:]),
                torch.randint(0, 256, (9, 3, 32, 48), dtype=torch.uint8),
                frames,
                render_opacity=torch.randint(0, 256, (9, 32, 48), dtype=torch.uint8),
            ),
        )
    return student, root / "run", writer.finish(3), candidates


def test_oracle_enumeration_on_a_tiny_student(run_folder):
    student, run, cache, candidates = run_folder
    leap = LeapConfig()
    table = score_table(student, cache, candidates, leap, seed=0).mse
    assert table.shape == (3, 3) and (table > 0).all()
    torch.testing.assert_close(
        score_table(student, cache, candidates, leap, seed=0).mse, table
    )  # same noise, same table
    ddpnet = DDPNet.load(run / "ddpnet.safetensors")
    report = oracle_analysis(student, ddpnet, cache, leap, seed=0)
    assert report.num_clips == 3 and report.fixed_timestep in candidates
    assert report.policy_regret_db >= 0 and report.fixed_regret_db >= 0
    assert report.oracle_db >= max(report.policy_db, report.fixed_db)
    assert math.isclose(
        report.oracle_db, (-10 * table.double().log10()).max(dim=1).values.mean().item(), rel_tol=1e-6
    )
    pixel = score_table(student, cache, candidates, leap, seed=0, space="pixel")
    assert pixel.mse.shape == (3, 3) and pixel.ssim.shape == (3, 3)
    with pytest.raises(VideoSceneError, match="pure noise"):
        oracle_analysis(student, ddpnet, cache, LeapConfig(no_leap=True))


def test_pipeline_space_matches_a_looped_reference(run_folder):
    """Batched over candidates and filtered by `render_skip` vs one candidate at a time, composed by hand."""
    student, _, cache, candidates = run_folder
    leap, sigma = LeapConfig(), 1.5
    table = score_table(student, cache, candidates, leap, seed=0, max_clips=2, space="pipeline", sigma=sigma)
    schedule = NoiseSchedule(student.config.schedule)
    for n in range(2):
        clip = cache[n]
        noise = torch.randn(clip.latents.shape, generator=clip_generator(0, n))[None]
        coarse = clip.render_frames[None].float() / 255
        target = clip.target_frames[None].float() / 255
        alpha = (clip.render_opacity[None].float() / 255)[:, :, None]
        decoded_render = student.decode_latents(clip.render_latents[None])
        for k, t in enumerate(candidates):
            with torch.no_grad():
                x0 = one_step_generate(
                    student.predict_v,
                    schedule,
                    clip.render_latents[None],
                    clip.condition_latents[None],
                    torch.tensor([t]),
                    noise,
                    leap,
                )
                change = student.decode_latents(x0) - decoded_render
            output = (coarse + alpha * gaussian_blur(change, sigma) + (1 - alpha) * change).clamp(0, 1)
            torch.testing.assert_close(
                table.mse[n, k], (output - target).square().mean(), rtol=1e-4, atol=1e-7
            )
            torch.testing.assert_close(
                table.ssim[n, k], ssim(output[0], target[0]).mean(), rtol=1e-4, atol=1e-6
            )
        torch.testing.assert_close(table.render_ssim[n], ssim(coarse[0], target[0]).mean())
    # Without the low-pass the filter is the identity: the pipeline table is the render skip alone.
    plain = score_table(student, cache, candidates, leap, seed=0, max_clips=2, space="pipeline")
    assert not torch.allclose(plain.mse, table.mse)


def test_reward_in_decibels():
    # PSNR 20 and 30 dB; SSIM 10 and 20 dB; the render's SSIM 20 dB, so the first output falls 10 dB short.
    table = ScoreTable(torch.tensor([[1e-2, 1e-3]]), torch.tensor([[0.9, 0.99]]), torch.tensor([0.99]))
    torch.testing.assert_close(table.quality(), torch.tensor([[20.0, 30.0]]))
    torch.testing.assert_close(table.quality(0.5), torch.tensor([[25.0, 40.0]]))
    torch.testing.assert_close(table.quality(0.0, 0.5), torch.tensor([[15.0, 30.0]]))
    torch.testing.assert_close(table.quality(0.5, 0.5), torch.tensor([[20.0, 40.0]]))
    with pytest.raises(VideoSceneError, match="needs frames"):
        ScoreTable(table.mse).quality(1.0)


def test_bandit_fit_on_a_reward_table_learns_each_clips_best_t():
    """Two kinds of render latent, each with its own best candidate: the fitted policy tells them apart."""
    torch.manual_seed(0)
    config = DDPNetConfig(2, 4, (19, 199, 599), 8)
    net = DDPNet(config)
    render = torch.randn(32, 2, 4, 8, 8) * 0.1
    render[16:] += 2.0  # the second kind
    quality = torch.tensor([[30.0, 29.0, 27.0]] * 16 + [[27.0, 28.0, 30.0]] * 16)
    policy = PolicyConfig(
        candidates=config.candidates,
        hidden_channels=8,
        learning_rate=1e-2,
        pulls_per_clip=4,
        clips_per_step=8,
        exploration=0.1,
        entropy_weight=0.01,
    )
    history = fit_policy(net, quality, render, None, policy, steps=150, seed=0)
    assert len(history) == 150 and sum(history[-20:]) > sum(history[:20])
    with torch.no_grad():
        choice = net.eval()(render).argmax(dim=-1)
    assert (choice[:16] == 0).all() and (choice[16:] == 2).all()
    with pytest.raises(VideoSceneError, match="does not match"):
        fit_policy(net, quality[:, :2], render, None, policy, steps=1)


def test_policy_fit_command_writes_a_loadable_run(run_folder, tmp_path, capsys, monkeypatch):
    student, run, cache, candidates = run_folder
    out = tmp_path / "fitted"
    args = ["policy", "fit", "--weights", str(run), "--cache", str(cache.folder), "--out", str(out)]
    assert main([*args, "--space", "pipeline", "--sigma", "1", "--steps", "3"]) == 0
    fitted = load_distilled(out)
    assert fitted.ddpnet is not None and fitted.ddpnet.config.candidates == candidates
    report = json.loads((out / "policy_fit.json").read_text())
    assert report["space"] == "pipeline" and report["clips"] == 3
    oracle = report["train_oracle"]["reward_db"]
    assert oracle >= max(report["train_policy"]["reward_db"], report["train_best_fixed"]["reward_db"])
    assert 0 < report["train_policy"]["ssim"] <= 1
    for name, value in student.transformer.state_dict().items():
        torch.testing.assert_close(fitted.student.transformer.state_dict()[name], value)
    assert main([*args, "--sigma", "-1"]) == 2  # refused in one line; the folder stays as it was
    assert "must be ≥ 0" in capsys.readouterr().err
    assert load_distilled(out).ddpnet is not None

    # The reward table was kept in the cache folder: a refit with an SSIM reward reads it back.
    def fail(*args, **kwargs):
        raise AssertionError("the reward table should have been reused")

    monkeypatch.setattr(policy_fit, "score_table", fail)
    refit = [*args, "--space", "pipeline", "--sigma", "1", "--steps", "2", "--ssim-floor-weight", "3"]
    assert main([*refit, "--ssim-weight", "1", "--overwrite"]) == 0
    report = json.loads((out / "policy_fit.json").read_text())
    assert report["ssim_weight"] == 1.0 and report["floor_weight"] == 3.0
    assert main([*refit, "--space", "latent", "--overwrite"]) == 2
    assert "an SSIM reward scores frames" in capsys.readouterr().err


def test_oracle_command_writes_json(run_folder, tmp_path, capsys):
    _, run, cache, candidates = run_folder
    out = tmp_path / "oracle.json"
    assert (
        main(
            [
                "policy",
                "oracle",
                "--weights",
                str(run),
                "--cache",
                str(cache.folder),
                "--out",
                str(out),
                "--clips",
                "2",
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["num_clips"] == 2 and report["candidates"] == list(candidates)
    assert "best fixed t" in capsys.readouterr().out
    assert main(["policy", "oracle", "--weights", str(tmp_path), "--cache", str(cache.folder)]) == 2
    assert "is not a distilled student" in capsys.readouterr().err


def test_open_cache_without_manifest_is_an_error(tmp_path):
    with pytest.raises(VideoSceneError, match="not a finished distillation cache"):
        ClipCache(tmp_path)
