"""VideoScenePipeline and `videoscene generate`/`demo` on tiny randomly initialised components."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from shape_checks import unchecked
from weights_factory import FRAMES, HEIGHT, WIDTH

from videoscene.cli import main
from videoscene.errors import VideoSceneError
from videoscene.gaussians.ply import load_ply
from videoscene.geometry.image_ops import gaussian_blur, render_skip
from videoscene.io_utils import OUTPUT_MARKER
from videoscene.pipeline import VideoScenePipeline
from videoscene.types import Cameras

pytestmark = pytest.mark.usefixtures("one_thread")


def two_views():
    from videoscene.data.synthetic import render_scene

    frames, extrinsics, intrinsics, _ = render_scene(5, 0, 9, 48, 72)
    images = torch.as_tensor(frames[[0, 8]]).permute(0, 3, 1, 2).float() / 255
    cameras = Cameras(
        torch.as_tensor(extrinsics[[0, 8]]).float(), torch.as_tensor(intrinsics[[0, 8]]).float()
    )
    return images, cameras


def test_pipeline_one_step_outputs_and_determinism(tiny_weights):
    pipe = VideoScenePipeline.from_pretrained(tiny_weights)
    images, cameras = two_views()
    output = pipe(images, cameras, seed=3)
    assert (
        output.frames.shape == (FRAMES, 3, HEIGHT, WIDTH)
        and output.coarse_frames.shape == output.frames.shape
    )
    assert output.timestep in (199, 399, 599)  # DDPNet's argmax over its candidates
    assert len(output.gaussians) == 2 * HEIGHT * WIDTH
    assert set(output.timings) == {
        "prior",
        "render",
        "vae_encode",
        "policy",
        "denoise",
        "vae_decode",
        "total",
    }
    torch.testing.assert_close(output.cameras.extrinsics[0], cameras.extrinsics[0])
    torch.testing.assert_close(output.cameras.extrinsics[-1], cameras.extrinsics[1])
    again = pipe(images, cameras, seed=3)
    torch.testing.assert_close(again.frames, output.frames, rtol=0, atol=0)
    other = pipe(images, cameras, seed=4)
    assert not torch.equal(other.frames, output.frames)
    fixed = pipe(images, cameras, timestep=549, seed=3)
    assert fixed.timestep == 549


def test_pipeline_teacher_paths(tiny_weights):
    pipe = VideoScenePipeline.from_pretrained(tiny_weights)
    images, cameras = two_views()
    from_noise = pipe(images, cameras, model="teacher", timestep=None, num_steps=2, seed=0)
    assert from_noise.timestep is None and from_noise.method == "teacher@2"
    leap = pipe(images, cameras, model="teacher", timestep=299, num_steps=2, seed=0)
    assert leap.method == "teacher-leap@2" and leap.timestep == 299
    with pytest.raises(VideoSceneError, match="exactly one step"):
        pipe(images, cameras, num_steps=4)


def test_the_render_skip_passes_an_unchanged_render_through_exactly(tiny_weights, monkeypatch):
    """With `render_skip` the video is render + D(x̂₀) − D(x₀ʳ): a student that returns x₀ʳ gives the render
    itself (not its VAE round trip); a student that changes x₀ʳ changes the video by the decoded change."""
    from dataclasses import replace

    pipe = VideoScenePipeline.from_pretrained(tiny_weights)
    images, cameras = two_views()
    monkeypatch.setattr(type(pipe.distilled), "generate", lambda self, render, condition, *_, **__: render)
    plain = pipe(images, cameras, timestep=199)
    assert (plain.frames - plain.coarse_frames).abs().mean() > 1e-3  # the VAE's round trip
    pipe.config = replace(pipe.config, render_skip=True)
    skipped = pipe(images, cameras, timestep=199)
    torch.testing.assert_close(skipped.frames, skipped.coarse_frames, rtol=0, atol=1e-6)
    seen = {}

    def shifted(self, render, condition, *_, **__):
        seen["render"] = render
        return render + 0.5

    monkeypatch.setattr(type(pipe.distilled), "generate", shifted)
    changed = pipe(images, cameras, timestep=199)
    backbone = pipe._backbone("student", 1)
    change = backbone.decode_latents(seen["render"] + 0.5) - backbone.decode_latents(seen["render"])
    expected = (changed.coarse_frames + change[0]).clamp(0, 1)
    torch.testing.assert_close(changed.frames, expected, rtol=0, atol=1e-5)
    assert (changed.frames - changed.coarse_frames).abs().mean() > 1e-3

    # render_skip_sigma: the change low-passed where the render has content, whole in its holes
    pipe.config = replace(pipe.config, render_skip_sigma=1.5)
    smoothed = pipe(images, cameras, timestep=199)
    assert (smoothed.frames - changed.frames).abs().max() > 1e-3
    opacity = torch.ones(1, FRAMES, HEIGHT, WIDTH)
    opacity[..., : HEIGHT // 2, :] = 0  # a hole: its change stays whole
    grey = torch.full_like(change, 0.5)  # no clamping: the output minus the render is the filtered change
    blended = render_skip(grey, grey + change / 4, grey, opacity, 1.5) - grey
    torch.testing.assert_close(blended[..., : HEIGHT // 2, :], change[..., : HEIGHT // 2, :] / 4)
    torch.testing.assert_close(blended[..., -1:, :], gaussian_blur(change / 4, 1.5)[..., -1:, :])
    with pytest.raises(VideoSceneError, match="set render_skip: true"):
        replace(pipe.config, render_skip=False)
    with pytest.raises(VideoSceneError, match="render_skip_sigma=-1.0 must be ≥ 0"):
        replace(pipe.config, render_skip_sigma=-1.0)


def test_pipeline_bad_inputs(tiny_weights):
    pipe = VideoScenePipeline.from_pretrained(tiny_weights)
    images, cameras = two_views()
    with unchecked(), pytest.raises(VideoSceneError, match="exactly two"):
        pipe(images[:1], cameras)
    with pytest.raises(VideoSceneError, match="same position"):
        pipe(images, Cameras(cameras.extrinsics[[0, 0]], cameras.intrinsics))
    bad = cameras.extrinsics.clone()
    bad[0, :3, :3] *= 2
    with pytest.raises(VideoSceneError, match="rigid"):
        pipe(images, Cameras(bad, cameras.intrinsics))
    with pytest.raises(VideoSceneError, match="8k\\+1"):
        pipe(images, cameras, num_frames=12)
    with pytest.raises(VideoSceneError, match="timestep"):
        pipe(images, cameras, timestep=1000)
    with pytest.raises(VideoSceneError, match="distilled_noleap"):
        pipe(images, cameras, model="student-noleap")
    with unchecked(), pytest.raises(VideoSceneError, match="resize mode"):
        pipe(images, cameras, resize="squash")


def test_stretched_inputs_keep_their_intrinsics_and_cropped_ones_follow_the_crop(tiny_weights):
    """The authors stretch RealEstate10K's 640x360 frames to 720x480: normalised intrinsics stay valid under
    a stretch. Here 1:2 images reach the 2:3 model by a stretch (intrinsics as given, targets included) or a
    centre crop (fx/W grows by 96/72)."""
    from videoscene.data.synthetic import render_scene

    pipe = VideoScenePipeline.from_pretrained(tiny_weights)
    images, cameras = two_views()
    wide = torch.nn.functional.interpolate(images, size=(48, 96), mode="bilinear", align_corners=False)
    _, extrinsics, intrinsics, _ = render_scene(5, 0, 9, 48, 72)
    targets = Cameras(torch.as_tensor(extrinsics).float(), torch.as_tensor(intrinsics).float())
    stretched = pipe(wide, cameras, target_cameras=targets, timestep=399, resize="stretch", vae_tiling=False)
    torch.testing.assert_close(stretched.cameras.intrinsics, targets.intrinsics, rtol=0, atol=0)
    cropped = pipe(wide, cameras, timestep=399)
    torch.testing.assert_close(cropped.cameras.intrinsics[0, 0, 0], cameras.intrinsics[0, 0, 0] * 96 / 72)
    torch.testing.assert_close(cropped.cameras.intrinsics[0, 1, 1], cameras.intrinsics[0, 1, 1])
    assert stretched.frames.shape == cropped.frames.shape == (FRAMES, 3, HEIGHT, WIDTH)


@pytest.mark.parametrize("with_targets", [False, True])
def test_pipeline_checks_the_cameras_rigidity_once_at_input(tiny_weights, monkeypatch, with_targets):
    """The two cameras (and the target cameras) are checked in step 1; the camera path and the prior trust
    it."""
    import videoscene.geometry.trajectory
    import videoscene.pipeline
    import videoscene.prior.encoder

    checked = []

    def recording(module):
        original = module.check_rigid

        def check_rigid(extrinsics, *args, **kwargs):
            checked.append((module.__name__, tuple(extrinsics.shape)))
            return original(extrinsics, *args, **kwargs)

        return check_rigid

    for module in (videoscene.pipeline, videoscene.geometry.trajectory, videoscene.prior.encoder):
        monkeypatch.setattr(module, "check_rigid", recording(module))
    pipe = VideoScenePipeline.from_pretrained(tiny_weights)
    images, cameras = two_views()
    targets = None
    if with_targets:
        from videoscene.data.synthetic import render_scene

        _, extrinsics, intrinsics, _ = render_scene(5, 0, 9, 48, 72)
        targets = Cameras(torch.as_tensor(extrinsics).float(), torch.as_tensor(intrinsics).float())
    pipe(images, cameras, target_cameras=targets, timestep=399)
    expected = [("videoscene.pipeline", (2, 4, 4))] + (
        [("videoscene.pipeline", (9, 4, 4))] if with_targets else []
    )
    assert checked == expected


def test_missing_weights_folder_is_one_line(tmp_path):
    with pytest.raises(VideoSceneError, match="not a VideoScene weights folder"):
        VideoScenePipeline.from_pretrained(tmp_path)


def write_inputs(folder: Path, images, cameras, **extra):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"view_{i}.png"
        Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
        paths.append(str(path))
    cams = {
        "cameras": [
            {"extrinsics": e.tolist(), "intrinsics": k.tolist()}
            for e, k in zip(cameras.extrinsics, cameras.intrinsics)
        ],
        **extra,
    }
    (folder / "cams.json").write_text(json.dumps(cams))
    return paths, str(folder / "cams.json")


def test_generate_cli_writes_every_output(tiny_weights, tmp_path):
    images, cameras = two_views()
    paths, cams = write_inputs(tmp_path / "in", images, cameras)
    out = tmp_path / "out"
    assert (
        main(
            [
                "generate",
                "--images",
                *paths,
                "--cameras",
                cams,
                "--out",
                str(out),
                "--weights",
                str(tiny_weights),
                "--seed",
                "1",
            ]
        )
        == 0
    )
    assert {p.name for p in out.iterdir()} == {
        "video.mp4",
        "coarse.mp4",
        "frames",
        "gaussians.ply",
        "cameras.json",
        "comparison.png",
        "report.json",
        OUTPUT_MARKER,
    }
    assert len(list((out / "frames").iterdir())) == FRAMES
    report = json.loads((out / "report.json").read_text())
    assert (
        report["timestep"] in (199, 399, 599)
        and report["num_frames"] == FRAMES
        and "torch" in report["versions"]
    )
    import imageio.v3 as iio

    assert iio.imread(out / "video.mp4", plugin="pyav").shape == (FRAMES, HEIGHT, WIDTH, 3)
    assert len(load_ply(out / "gaussians.ply")) == 2 * HEIGHT * WIDTH


def test_generate_cli_accepts_opengl_cameras_in_pixels(tiny_weights, tmp_path):
    images, cameras = two_views()
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))
    pixel_k = cameras.intrinsics * torch.tensor([72.0, 48.0, 1.0])[:, None]
    paths, cams = write_inputs(
        tmp_path / "in",
        images,
        Cameras(cameras.extrinsics @ flip, pixel_k),
        convention="opengl",
        intrinsics_unit="pixels",
    )
    out = tmp_path / "out"
    assert (
        main(
            [
                "generate",
                "--images",
                *paths,
                "--cameras",
                cams,
                "--out",
                str(out),
                "--weights",
                str(tiny_weights),
                "--timestep",
                "399",
                "--resize",
                "stretch",
                "--untiled-vae",
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    extrinsics = torch.tensor(report["cameras"]["extrinsics"])
    torch.testing.assert_close(extrinsics[0], cameras.extrinsics[0], atol=1e-5, rtol=0)
    assert report["arguments"]["resize"] == "stretch" and report["arguments"]["untiled_vae"] is True


@pytest.mark.parametrize(
    "case, message",
    [
        ("one_image", "exactly two images"),
        ("sizes", "differ in size"),
        ("unreadable", "cannot be read"),
        (
            "no_cameras_same_image",
            "same picture",
        ),  # without --cameras they are estimated; one image twice is refused
        ("camera_shape", "4x4"),
        ("one_camera", "exactly one per image"),
        ("no_weights", "not a VideoScene weights folder"),
        ("cuda", "CUDA"),
    ],
)
def test_generate_bad_inputs_exit_non_zero_without_output(tiny_weights, tmp_path, capsys, case, message):
    images, cameras = two_views()
    paths, cams = write_inputs(tmp_path / "in", images, cameras)
    weights = str(tiny_weights)
    extra: list[str] = []
    if case == "one_image":
        paths = paths[:1]
    elif case == "no_cameras_same_image":
        paths = [paths[0], paths[0]]
    elif case == "sizes":
        Image.new("RGB", (40, 40)).save(paths[1])
    elif case == "unreadable":
        Path(paths[1]).write_bytes(b"not an image")
    elif case == "camera_shape":
        Path(cams).write_text(
            json.dumps(
                {
                    "cameras": [{"extrinsics": [[1, 0, 0]], "intrinsics": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}]
                    * 2
                }
            )
        )
    elif case == "one_camera":
        raw = json.loads(Path(cams).read_text())
        Path(cams).write_text(json.dumps({"cameras": raw["cameras"][:1]}))
    elif case == "no_weights":
        weights = str(tmp_path / "nothing")
    elif case == "cuda":
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        extra = ["--device", "cuda"]
    arguments = ["generate", "--images", *paths, "--out", str(tmp_path / "out"), "--weights", weights, *extra]
    if case != "no_cameras_same_image":
        arguments += ["--cameras", cams]
    assert main(arguments) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


@pytest.mark.parametrize("frames", [9, 17, 25, 49])
def test_every_offered_frame_count_runs_with_ddpnet(frames):
    """The app's Frames choices and `--help`'s examples, with the default timestep: DDPNet (trained on 17
    frames) reads the render resampled along its latent frames."""
    from videoscene.app import FRAME_CHOICES
    from videoscene.demo import DEMO_ASSETS
    from videoscene.generate import load_cameras_file, load_image
    from videoscene.pipeline import BUNDLED_WEIGHTS

    assert frames in FRAME_CHOICES
    pipeline = VideoScenePipeline.from_pretrained(BUNDLED_WEIGHTS)
    images = torch.stack([load_image(DEMO_ASSETS / "view_0.png"), load_image(DEMO_ASSETS / "view_1.png")])
    cameras, _, near, far = load_cameras_file(DEMO_ASSETS / "cams.json", tuple(images.shape[-2:]))
    output = pipeline(images, cameras, num_frames=frames, timestep="auto", near=near, far=far)
    assert output.frames.shape[0] == frames and output.timestep in pipeline.distilled.ddpnet.config.candidates


def test_ddpnet_resampling_keeps_the_trained_length_unchanged_and_the_ends_exact():
    from videoscene.policy.ddpnet import DDPNet, DDPNetConfig

    net = DDPNet(DDPNetConfig(latent_frames=5, latent_channels=2, candidates=(100, 500)))
    same = torch.randn(1, 5, 2, 4, 6)
    assert net._to_trained_length(same) is same
    longer = torch.randn(1, 13, 2, 4, 6)
    resampled = net._to_trained_length(longer)
    assert resampled.shape == (1, 5, 2, 4, 6)
    torch.testing.assert_close(resampled[:, 0], longer[:, 0])
    torch.testing.assert_close(resampled[:, -1], longer[:, -1])
    torch.testing.assert_close(resampled[:, 2], longer[:, 6])  # the middle frame lands on the middle frame


def test_the_api_takes_pil_images_without_cameras_and_saves_what_the_cli_writes(tiny_weights, tmp_path):
    from videoscene.data.synthetic import render_scene

    frames, _, _, _ = render_scene(5, 0, 2, 192, 288)  # enough texture at this size to estimate the pose
    pil = [Image.fromarray(frame) for frame in frames]
    pipe = VideoScenePipeline.from_pretrained(tiny_weights).to("cpu")
    output = pipe(images=pil, seed=1)  # cameras estimated from the pair
    assert output.frames.shape == (FRAMES, 3, HEIGHT, WIDTH) and len(output.images) == FRAMES
    assert output.images[0].size == (WIDTH, HEIGHT) and output.images[0].mode == "RGB"
    # The same pair as arrays and as a tensor gives the same video.
    as_arrays = pipe(images=[np.asarray(image) for image in pil], seed=1)
    torch.testing.assert_close(as_arrays.frames, output.frames)
    out = output.save(tmp_path / "out")
    assert {p.name for p in out.iterdir()} >= {"video.mp4", "gaussians.ply", "cameras.json", "report.json"}
    cameras = json.loads((out / "cameras.json").read_text())
    assert len(cameras) == FRAMES and cameras[0]["img_name"] == "frames/000.png"
    with unchecked(), pytest.raises(VideoSceneError, match="an image must be"):
        pipe(images=[pil[0], 3])


def test_a_y_up_export_turns_the_world_half_about_x(tiny_weights, tmp_path):
    pipe = VideoScenePipeline.from_pretrained(tiny_weights)
    images, cameras = two_views()
    output = pipe(images, cameras, seed=1)
    plain, y_up = output.save(tmp_path / "plain"), output.save(tmp_path / "y_up", y_up=True)
    a, b = load_ply(plain / "gaussians.ply"), load_ply(y_up / "gaussians.ply")
    flip = torch.tensor([1.0, -1.0, -1.0])
    torch.testing.assert_close(b.means, a.means * flip)
    before, after = (json.loads((folder / "cameras.json").read_text())[0] for folder in (plain, y_up))
    torch.testing.assert_close(
        torch.tensor(after["rotation"]), torch.tensor(before["rotation"]) * flip[:, None], atol=1e-6, rtol=0
    )
    assert json.loads((y_up / "report.json").read_text())["world_frame"].startswith("y-up")
