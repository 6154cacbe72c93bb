"""Where the one-step denoising starts (distill.student.start_timestep), through every path that decides it:
the function itself, the distilled student, the distillation trainer's validation and the pipeline, with a
DDPNet that also reads the views' disagreement D."""

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from shape_checks import unchecked
from weights_factory import DDPNET_TIMESTEPS

from videoscene.data.synthetic import render_scene
from videoscene.distill.config import LeapConfig
from videoscene.distill.student import DistilledStudent, load_distilled, start_timestep
from videoscene.distill.train import DistillTrainer
from videoscene.errors import VideoSceneError
from videoscene.pipeline import VideoScenePipeline
from videoscene.policy.ddpnet import DDPNet, DDPNetConfig
from videoscene.types import Cameras
from videoscene.video.schedule import NoiseSchedule

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def distilled(tiny_weights) -> DistilledStudent:
    return load_distilled(tiny_weights / "distilled")


class RecordingDDPNet(DDPNet):
    """A DDPNet that remembers the disagreement it was given with each choice."""

    def __init__(self, config: DDPNetConfig):
        super().__init__(config)
        self.disagreements: list[torch.Tensor | None] = []

    def choose_timestep(self, render_latents, disagreement=None):
        self.disagreements.append(disagreement)
        return super().choose_timestep(render_latents, disagreement)


def disagreement_ddpnet(distilled: DistilledStudent) -> RecordingDDPNet:
    torch.manual_seed(0)
    config = distilled.student.config
    net = RecordingDDPNet(
        DDPNetConfig(
            config.latent_frames, config.latent_channels, DDPNET_TIMESTEPS, 8, view_disagreement=True
        )
    )
    with torch.no_grad():
        net.head.bias.zero_()  # at initialisation the bias, not the input, would decide the choice
    return net.eval()


def latents_and_disagreement(distilled: DistilledStudent, batch: int = 2):
    config = distilled.student.config
    generator = torch.Generator().manual_seed(1)
    shape = (batch, config.latent_frames, config.latent_channels, config.latent_height, config.latent_width)
    render_latents = torch.randn(shape, generator=generator)
    disagreement = torch.rand(
        batch, config.latent_frames, 2, config.latent_height, config.latent_width, generator=generator
    )
    return render_latents, disagreement


def test_fixed_and_no_leap_starts_and_the_one_range_check(distilled):
    render_latents, _ = latents_and_disagreement(distilled)
    assert start_timestep(None, 549, False, 1000, render_latents).tolist() == [549, 549]
    assert start_timestep(None, 549, True, 1000, render_latents).tolist() == [999, 999]  # no leap: pure noise
    assert start_timestep(None, None, True, 500, render_latents).tolist() == [499, 499]  # T from the schedule
    for bad in (0, 1000, -1, "399", 2.5, True):  # the wrong types reach the check with the type checks off
        with (
            unchecked(),
            pytest.raises(VideoSceneError, match="timestep must be 'auto' or a whole number from 1 to 999"),
        ):
            start_timestep(None, bad, False, 1000, render_latents)
    with pytest.raises(VideoSceneError, match="from 1 to 499"):
        start_timestep(None, 600, False, 500, render_latents)
    with pytest.raises(VideoSceneError, match="no DDPNet"):
        start_timestep(None, None, False, 1000, render_latents)


def test_the_policy_reads_the_views_disagreement(distilled):
    net = disagreement_ddpnet(distilled)
    render_latents, disagreement = latents_and_disagreement(distilled)
    chosen = start_timestep(
        net, 549, False, 1000, render_latents, disagreement
    )  # the fixed t is the fallback only
    assert torch.equal(chosen, net.choose_timestep(render_latents, disagreement))
    assert set(chosen.tolist()) <= set(DDPNET_TIMESTEPS)
    choices = {
        tuple(start_timestep(net, None, False, 1000, render_latents, scale * disagreement).tolist())
        for scale in (0, 1000)
    }
    assert len(choices) > 1, "the disagreement never changed DDPNet's choice"
    with pytest.raises(VideoSceneError, match="disagreement"):
        start_timestep(net, None, False, 1000, render_latents)


def test_the_student_passes_the_disagreement_to_its_ddpnet(distilled):
    net = disagreement_ddpnet(distilled)
    student = replace(distilled, ddpnet=net)
    render_latents, disagreement = latents_and_disagreement(distilled)
    condition = torch.randn_like(render_latents)
    assert torch.equal(
        student.start_timestep(render_latents, None, disagreement),
        net.choose_timestep(render_latents, disagreement),
    )
    out = student.generate(render_latents, condition, None, torch.Generator().manual_seed(0), disagreement)
    assert out.shape == render_latents.shape and net.disagreements[-1] is disagreement
    with pytest.raises(VideoSceneError, match="disagreement"):
        student.generate(render_latents, condition, None)
    calls = len(net.disagreements)
    assert (
        student.start_timestep(render_latents, 399).tolist() == [399, 399] and len(net.disagreements) == calls
    )
    # Without the leap the student starts from pure noise, whatever t or DDPNet say.
    no_leap = replace(student, leap=LeapConfig(no_leap=True))
    assert no_leap.start_timestep(render_latents, None, disagreement).tolist() == [999, 999]
    with pytest.raises(VideoSceneError, match="no DDPNet"):
        replace(distilled, ddpnet=None).start_timestep(render_latents)


def test_the_trainers_validation_passes_the_disagreement(distilled):
    """DistillTrainer.policy_timestep on a stand-in trainer holding only what it reads."""
    net = disagreement_ddpnet(distilled)
    render_latents, disagreement = latents_and_disagreement(distilled)

    def trainer(bandit_net, no_leap=False):
        config = SimpleNamespace(
            leap=SimpleNamespace(no_leap=no_leap), train=SimpleNamespace(validation_timestep=499)
        )
        bandit = None if bandit_net is None else SimpleNamespace(net=bandit_net)
        return SimpleNamespace(bandit=bandit, config=config, schedule=NoiseSchedule())

    chosen = DistillTrainer.policy_timestep(trainer(net), render_latents, disagreement)
    assert (
        torch.equal(chosen, net.choose_timestep(render_latents, disagreement))
        and net.disagreements[0] is disagreement
    )
    assert DistillTrainer.policy_timestep(trainer(None), render_latents).tolist() == [499, 499]
    assert DistillTrainer.policy_timestep(trainer(None, no_leap=True), render_latents).tolist() == [999, 999]


def test_the_pipeline_passes_the_disagreement_on_every_path(tiny_weights):
    pipe = VideoScenePipeline.from_pretrained(tiny_weights)
    net = disagreement_ddpnet(pipe.distilled)
    pipe.distilled = replace(pipe.distilled, ddpnet=net)
    frames, extrinsics, intrinsics, _ = render_scene(5, 0, 9, 48, 72)
    images = torch.as_tensor(frames[[0, 8]]).permute(0, 3, 1, 2).float() / 255
    cameras = Cameras(
        torch.as_tensor(extrinsics[[0, 8]]).float(), torch.as_tensor(intrinsics[[0, 8]]).float()
    )
    targets = Cameras(torch.as_tensor(extrinsics).float(), torch.as_tensor(intrinsics).float())
    config = pipe.distilled.student.config
    expected = (1, config.latent_frames, 2, config.latent_height, config.latent_width)

    student = pipe(images, cameras, seed=0)
    teacher_leap = pipe(images, cameras, model="teacher", timestep="auto", num_steps=1, seed=0)
    along_targets = pipe(images, cameras, target_cameras=targets, seed=0)
    assert len(net.disagreements) == 3
    for output, disagreement in zip((student, teacher_leap, along_targets), net.disagreements):
        assert output.timestep in DDPNET_TIMESTEPS
        assert disagreement is not None and tuple(disagreement.shape) == expected
        assert ((disagreement[:, :, 1] >= 0) & (disagreement[:, :, 1] <= 1)).all() and disagreement[
            :, :, 1
        ].max() > 0
    assert teacher_leap.method == "teacher-leap@1"
    fixed = pipe(images, cameras, timestep=399, seed=0)  # an explicit t asks no DDPNet
    assert fixed.timestep == 399 and len(net.disagreements) == 3
    with pytest.raises(VideoSceneError, match="from 1 to 999"):
        pipe(images, cameras, timestep=0)
