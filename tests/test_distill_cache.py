"""The distillation cache: files, determinism, reuse and resume, built with a real (random) prior and VAE."""

import json

import pytest
import torch
from shape_checks import unchecked
from weights_factory import tiny_video_config

from videoscene.data.dataset import ClipSamplerConfig
from videoscene.data.re10k import scene_from_frames, write_split
from videoscene.distill import cache as cache_module
from videoscene.distill.cache import CachedClip, CacheWriter, ClipCache, build_cache, load_clip, save_clip
from videoscene.errors import VideoSceneError
from videoscene.prior.config import PRESETS as PRIOR_PRESETS
from videoscene.prior.encoder import GaussianEncoder
from videoscene.video.models import VideoBackbone

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def components(tmp_path_factory):
    """Two random scenes of 12 frames at 48×72 (resized to the model's 32×48), a camera moving sideways."""
    torch.manual_seed(0)
    video_config = tiny_video_config()
    backbone = VideoBackbone.build(video_config).eval()
    prior = GaussianEncoder(PRIOR_PRESETS["tiny"]).eval()
    split = tmp_path_factory.mktemp("data") / "train"
    scenes = []
    for s in range(2):
        frames = torch.rand(12, 3, 48, 72)
        extrinsics = torch.eye(4).repeat(12, 1, 1)
        extrinsics[:, 0, 3] = torch.linspace(0, 0.5, 12)
        intrinsics = torch.tensor([[0.8, 0, 0.5], [0, 1.2, 0.5], [0, 0, 1.0]]).repeat(12, 1, 1)
        scenes.append(scene_from_frames(f"scene{s}", frames, extrinsics, intrinsics))
    write_split(split, scenes)
    sampler = ClipSamplerConfig(num_frames=9, min_stride=1, max_stride=1, near=0.5, far=20.0)
    return backbone, prior, split, sampler


def test_build_is_deterministic_reused_and_resumable(components, tmp_path, monkeypatch):
    backbone, prior, split, sampler = components
    first = build_cache(tmp_path / "a", "train", [split], sampler, prior, backbone, seed=3, clips_per_scene=2)
    assert len(first) == 4 and first.latent_shape == (5, 8, 16, 24) and first.has_frames
    clip = first[0]
    assert clip.render_frames.shape == (9, 3, 32, 48) and clip.render_frames.dtype == torch.uint8
    assert clip.render_opacity.shape == (9, 32, 48) and clip.render_opacity.dtype == torch.uint8
    assert clip.render_opacity.float().mean() > 0  # the Gaussians cover some of every clip
    assert len(clip.frame_indices) == 9 and clip.scene in ("scene0", "scene1")
    # The condition latents are [first, 0, last] and the render is not the ground truth.
    assert clip.condition_latents[1].abs().max() == 0 and clip.condition_latents[0].abs().max() > 0
    assert not torch.equal(clip.render_latents, clip.latents)
    batch = first.latent_batch([0, 3])
    assert batch.render_latents.shape == (2, 5, 8, 16, 24)

    # Same inputs and seed in another folder: identical tensors.
    second = build_cache(
        tmp_path / "b", "train", [split], sampler, prior, backbone, seed=3, clips_per_scene=2
    )
    for i in range(4):
        for key in ("render_latents", "latents", "condition_latents", "render_frames", "render_opacity"):
            assert torch.equal(getattr(first[i], key), getattr(second[i], key)), (i, key)

    # Reuse: a finished cache is opened, nothing is recomputed.
    def fail(*args, **kwargs):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(cache_module, "encode_clip", fail)
    again = build_cache(tmp_path / "a", "train", [split], sampler, prior, backbone, seed=3, clips_per_scene=2)
    assert again.folder == first.folder
    monkeypatch.undo()

    # Interrupted build (manifest and one clip missing): only that clip is made again, identically.
    (first.folder / "manifest.json").unlink()
    (first.folder / "clip_000002.safetensors").unlink()
    resumed = build_cache(
        tmp_path / "a", "train", [split], sampler, prior, backbone, seed=3, clips_per_scene=2
    )
    assert torch.equal(resumed[2].latents, second[2].latents)

    # Another seed or other prior weights: a different cache folder.
    other_seed = build_cache(
        tmp_path / "a", "train", [split], sampler, prior, backbone, seed=4, clips_per_scene=1
    )
    assert other_seed.folder != first.folder and len(other_seed) == 2
    manifest = json.loads((first.folder / "manifest.json").read_text())
    assert manifest["spec"]["seed"] == 3 and len(manifest["spec"]["prior"]) == 64


def test_clip_round_trip_and_validation(tmp_path):
    shape = (3, 4, 8, 12)
    disagreement = torch.rand(3, 2, 8, 12)
    clip = CachedClip(
        torch.randn(shape),
        torch.randn(shape),
        torch.randn(shape),
        disagreement,
        scene="s",
        frame_indices=(1, 2, 3),
    )
    save_clip(tmp_path / "c.safetensors", clip)
    loaded = load_clip(tmp_path / "c.safetensors")
    assert (
        torch.equal(loaded.latents, clip.latents)
        and torch.equal(loaded.view_disagreement, disagreement)
        and loaded.frame_indices == (1, 2, 3)
        and loaded.render_frames is None
        and loaded.render_opacity is None
    )
    opacity = torch.randint(0, 256, (9, 4, 4), dtype=torch.uint8)
    save_clip(
        tmp_path / "o.safetensors",
        CachedClip(*(torch.randn(shape) for _ in range(3)), disagreement, render_opacity=opacity),
    )
    assert torch.equal(load_clip(tmp_path / "o.safetensors").render_opacity, opacity)
    with unchecked(), pytest.raises(VideoSceneError, match="share one"):
        save_clip(
            tmp_path / "d.safetensors",
            CachedClip(torch.randn(shape), torch.randn(2, 4, 8, 12), torch.randn(shape), disagreement),
        )
    with unchecked(), pytest.raises(VideoSceneError, match="view_disagreement must be"):
        save_clip(tmp_path / "d.safetensors", CachedClip(*(torch.randn(shape),) * 3, torch.rand(3, 1, 8, 12)))
    with unchecked(), pytest.raises(VideoSceneError, match="uint8"):
        save_clip(
            tmp_path / "e.safetensors",
            CachedClip(*(torch.randn(shape),) * 3, disagreement, render_frames=torch.rand(9, 3, 4, 4)),
        )
    with unchecked(), pytest.raises(VideoSceneError, match="render_opacity must be uint8"):
        save_clip(
            tmp_path / "e.safetensors",
            CachedClip(*(torch.randn(shape),) * 3, disagreement, render_opacity=torch.rand(9, 4, 4)),
        )
    writer = CacheWriter(tmp_path / "cache", spec={})
    writer.write(0, clip)
    with pytest.raises(VideoSceneError, match="lacks clips"):
        writer.finish(2)
    assert not (tmp_path / "cache" / "manifest.json").exists()
    assert len(writer.finish(1)) == 1
    assert ClipCache(tmp_path / "cache").latent_batch([0, 0]).latents.shape == (2, *shape)


def test_wrong_frame_count_is_a_one_line_error(components, tmp_path):
    backbone, prior, split, sampler = components
    longer = VideoBackbone(
        backbone.config.with_size(17, 32, 48), backbone.vae, backbone.transformer, backbone.prompt_embedding
    )
    with pytest.raises(VideoSceneError, match="clips have 9 frames, the video model 17"):
        build_cache(tmp_path, "train", [split], sampler, prior, longer)
