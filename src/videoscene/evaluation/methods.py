"""The methods `videoscene eval` compares, by name, and how each one is built.

A method is a function `generate(request) -> frames`: given the two context views at the model's
resolution and the F cameras of the path (first and last = the context cameras), it returns the F frames
[F, 3, H, W] in [0, 1] that it generates for that path. The evaluator then compares the frames at the
target slots with ground truth (evaluation/protocol.py).

Names (issue 6), parsed by `parse_method`:

| name | family | what it is |
|---|---|---|
| `nearest` | nearest | copy the context view nearer in time to each frame |
| `coarse` | coarse | the Gaussian prior's render at the path cameras |
| `teacher@N` | teacher | N-step teacher from pure noise |
| `teacher-leap@N` | teacher-leap | N-step teacher from the render noised to the chosen t |
| `student` | student | one step from the render noised to DDPNet's t |
| `student@tT` | student | one step at the fixed t = T, e.g. `student@t549` |
| `student-noleap` | student-noleap | the ablation student distilled from pure noise |
| `prior` | prior | the prior's Gaussians, unoptimised, rendered at the path and the holdout cameras |
| `recon-<generator>` | recon-… | 3D Gaussians fitted to the generator's video (e.g. `recon-student`) |
| `recon-gt` | recon-gt | 3D Gaussians fitted to the ground-truth targets: an upper bound (an `Oracle`) |

The generative families run `VideoScenePipeline` (`build_with_pipeline`; a weights folder is loaded once per
process and device). `register_family` adds or replaces a family (e.g. a baseline of your own).

`recon-<generator>` exists for every generator but `nearest` (`recon-coarse`, `recon-teacher@4`, …).
A method that builds a 3D scene also renders the index's *holdout* frames, cameras that no method
generates (`request.holdout`), and returns a `MethodOutput` (frames, holdout renders); the others return
the frames alone. The `recon-*` methods start from the prior's Gaussians for the context pair and run
`videoscene.reconstruct.optimize.fit_gaussians` for `MethodResources.reconstruct.steps` steps (`videoscene
eval --recon-steps`) on the generated frames at the path cameras, with the confidence weights of
`videoscene reconstruct` (recon-gt: on the ground-truth targets at their cameras, all at weight 1).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from videoscene.errors import VideoSceneError
from videoscene.io_utils import read_json_object
from videoscene.reconstruct.optimize import ReconstructConfig
from videoscene.types import Cameras, Gaussians, Views
from videoscene.video.config import NUM_TRAIN_TIMESTEPS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationRequest:
    """Everything a method may use for one scene. It never sees the target images."""

    context: Views  # the two context views [2, 3, H, W] at the model's resolution, with near/far
    path: Cameras  # F cameras [F, 4, 4], [F, 3, 3]; path[0] and path[-1] are the context cameras
    times: Float[Tensor, " frame"]  # each frame's time along the path: 0 at context 0, 1 at context 1
    seed: int  # per-scene seed; a method must be a deterministic function of the request
    scene: str = ""
    holdout: Cameras | None = None  # the index's holdout frames' cameras (no method generates them)
    off_path: Cameras | None = None  # a path beside `path` (no ground truth): 3D methods render it too
    truth: Views | None = None  # the ground-truth targets: given to `Oracle` methods (recon-gt) alone

    @property
    def num_frames(self) -> int:
        return len(self.path)

    @property
    def image_shape(self) -> tuple[int, int]:
        return self.context.image_shape


@dataclass(frozen=True)
class MethodOutput:
    """What a method that builds a 3D scene returns: its frames along the path, its renders at the holdout
    cameras and at the off-path cameras (None when the request has none)."""

    frames: Float[Tensor, "frame 3 height width"]
    holdout: Float[Tensor, "holdout 3 height width"] | None = None
    off_path: Float[Tensor, "frame 3 height width"] | None = None


GenerateFn = Callable[[GenerationRequest], Float[Tensor, "frame 3 height width"] | MethodOutput]


@dataclass(frozen=True)
class Oracle:
    """A method that is shown the ground-truth targets (`request.truth`): an upper bound, not a method.
    The evaluator gives the targets to these alone."""

    generate: GenerateFn

    def __call__(self, request: GenerationRequest) -> Tensor | MethodOutput:
        return self.generate(request)


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method name: `student@t549` -> family "student", timestep 549."""

    name: str
    family: str
    num_steps: int | None = None  # teacher@N, teacher-leap@N
    timestep: int | None = None  # student@tT; None for `student` = DDPNet picks t


@dataclass(frozen=True)
class MethodResources:
    """What builders may load from: the weights folder given by --weights, and the device."""

    weights: Path | None
    device: torch.device
    # The recon-* methods' optimisation; few steps by default, so that an evaluation on the CPU is quick.
    reconstruct: ReconstructConfig = field(
        default_factory=lambda: ReconstructConfig(steps=MethodResources.reconstruct_steps)
    )
    reconstruct_steps: ClassVar[int] = 50  # that default, for `videoscene eval --recon-steps`


Builder = Callable[[MethodSpec, MethodResources], GenerateFn]


@dataclass(frozen=True)
class MethodFamily:
    builder: Builder
    usage: str  # the name pattern shown in errors, e.g. "teacher@N"
    parameter: Literal["steps", "timestep"] | None = None
    parameter_required: bool = False
    needs_weights: bool = True  # without --weights, `videoscene eval` gives it the bundled tiny weights


# ---------------------------------------------------------------------------------------------- builders


def build_nearest(spec: MethodSpec, resources: MethodResources) -> GenerateFn:
    """Each frame is the context view nearer in time (ties, at the middle, go to the first view)."""

    def generate(request: GenerationRequest) -> Tensor:
        return request.context.image[(request.times > 0.5).long()]

    return generate


def _prior_folder(weights: Path | None, spec: MethodSpec) -> Path:
    from videoscene.prior.encoder import WEIGHTS_FILE

    if weights is None:
        raise VideoSceneError(
            f"method {spec.name} needs prior weights: pass --weights DIR (a folder holding "
            f"{WEIGHTS_FILE} or prior/{WEIGHTS_FILE})"
        )
    for folder in (weights, weights / "prior"):
        if (folder / WEIGHTS_FILE).is_file():
            return folder
    raise VideoSceneError(
        f"method {spec.name} needs prior weights: neither {weights / WEIGHTS_FILE} nor "
        f"{weights / 'prior' / WEIGHTS_FILE} exists; "
        "train one with `videoscene train prior`"
    )


class _Prior:
    """The feed-forward prior of a weights folder: its Gaussians for a request's context pair, rendered as
    the coarse video is. The background is the one the prior was trained with (its train_config.json),
    else black."""

    def __init__(self, spec: MethodSpec, resources: MethodResources):
        from videoscene.prior.encoder import GaussianEncoder

        folder = _prior_folder(resources.weights, spec)
        self.device = resources.device
        self.encoder = GaussianEncoder.load(folder).to(self.device).eval()
        background = [0.0, 0.0, 0.0]
        train_config = folder / "train_config.json"
        if train_config.is_file():
            background = read_json_object(train_config, "prior training config").get("background", background)
        self.background = torch.tensor(background, device=self.device, dtype=torch.float32)
        logger.info("%s: prior from %s (%d parameters)", spec.name, folder, self.encoder.parameter_count())

    def _context(self, request: GenerationRequest) -> Views:
        context = request.context.to(self.device)
        return Views(
            context.image[None],
            context.extrinsics[None],
            context.intrinsics[None],
            context.near[None],
            context.far[None],
        )

    def gaussians(self, request: GenerationRequest) -> Gaussians:
        """The prior's Gaussians for the context pair, batched [1, G, ...]."""
        return self.encoder(self._context(request)).gaussians

    def render(self, gaussians: Gaussians, request: GenerationRequest, cameras: Cameras) -> Tensor:
        """Batched `gaussians` at unbatched `cameras` [N, ...], as the coarse video: [N, 3, H, W]."""
        from videoscene.prior.render import render_coarse

        cameras = cameras.to(self.device)
        color = render_coarse(
            gaussians,
            self._context(request),
            Cameras(cameras.extrinsics[None], cameras.intrinsics[None]),
            request.image_shape,
            self.background[None],
        )
        return color[0].clamp(0, 1)


def build_coarse(spec: MethodSpec, resources: MethodResources) -> GenerateFn:
    """The feed-forward prior's Gaussians from the context pair, rendered at every path camera."""
    prior = _Prior(spec, resources)

    def generate(request: GenerationRequest) -> Tensor:
        return prior.render(prior.gaussians(request), request, request.path)

    return generate


def build_prior(spec: MethodSpec, resources: MethodResources) -> GenerateFn:
    """`coarse`, and the same Gaussians rendered at the holdout and the off-path cameras."""
    prior = _Prior(spec, resources)

    def generate(request: GenerationRequest) -> MethodOutput:
        gaussians = prior.gaussians(request)

        def at(cameras: Cameras | None) -> Tensor | None:
            return None if cameras is None else prior.render(gaussians, request, cameras)

        return MethodOutput(at(request.path), at(request.holdout), at(request.off_path))

    return generate


RECON_PREFIX = "recon-"


def build_recon(spec: MethodSpec, resources: MethodResources) -> GenerateFn:
    """recon-<generator>: the generator's frames along the path, 3D Gaussians fitted to them from the
    prior's (confidence-weighted), rendered at the path, the holdout and the off-path cameras. recon-gt:
    fitted to the ground-truth targets at their own cameras, every frame at weight 1 (an `Oracle`)."""
    import math
    from dataclasses import replace

    from videoscene.reconstruct.optimize import confidence_weights, fit_gaussians, render_views

    prior = _Prior(spec, resources)
    inner = spec.family[len(RECON_PREFIX) :]
    generator = None
    if inner != "gt":
        generator = build_method(
            MethodSpec(spec.name[len(RECON_PREFIX) :], inner, spec.num_steps, spec.timestep), resources
        )
    config = resources.reconstruct

    def generate(request: GenerationRequest) -> MethodOutput:
        if generator is None:
            if request.truth is None:
                raise VideoSceneError(
                    f"method {spec.name} needs the ground-truth targets; run it as an Oracle"
                )
            frames, cameras = request.truth.image, request.truth.cameras
            weights = torch.ones(len(frames))
            fit_config = replace(config, confidence_tau=math.inf)
        else:
            output = generator(request)
            frames = output.frames if isinstance(output, MethodOutput) else output
            cameras = request.path
            weights = confidence_weights(cameras.extrinsics, config.confidence_tau)
            fit_config = config
        initial = prior.gaussians(request).select(0)
        with torch.enable_grad():
            fitted = fit_gaussians(
                initial,
                frames.float(),
                cameras,
                weights,
                fit_config,
                prior.background,
                request.seed,
                resources.device,
                progress=False,
            ).gaussians

        def at(cameras: Cameras | None) -> Tensor | None:
            if cameras is None:
                return None
            return render_views(fitted, cameras, request.image_shape, prior.background, config.backend)

        return MethodOutput(at(request.path), at(request.holdout), at(request.off_path))

    return Oracle(generate) if generator is None else generate


def build_with_pipeline(spec: MethodSpec, resources: MethodResources) -> GenerateFn:
    """teacher@N, teacher-leap@N, student, student@tT and student-noleap: `VideoScenePipeline` on the
    request's context views and path, with the family's model, start and step count."""
    if resources.weights is None:
        raise VideoSceneError(
            f"method {spec.name} needs trained weights: pass --weights DIR (a VideoScene weights folder)"
        )
    if not resources.weights.is_dir():
        raise VideoSceneError(
            f"weights folder {resources.weights} does not exist; pass the folder of the trained "
            "VideoScene models"
        )
    pipeline = _cached_pipeline(Path(resources.weights), torch.device(resources.device))
    settings = {
        "teacher": dict(model="teacher", timestep=None, num_steps=spec.num_steps),
        "teacher-leap": dict(model="teacher", timestep="auto", num_steps=spec.num_steps),
        "student": dict(
            model="student", timestep=spec.timestep if spec.timestep is not None else "auto", num_steps=1
        ),
        "student-noleap": dict(model="student-noleap", timestep=None, num_steps=1),
    }[spec.family]

    def generate(request: GenerationRequest) -> Tensor:
        context = request.context
        output = pipeline(
            context.image,
            context.cameras,
            target_cameras=request.path,
            seed=request.seed,
            near=float(context.near.min()),
            far=float(context.far.max()),
            **settings,
        )
        return output.frames

    return generate


@functools.lru_cache(maxsize=2)
def _cached_pipeline(weights: Path, device: torch.device):
    """One pipeline per weights folder and device, shared by the methods that use it (teacher@4, student,
    …)."""
    from videoscene.pipeline import VideoScenePipeline  # the video model's libraries load only when asked for

    return VideoScenePipeline.from_pretrained(weights, device=device)


FAMILIES: dict[str, MethodFamily] = {
    "nearest": MethodFamily(build_nearest, "nearest", needs_weights=False),
    "coarse": MethodFamily(build_coarse, "coarse"),
    "teacher": MethodFamily(build_with_pipeline, "teacher@N", "steps", parameter_required=True),
    "teacher-leap": MethodFamily(build_with_pipeline, "teacher-leap@N", "steps", parameter_required=True),
    "student": MethodFamily(build_with_pipeline, "student | student@tT", "timestep"),
    "student-noleap": MethodFamily(build_with_pipeline, "student-noleap"),
    "prior": MethodFamily(build_prior, "prior"),
    "recon-gt": MethodFamily(build_recon, "recon-gt"),
}
# recon-<generator> for every generator that needs weights: recon-coarse, recon-teacher@N, recon-student, …
FAMILIES |= {
    RECON_PREFIX + name: MethodFamily(
        build_recon,
        RECON_PREFIX + family.usage.replace(" | ", " | " + RECON_PREFIX),
        family.parameter,
        family.parameter_required,
    )
    for name, family in FAMILIES.items()
    if name not in ("nearest", "prior", "recon-gt")
}


def register_family(name: str, family: MethodFamily) -> None:
    """Add or replace a method family (names: lower-case letters, digits and '-')."""
    if not re.fullmatch(r"[a-z][a-z0-9-]*", name):
        raise VideoSceneError(f"method family name {name!r} must be lower-case letters, digits and '-'")
    FAMILIES[name] = family


# ----------------------------------------------------------------------------------------------- parsing

_NAME = re.compile(r"(?P<family>[a-z][a-z0-9-]*)(?:@(?P<parameter>[^@]+))?")


def valid_names() -> str:
    return (
        ", ".join(family.usage for family in FAMILIES.values())
        + f" (N = steps >= 1, T = timestep 0-{NUM_TRAIN_TIMESTEPS - 1})"
    )


def parse_method(name: str) -> MethodSpec:
    """A method name -> its spec; anything else is one VideoSceneError listing the valid names."""
    match = _NAME.fullmatch(name.strip())
    family = FAMILIES.get(match["family"]) if match else None
    if family is None:
        raise VideoSceneError(f"unknown method {name!r}; valid methods: {valid_names()}")
    parameter = match["parameter"]
    if parameter is None:
        if family.parameter_required:
            raise VideoSceneError(
                f"method {name!r} needs its parameter: {family.usage}, e.g. {match['family']}@4"
            )
        return MethodSpec(name, match["family"])
    if family.parameter == "steps" and re.fullmatch(r"[0-9]+", parameter) and int(parameter) >= 1:
        return MethodSpec(name, match["family"], num_steps=int(parameter))
    timestep = re.fullmatch(r"t([0-9]+)", parameter)
    if family.parameter == "timestep" and timestep and int(timestep[1]) < NUM_TRAIN_TIMESTEPS:
        return MethodSpec(name, match["family"], timestep=int(timestep[1]))
    raise VideoSceneError(
        f"method {name!r} has a bad parameter {parameter!r}; valid methods: {valid_names()}"
    )


def parse_methods(text: str) -> list[MethodSpec]:
    """A comma-separated list of method names, each once."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise VideoSceneError(
            f"no methods given; pass e.g. --methods nearest,coarse (valid methods: {valid_names()})"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise VideoSceneError(f"methods {repeated} are listed more than once")
    return [parse_method(name) for name in names]


def build_method(spec: MethodSpec, resources: MethodResources) -> GenerateFn:
    return FAMILIES[spec.family].builder(spec, resources)
