"""DDPNet's second input: the context views' disagreement D (prior.render.view_disagreement,
policy_inputs)."""

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from shape_checks import unchecked

from videoscene.errors import VideoSceneError
from videoscene.gaussians.rasterizer import render
from videoscene.policy.ddpnet import (
    BanditTrainer,
    DDPNet,
    DDPNetConfig,
    PolicyConfig,
    disagreement_scale,
    policy_frames,
    policy_inputs,
)
from videoscene.prior.render import view_disagreement
from videoscene.types import Gaussians, Views

HEIGHT, WIDTH = 16, 24
CANDIDATES = (199, 399, 599)


def camera_views(count: int, batch: int = 1) -> Views:
    """`count` cameras at z = 0 stepping along x, looking down +z (OpenCV axes)."""
    extrinsics = torch.eye(4).repeat(batch, count, 1, 1)
    extrinsics[..., 0, 3] = torch.linspace(-0.2, 0.2, count)
    intrinsics = torch.tensor([[1.0, 0, 0.5], [0, 1.5, 0.5], [0, 0, 1]]).repeat(batch, count, 1, 1)
    return Views(
        torch.zeros(batch, count, 3, HEIGHT, WIDTH),
        extrinsics,
        intrinsics,
        torch.ones(batch, count),
        torch.full((batch, count), 10.0),
    )


def wall(colour: float, count: int = 300, seed: int = 0) -> Gaussians:
    """Opaque Gaussians covering a wall at depth 4 in front of the cameras, of one grey level."""
    generator = torch.Generator().manual_seed(seed)
    means = torch.cat(
        [
            (torch.rand(count, 2, generator=generator) - 0.5) * torch.tensor([6.0, 5.0]),
            torch.full((count, 1), 4.0),
        ],
        -1,
    )
    harmonics = torch.zeros(count, 1, 3)
    harmonics[:, 0] = (colour - 0.5) / 0.28209479177387814  # SH band 0: colour = c₀·Y₀ + 0.5
    return Gaussians(
        means[None],
        torch.full((1, count, 3), 0.25),
        torch.tensor([1.0, 0, 0, 0]).repeat(1, count, 1),
        harmonics[None],
        torch.full((1, count), 0.99),
    )


def concat(*parts: Gaussians) -> Gaussians:
    fields = ("means", "scales", "rotations", "harmonics", "opacities")
    return Gaussians(*(torch.cat([getattr(p, f) for p in parts], dim=1) for f in fields))


def test_identical_views_agree_and_different_colours_disagree():
    context, target = camera_views(2), camera_views(3)
    same = view_disagreement(concat(wall(0.3), wall(0.3)), 2, context, target.cameras, (HEIGHT, WIDTH))
    assert same.shape == (1, 3, 2, HEIGHT, WIDTH)
    assert same[:, :, 0].abs().max() < 1e-6 and (same[:, :, 1] == 1).all()  # the wall covers every pixel
    different = view_disagreement(concat(wall(0.3), wall(0.7)), 2, context, target.cameras, (HEIGHT, WIDTH))
    close = ((different[:, :, 0] - 0.2).abs() < 0.02).float().mean()
    assert close > 0.95, close  # (|0.3 − 0.7|)/2 except at a few pixels where the random walls are thin


def test_matches_two_separate_renders():
    """Reference twin: the spread of two views is half their absolute difference where both cover the
    pixel."""
    context, target = camera_views(2), camera_views(3)
    left, right = wall(0.2, seed=1), wall(0.6, count=200, seed=2)
    right = Gaussians(right.means.clone(), right.scales, right.rotations, right.harmonics, right.opacities)
    right.means[..., 0] += 2.5  # only part of the image is covered by the right view's wall
    right = concat(right, wall(0.9, count=100, seed=3))  # equal counts per view (300 each)
    output = view_disagreement(concat(left, right), 2, context, target.cameras, (HEIGHT, WIDTH))
    black = torch.zeros(1, 3)
    a = render(left, target.extrinsics, target.intrinsics, (HEIGHT, WIDTH), black, near=0.1, far=100)
    b = render(right, target.extrinsics, target.intrinsics, (HEIGHT, WIDTH), black, near=0.1, far=100)
    both = (a.alpha > 0.5) & (b.alpha > 0.5)
    torch.testing.assert_close(output[:, :, 0], (a.color - b.color).abs().mean(2) / 2 * both)
    torch.testing.assert_close(output[:, :, 1], ((a.alpha > 0.5).float() + (b.alpha > 0.5).float()) / 2)
    assert 0 < both.float().mean() < 1  # the test covers both kinds of pixel


def test_policy_inputs_on_the_latent_grid():
    assert policy_frames(17, 4) == [0, 4, 8, 12, 16] and policy_frames(49, 4)[-1] == 48
    gaussians = concat(wall(0.3), wall(0.7))
    inputs = policy_inputs(
        gaussians,
        camera_views(2),
        camera_views(9).cameras,
        (HEIGHT, WIDTH),
        temporal_compression=4,
        spatial_compression=4,
    )
    assert inputs.shape == (1, 3, 2, HEIGHT // 4, WIDTH // 4)
    with pytest.raises(VideoSceneError, match="cannot be split"):
        view_disagreement(
            concat(wall(0.3), wall(0.7, count=11)),
            2,
            camera_views(2),
            camera_views(3).cameras,
            (HEIGHT, WIDTH),
        )


def test_ddpnet_reading_the_disagreement_checks_it_and_keeps_it_in_its_file(tmp_path):
    net = DDPNet(DDPNetConfig(3, 4, CANDIDATES, 8, view_disagreement=True))
    latents, disagreement = torch.randn(2, 3, 4, 8, 12), torch.rand(2, 3, 2, 8, 12)
    assert net.choose_timestep(latents, disagreement).shape == (2,)
    with pytest.raises(VideoSceneError, match="disagreement"):
        net(latents)
    with unchecked(), pytest.raises(VideoSceneError, match="disagreement"):
        net(latents, disagreement[:, :, :1])
    net.save(tmp_path / "ddpnet.safetensors")
    loaded = DDPNet.load(tmp_path)
    assert loaded.config.view_disagreement
    torch.testing.assert_close(loaded(latents, disagreement), net(latents, disagreement))


def test_bandit_learns_the_arm_from_the_disagreement_alone(one_thread):
    """The render latents carry no signal; how much the views disagree decides the best arm."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)

    def contexts(count: int, generator: torch.Generator):
        best = torch.randint(len(CANDIDATES), (count,), generator=generator)
        spread = 0.01 * best.view(-1, 1, 1, 1) * torch.rand(count, 3, 8, 12, generator=generator)
        disagreement = torch.stack([spread, torch.ones_like(spread)], dim=2)
        return torch.randn(count, 3, 4, 8, 12, generator=generator), disagreement, best

    policy = PolicyConfig(
        candidates=CANDIDATES,
        hidden_channels=16,
        learning_rate=1e-3,
        pulls_per_clip=2,
        view_disagreement=True,
    )
    spreads = [SimpleNamespace(view_disagreement=contexts(1, generator)[1][0]) for _ in range(64)]
    scale = disagreement_scale(spreads)
    assert 50 < scale < 200  # spreads of about 0.01
    net = DDPNet(
        replace(
            DDPNetConfig.from_policy(policy, latent_frames=3, latent_channels=4), disagreement_scale=scale
        )
    )
    trainer = BanditTrainer(net, policy)
    for _ in range(300):
        latents, disagreement, best = contexts(8, generator)
        latents, disagreement, best = (x.repeat_interleave(2, 0) for x in (latents, disagreement, best))

        def reward(timesteps: torch.Tensor) -> torch.Tensor:
            return -(torch.searchsorted(net.candidates, timesteps) - best).abs().float()

        trainer.step(
            latents, reward, generator, groups=torch.arange(8).repeat_interleave(2), disagreement=disagreement
        )
    latents, disagreement, best = contexts(300, torch.Generator().manual_seed(9))
    net.eval()
    accuracy = (
        (torch.searchsorted(net.candidates, net.choose_timestep(latents, disagreement)) == best)
        .float()
        .mean()
    )
    assert accuracy > 0.8, accuracy
