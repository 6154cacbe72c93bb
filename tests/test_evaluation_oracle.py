"""Oracle analysis: the regret maths on a hand-made table, and the enumeration on a tiny random student."""

import json
import math

import pytest
import torch
from weights_factory import tiny_video_config

from videoscene.cli import main
from videoscene.distill.cache import CachedClip, CacheWriter, ClipCache
from videoscene.distill.config import DataConfig, DistillConfig, LeapConfig
from videoscene.errors import VideoSceneError
from videoscene.evaluation.oracle import error_table, oracle_analysis, regret_analysis
from videoscene.policy.ddpnet import DDPNet, DDPNetConfig
from videoscene.video.models import VideoBackbone

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
                frames,
                frames.clone(),
            ),
        )
    return student, root / "run", writer.finish(3), candidates


def test_oracle_enumeration_on_a_tiny_student(run_folder):
    student, run, cache, candidates = run_folder
    leap = LeapConfig()
    table = error_table(student, cache, candidates, leap, seed=0)
    assert table.shape == (3, 3) and (table > 0).all()
    torch.testing.assert_close(
        error_table(student, cache, candidates, leap, seed=0), table
    )  # same noise, same table
    ddpnet = DDPNet.load(run / "ddpnet.safetensors")
    report = oracle_analysis(student, ddpnet, cache, leap, seed=0)
    assert report.num_clips == 3 and report.fixed_timestep in candidates
    assert report.policy_regret_db >= 0 and report.fixed_regret_db >= 0
    assert report.oracle_db >= max(report.policy_db, report.fixed_db)
    assert math.isclose(
        report.oracle_db, (-10 * table.double().log10()).max(dim=1).values.mean().item(), rel_tol=1e-6
    )
    pixel = error_table(student, cache, candidates, leap, seed=0, space="pixel")
    assert pixel.shape == (3, 3)
    with pytest.raises(VideoSceneError, match="pure noise"):
        oracle_analysis(student, ddpnet, cache, LeapConfig(no_leap=True))


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
