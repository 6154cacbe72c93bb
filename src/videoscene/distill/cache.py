"""The distillation cache: per training clip, everything the loss needs that does not change during training.

For each clip (the paper's Fig. 2) the frozen prior reconstructs Gaussians from the two context views,
they are rendered at the F target cameras (the coarse video), and the video model's VAE encodes

    x₀ʳ  the coarse render          →  render_latents     [f, C, h, w]
    x₀   the ground-truth clip      →  latents            [f, C, h, w]
    c    the first/last frames      →  condition_latents  [f, C, h, w] ([E(first), 0, …, 0, E(last)])
    D    the views' disagreement    →  view_disagreement  [f, 2, h, w] (DDPNet's optional input,
                                                          `policy_inputs`)

plus, optionally, the render and ground-truth frames and the render's opacity as uint8 (validation PSNR and
videos; the pipeline's output, whose render skip low-passes the change where the render has content).
Running the prior, the rasterizer and the VAE once per clip instead of once per step is what makes
distillation affordable on a CPU. The condition noise augmentation and the VAE posterior samples are
therefore drawn once per clip (from a generator seeded by the cache seed and the clip number: same seed,
same cache).

Layout: `<root>/<name>-<hash>/clip_000000.safetensors …` and `manifest.json`, written last. The hash covers
what made the cache (data folders and their index files, clip sampling, seed, prior and VAE weights), so a
changed input builds a new cache and an unchanged one is reused. Each clip file is written atomically; an
interrupted build resumes from the clips already on disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from jaxtyping import Float, UInt8
from torch import Tensor
from tqdm import tqdm

from videoscene.data.dataset import ClipDataset, ClipSamplerConfig
from videoscene.data.re10k import INDEX_FILE
from videoscene.distill.leap import LatentBatch
from videoscene.errors import LoadError, VideoSceneError
from videoscene.geometry.image_ops import crop_to_aspect_and_resize
from videoscene.image_io import to_uint8
from videoscene.io_utils import read_json_object, read_safetensors, save_safetensors, write_json_atomic
from videoscene.policy.ddpnet import policy_inputs
from videoscene.prior.encoder import GaussianEncoder
from videoscene.prior.render import render_coarse_with_alpha
from videoscene.training.checkpoints import module_fingerprint
from videoscene.types import Example, Views
from videoscene.video.conditioning import encode_condition_frames
from videoscene.video.models import VideoBackbone

logger = logging.getLogger(__name__)

CACHE_FORMAT = "videoscene.distill-cache/3"
MANIFEST_FILE = "manifest.json"
LATENT_KEYS = ("render_latents", "latents", "condition_latents")
POLICY_KEY = "view_disagreement"
FRAME_KEYS = ("render_frames", "target_frames")
OPACITY_KEY = "render_opacity"


@dataclass
class CachedClip:
    render_latents: Float[Tensor, "latent_frames channels latent_height latent_width"]  # x₀ʳ
    latents: Float[Tensor, "latent_frames channels latent_height latent_width"]  # x₀
    condition_latents: Float[Tensor, "latent_frames channels latent_height latent_width"]  # c
    view_disagreement: Float[Tensor, "latent_frames 2 latent_height latent_width"]  # D
    render_frames: UInt8[Tensor, "frames 3 height width"] | None = None
    target_frames: UInt8[Tensor, "frames 3 height width"] | None = None
    render_opacity: UInt8[Tensor, "frames height width"] | None = None  # stored with the frames
    scene: str = ""
    frame_indices: tuple[int, ...] = ()


def frames_to_float(video: UInt8[Tensor, "frames 3 height width"]) -> Float[Tensor, "frames 3 height width"]:
    return video.float() / 255


# -- one clip on disk ----------------------------------------------------------------------------------------
def save_clip(path: str | os.PathLike, clip: CachedClip) -> None:
    tensors = {key: getattr(clip, key).detach().float().contiguous().cpu() for key in LATENT_KEYS}
    shapes = {tuple(value.shape) for value in tensors.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 4:
        raise VideoSceneError(
            f"a cached clip's latents must share one [f, C, h, w] shape, got {sorted(shapes)}"
        )
    frames, _, height, width = next(iter(shapes))
    if tuple(clip.view_disagreement.shape) != (frames, 2, height, width):
        raise VideoSceneError(
            f"a cached clip's view_disagreement must be [{frames}, 2, {height}, {width}], got "
            f"{tuple(clip.view_disagreement.shape)}"
        )
    tensors[POLICY_KEY] = clip.view_disagreement.detach().float().contiguous().cpu()
    for key in FRAME_KEYS:
        value = getattr(clip, key)
        if value is not None:
            if value.dtype != torch.uint8 or value.ndim != 4 or value.shape[1] != 3:
                raise VideoSceneError(
                    f"cached {key} must be uint8 [frames, 3, H, W], got {value.dtype} {tuple(value.shape)}"
                )
            tensors[key] = value.cpu().clone(
                memory_format=torch.contiguous_format
            )  # own memory: safetensors needs it
    if clip.render_opacity is not None:
        if clip.render_opacity.dtype != torch.uint8 or clip.render_opacity.ndim != 3:
            raise VideoSceneError(
                f"cached render_opacity must be uint8 [frames, H, W], got {clip.render_opacity.dtype} "
                f"{tuple(clip.render_opacity.shape)}"
            )
        tensors[OPACITY_KEY] = clip.render_opacity.cpu().contiguous()
    metadata = {"scene": clip.scene, "frame_indices": json.dumps(list(clip.frame_indices))}
    save_safetensors(path, tensors, metadata)


def load_clip(path: str | os.PathLike) -> CachedClip:
    tensors, metadata = read_safetensors(path, "cached clip")
    missing = [key for key in (*LATENT_KEYS, POLICY_KEY) if key not in tensors]
    if missing:
        raise VideoSceneError(f"cached clip {path} lacks {missing}; delete the cache folder to rebuild it")
    return CachedClip(
        **{key: tensors.get(key) for key in (*LATENT_KEYS, POLICY_KEY, *FRAME_KEYS, OPACITY_KEY)},
        scene=metadata.get("scene", ""),
        frame_indices=tuple(json.loads(metadata.get("frame_indices", "[]"))),
    )


# -- a cache folder ------------------------------------------------------------------------------------------
class CacheWriter:
    """Writes clip files into `folder`, then the manifest that marks the cache complete."""

    def __init__(self, folder: str | os.PathLike, spec: dict):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.spec = spec
        self.latent_shape: tuple[int, ...] | None = None

    def clip_path(self, index: int) -> Path:
        return self.folder / f"clip_{index:06d}.safetensors"

    def has(self, index: int) -> bool:
        return self.clip_path(index).is_file()

    def write(self, index: int, clip: CachedClip) -> None:
        save_clip(self.clip_path(index), clip)

    def finish(self, num_clips: int) -> ClipCache:
        if num_clips < 1:
            raise VideoSceneError(
                f"cache {self.folder} would hold no clips; check the data folders and num_frames"
            )
        missing = [i for i in range(num_clips) if not self.has(i)]
        if missing:
            raise VideoSceneError(f"cache {self.folder} lacks clips {missing[:5]}…; rebuild it")
        first = load_clip(self.clip_path(0))
        manifest = {
            "format": CACHE_FORMAT,
            "num_clips": num_clips,
            "latent_shape": list(first.latents.shape),
            "has_frames": first.target_frames is not None,
            "spec": self.spec,
        }
        write_json_atomic(self.folder / MANIFEST_FILE, manifest)
        return ClipCache(self.folder)


class ClipCache(torch.utils.data.Dataset):
    """A complete cache folder: clip i → `CachedClip`; `latent_batch(indices)` stacks clips for the loss."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        manifest_path = self.folder / MANIFEST_FILE
        if not manifest_path.is_file():
            raise VideoSceneError(
                f"{self.folder} is not a finished distillation cache (no {MANIFEST_FILE}); build it first"
            )
        manifest = read_json_object(manifest_path, "cache manifest")
        if manifest.get("format") != CACHE_FORMAT:
            raise LoadError(
                f"cache {self.folder} has format {manifest.get('format')!r}, expected "
                f"{CACHE_FORMAT!r}; delete the folder to rebuild it"
            )
        shape, count = manifest.get("latent_shape"), manifest.get("num_clips")
        if (
            not isinstance(count, int)
            or count < 1
            or not isinstance(manifest.get("has_frames"), bool)
            or not isinstance(shape, list)
            or not all(isinstance(n, int) and n > 0 for n in shape)
        ):
            raise LoadError(
                f"cache manifest {manifest_path} is malformed (num_clips, latent_shape, has_frames); "
                "delete the folder to rebuild it"
            )
        self.manifest = manifest
        self.latent_shape: tuple[int, ...] = tuple(shape)
        self.has_frames: bool = manifest["has_frames"]

    def __len__(self) -> int:
        return self.manifest["num_clips"]

    def __getitem__(self, index: int) -> CachedClip:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return load_clip(self.folder / f"clip_{index:06d}.safetensors")

    def latent_batch(self, indices: Sequence[int], frames: bool = False) -> LatentBatch:
        """The clips stacked for the loss; with `frames`, their render and ground-truth frames in [0, 1]."""
        if frames and not self.has_frames:
            raise VideoSceneError(
                f"cache {self.folder} holds no frames (built with store_frames false); rebuild it with frames"
            )
        clips = [self[i] for i in indices]
        keys = (*LATENT_KEYS, POLICY_KEY, *(FRAME_KEYS if frames else ()))

        def stacked(key: str) -> Tensor:
            values = [getattr(clip, key) for clip in clips]
            return torch.stack([frames_to_float(v) for v in values] if key in FRAME_KEYS else values)

        return LatentBatch(*(stacked(key) for key in keys))


# -- building a cache from data, prior and VAE ---------------------------------------------------------------
def _split_fingerprint(split_dir: Path) -> str:
    index = split_dir / INDEX_FILE
    if not index.is_file():
        raise VideoSceneError(
            f"{split_dir} has no {INDEX_FILE}; point at a split folder (e.g. DATA/train) of "
            "RealEstate10K chunks"
        )
    return hashlib.sha256(index.read_bytes()).hexdigest()


def _fit_views(views: Views, size: tuple[int, int]) -> Views:
    if views.image_shape == size:
        return views
    image, intrinsics = crop_to_aspect_and_resize(views.image, views.intrinsics, size)
    return Views(image, views.extrinsics, intrinsics, views.near, views.far, views.index)


@torch.no_grad()
def encode_clip(
    example: Example,
    prior: GaussianEncoder,
    backbone: VideoBackbone,
    generator: torch.Generator,
    store_frames: bool = True,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> CachedClip:
    """One clip → render latent, ground-truth latent and condition latents (see the module docstring)."""
    # 1. Bring the views to the video model's size (the intrinsics follow the crop).
    config = backbone.config
    size = (config.height, config.width)
    device = backbone.device
    context = _fit_views(example.context, size).to(device)
    target = _fit_views(example.target, size).to(device)
    if target.image.shape[0] != config.num_frames:
        raise VideoSceneError(
            f"clips have {target.image.shape[0]} frames, the video model {config.num_frames}; set "
            "data.num_frames"
        )

    # 2. Gaussians from the context pair, rendered at the target cameras on the prior's training background:
    #    the coarse video; and the views' disagreement (DDPNet's optional input). (Views.index is a field, so
    #    the batch axis is added field by field.)
    def batched(views: Views) -> Views:
        return Views(
            views.image[None],
            views.extrinsics[None],
            views.intrinsics[None],
            views.near[None],
            views.far[None],
        )

    context_batch, target_batch = batched(context), batched(target)
    background_color = torch.tensor([background], dtype=torch.float32, device=device)
    gaussians = prior(context_batch).gaussians
    coarse, opacity = render_coarse_with_alpha(
        gaussians, context_batch, target_batch.cameras, size, background_color
    )
    coarse = coarse.clamp(0, 1)
    disagreement = policy_inputs(
        gaussians,
        context_batch,
        target_batch.cameras,
        size,
        config.vae.temporal_compression_ratio,
        config.vae.spatial_compression,
    )

    # 3. VAE latents of the render and of the ground truth; condition latents from the first and last frames.
    sample_posterior = config.conditioning.sample_posterior
    render_latents = backbone.encode_video(coarse, generator=generator, sample_posterior=sample_posterior)
    latents = backbone.encode_video(
        target.image[None], generator=generator, sample_posterior=sample_posterior
    )
    condition = encode_condition_frames(
        backbone, context.image[None, 0], context.image[None, -1], latents.shape[1], generator=generator
    )
    return CachedClip(
        render_latents=render_latents[0].cpu(),
        latents=latents[0].cpu(),
        condition_latents=condition[0].cpu(),
        view_disagreement=disagreement[0].cpu(),
        render_frames=to_uint8(coarse[0]).cpu() if store_frames else None,
        target_frames=to_uint8(target.image).cpu() if store_frames else None,
        render_opacity=to_uint8(opacity[0]).cpu() if store_frames else None,
        scene=example.scene,
        frame_indices=tuple(int(i) for i in target.index.tolist()) if target.index is not None else (),
    )


def clip_generator(seed: int, index: int) -> torch.Generator:
    """A CPU generator determined by (seed, clip number) alone: a resumed build draws the same numbers."""
    value = int.from_bytes(hashlib.sha256(f"{seed}:{index}".encode()).digest()[:8], "little") >> 1
    return torch.Generator().manual_seed(value)


def build_cache(
    root: str | os.PathLike,
    name: str,
    split_dirs: Sequence[str | os.PathLike],
    sampler: ClipSamplerConfig,
    prior: GaussianEncoder,
    backbone: VideoBackbone,
    seed: int = 0,
    clips_per_scene: int = 1,
    max_clips: int | None = None,
    store_frames: bool = True,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> ClipCache:
    """Build (or reuse) the cache of `split_dirs`: `clips_per_scene` clips of every scene, at most
    `max_clips`."""
    split_dirs = [Path(d).resolve() for d in split_dirs]
    spec = {
        "format": CACHE_FORMAT,
        "splits": {str(d): _split_fingerprint(d) for d in split_dirs},
        "sampler": asdict(sampler),
        "seed": seed,
        "clips_per_scene": clips_per_scene,
        "max_clips": max_clips,
        "store_frames": store_frames,
        "background": list(background),
        "size": [backbone.config.num_frames, backbone.config.height, backbone.config.width],
        "conditioning": asdict(backbone.config.conditioning),
        "prior": module_fingerprint(prior),
        "vae": module_fingerprint(backbone.vae),
        "scaling_factor": backbone.scaling_factor,  # latents are stored scaled
    }
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(root) / f"{name}-{key}"
    if (folder / MANIFEST_FILE).is_file():
        logger.info("reusing distillation cache %s", folder)
        return ClipCache(folder)

    # Clip r·S + s is repeat r of scene s; each repeat draws its own stride and start (deterministically).
    datasets = [
        ClipDataset(split_dirs, sampler, seed=seed * clips_per_scene + r, deterministic=True)
        for r in range(clips_per_scene)
    ]
    total = sum(len(d) for d in datasets)
    count = total if max_clips is None else min(total, max_clips)
    writer = CacheWriter(folder, spec)
    prior.eval()
    for index in tqdm(range(count), desc=f"caching {name}", unit="clip", disable=count < 2):
        if writer.has(index):
            continue
        dataset = datasets[index // len(datasets[0])]
        example = dataset[index % len(datasets[0])]
        writer.write(
            index,
            encode_clip(example, prior, backbone, clip_generator(seed, index), store_frames, background),
        )
    logger.info("distillation cache %s: %d clips", folder, count)
    return writer.finish(count)
