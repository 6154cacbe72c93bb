"""DDPNet: shapes, files, and REINFORCE learning a contextual bandit whose best arm depends on the context."""

import pytest
import torch
from shape_checks import unchecked

from videoscene.errors import VideoSceneError
from videoscene.policy.ddpnet import (
    BanditTrainer,
    DDPNet,
    DDPNetConfig,
    PolicyConfig,
    RewardStatistics,
    leave_one_out_baseline,
)

CANDIDATES = (199, 299, 399, 499)
NOISE_LEVELS = torch.tensor([0.25, 0.5, 1.0, 2.0])


def make_net(policy: PolicyConfig) -> DDPNet:
    return DDPNet(DDPNetConfig.from_policy(policy, latent_frames=3, latent_channels=4))


def degraded_contexts(generator: torch.Generator, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Like render latents: content plus a degradation whose strength (one of 4 levels) is the best arm."""
    best = torch.randint(len(NOISE_LEVELS), (count,), generator=generator)
    content = 0.25 * torch.randn(count, 3, 4, 8, 12, generator=generator)
    degradation = NOISE_LEVELS[best].view(-1, 1, 1, 1, 1) * torch.randn(
        count, 3, 4, 8, 12, generator=generator
    )
    return content + degradation, best


@pytest.mark.parametrize("baseline", ["running_mean", "per_clip"])
def test_bandit_learns_context_dependent_best_arm(one_thread, baseline):
    torch.manual_seed(0)
    pulls = 1 if baseline == "running_mean" else 2
    policy = PolicyConfig(
        candidates=CANDIDATES,
        hidden_channels=16,
        learning_rate=1e-3,
        exploration=0.1,
        entropy_weight=0.01,
        pulls_per_clip=pulls,
        baseline=baseline,
    )
    net = make_net(policy)
    trainer = BanditTrainer(net, policy)
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        contexts, best = degraded_contexts(generator, 16 // pulls)
        contexts, best = contexts.repeat_interleave(pulls, 0), best.repeat_interleave(pulls)

        def reward(timesteps: torch.Tensor) -> torch.Tensor:
            arm = torch.searchsorted(net.candidates, timesteps)
            return -(arm - best).abs().float() + 0.1 * torch.randn(len(arm), generator=generator)

        trainer.step(contexts, reward, generator, groups=torch.arange(16 // pulls).repeat_interleave(pulls))

    assert greedy_accuracy(net) > 0.8


def greedy_accuracy(net: DDPNet) -> float:
    contexts, best = degraded_contexts(torch.Generator().manual_seed(99), 400)
    net.eval()
    chosen = torch.searchsorted(net.candidates, net.choose_timestep(contexts))
    return (chosen == best).float().mean().item()


def test_per_clip_baseline_learns_when_clip_levels_swamp_the_arm_signal(one_thread):
    """As with real renders: a clip's reward level (how good its render is) varies far more than the gap
    between timesteps. The leave-one-out baseline cancels the level; the running mean does not."""
    accuracy = {}
    for baseline, pulls in (("running_mean", 1), ("per_clip", 4)):
        torch.manual_seed(0)
        policy = PolicyConfig(
            candidates=CANDIDATES,
            hidden_channels=16,
            learning_rate=1e-3,
            pulls_per_clip=pulls,
            baseline=baseline,
        )
        net = make_net(policy)
        trainer = BanditTrainer(net, policy)
        generator = torch.Generator().manual_seed(0)
        for _ in range(300):
            contexts, best = degraded_contexts(generator, 4)
            level = 20 * torch.randn(4, generator=generator)  # per clip, independent of the best arm
            contexts = contexts.repeat_interleave(4, 0)
            best, level = best.repeat_interleave(4), level.repeat_interleave(4)
            groups = torch.arange(4).repeat_interleave(4)

            def reward(timesteps: torch.Tensor) -> torch.Tensor:
                return level - (torch.searchsorted(net.candidates, timesteps) - best).abs().float()

            trainer.step(contexts, reward, generator, groups=groups)
        accuracy[baseline] = greedy_accuracy(net)
    assert accuracy["per_clip"] > 0.8, accuracy
    assert accuracy["per_clip"] > accuracy["running_mean"] + 0.2, accuracy


def test_leave_one_out_baseline_matches_a_per_row_loop():
    rewards = torch.tensor([1.0, 2.0, 4.0, 10.0, 20.0, -3.0, 5.0])
    groups = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    expected = torch.stack(
        [
            torch.stack([rewards[j] for j in range(7) if groups[j] == groups[i] and j != i]).mean()
            for i in range(7)
        ]
    )
    torch.testing.assert_close(leave_one_out_baseline(rewards, groups), expected)
    with pytest.raises(VideoSceneError, match="at least 2 pulls"):
        leave_one_out_baseline(rewards[:4], groups[:4])


def test_choose_timestep_shapes_and_save_load(tmp_path):
    net = make_net(PolicyConfig(candidates=CANDIDATES, hidden_channels=8))
    x = torch.randn(5, 3, 4, 8, 12)
    chosen = net.choose_timestep(x)
    assert chosen.shape == (5,) and set(chosen.tolist()) <= set(CANDIDATES)
    net.save(tmp_path / "ddpnet.safetensors")
    loaded = DDPNet.load(tmp_path)  # a folder holding ddpnet.safetensors works too
    assert loaded.config == net.config
    torch.testing.assert_close(loaded(x), net(x))


def test_wrong_input_and_bad_files_are_one_line_errors(tmp_path):
    net = make_net(PolicyConfig(candidates=CANDIDATES, hidden_channels=8))
    with pytest.raises(VideoSceneError, match="latent frames"):
        net(torch.randn(1, 5, 4, 8, 12))
    with pytest.raises(VideoSceneError, match="not found"):
        DDPNet.load(tmp_path / "missing.safetensors")
    with pytest.raises(VideoSceneError, match="distinct"):
        PolicyConfig(candidates=(199,))
    with pytest.raises(VideoSceneError, match="pulls_per_clip"):
        PolicyConfig(candidates=CANDIDATES, pulls_per_clip=1, baseline="per_clip")
    with pytest.raises(VideoSceneError, match="groups"):
        BanditTrainer(net, PolicyConfig(candidates=CANDIDATES)).step(
            torch.randn(2, 3, 4, 8, 12), lambda t: -t.float(), torch.Generator()
        )


def test_reward_statistics_and_no_gradient_into_the_reward():
    statistics = RewardStatistics(momentum=0.9)
    for _ in range(3):
        statistics.update(torch.tensor([2.0, 4.0]))
    assert statistics.baseline == pytest.approx(3.0)  # bias-corrected mean of a constant stream
    assert statistics.std == pytest.approx(1.0, rel=1e-4)

    policy = PolicyConfig(candidates=CANDIDATES, hidden_channels=8)
    net = make_net(policy)
    trainer = BanditTrainer(net, policy)
    source = torch.randn(2, 3, 4, 8, 12, requires_grad=True)
    before = [p.detach().clone() for p in net.parameters()]
    outcome = trainer.step(
        source, lambda t: -(t.float() / 1000), torch.Generator().manual_seed(0), groups=torch.tensor([0, 0])
    )
    assert source.grad is None  # decoupled: nothing flows back into the context's producer
    assert outcome.timesteps.shape == (2,) and any((a != b).any() for a, b in zip(before, net.parameters()))


def test_baseline_never_uses_the_pulls_own_reward():
    """At the first step the running mean has seen nothing: the advantage is r itself, not r − mean(batch)."""
    policy = PolicyConfig(candidates=CANDIDATES, hidden_channels=8, pulls_per_clip=1, baseline="running_mean")
    net = make_net(policy)
    trainer = BanditTrainer(net, policy)
    outcome = trainer.step(
        torch.randn(4, 3, 4, 8, 12), lambda t: torch.full((4,), 2.0), torch.Generator().manual_seed(0)
    )
    assert outcome.baseline == 0.0 and trainer.statistics.baseline == pytest.approx(2.0)
    with unchecked(), pytest.raises(VideoSceneError, match="one clip label per pull"):
        leave_one_out_baseline(torch.zeros(4), torch.tensor([0, 0, 1]))
