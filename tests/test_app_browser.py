"""End to end: `videoscene app` driven in headless Chromium (Playwright) — upload two photos, press Generate,
wait until the generated video plays, take a screenshot; click an example, generate, and find the video, the
3D Gaussians drawn in the viewer and the five downloads; and a refused pair shows its message.

Needs the `playwright` Python package and a system Chromium (Debian: `apt-get install chromium`; never
`playwright install`, which downloads a browser). Skips cleanly without either. The browser is found at
$VIDEOSCENE_CHROMIUM, else `chromium` / `chromium-browser` on PATH.

VIDEOSCENE_SAVE_SCREENSHOTS=1 writes the screenshots to docs/images/app_result.png, app_example.png and
app_error.png; VIDEOSCENE_APP_WEIGHTS=DIR serves those weights instead of tiny random ones (for screenshots
worth keeping).
"""

import io
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("gradio")
sync_api = pytest.importorskip("playwright.sync_api")

from weights_factory import make_tiny_weights

from videoscene.app import DOWNLOADS, AppConfig, VideoSceneApp
from videoscene.data.synthetic import render_scene
from videoscene.pipeline import VideoScenePipeline

REPO_ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO_ROOT / "docs" / "images"
UNPOSED_PAIR = REPO_ROOT.parent / "shared" / "data" / "unposed_pairs"
# Flags that work in containers: no sandbox (runs as root), no GPU, and nothing that reaches the network.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 120_000


def chromium_path() -> str | None:
    candidates = [
        os.environ.get("VIDEOSCENE_CHROMIUM"),
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ]
    return next((path for path in candidates if path and os.access(path, os.X_OK)), None)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """The app on a free localhost port, serving tiny random weights (or $VIDEOSCENE_APP_WEIGHTS)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    weights = os.environ.get("VIDEOSCENE_APP_WEIGHTS") or make_tiny_weights(
        tmp_path_factory.mktemp("weights")
    )
    app = VideoSceneApp(
        VideoScenePipeline.from_pretrained(weights), AppConfig(output_root=tmp_path_factory.mktemp("runs"))
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    blocks = app.launch("127.0.0.1", port, prevent_thread_lock=True)
    yield f"http://127.0.0.1:{port}/"
    blocks.close()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def page():
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set VIDEOSCENE_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        try:  # Playwright gives the browser a fresh temporary profile (user-data-dir) of its own
            browser = playwright.chromium.launch(
                executable_path=executable, headless=True, args=CHROMIUM_FLAGS
            )
        except sync_api.Error as error:
            pytest.skip(
                f"Chromium at {executable} does not start under Playwright: {str(error).splitlines()[0]}"
            )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        yield page
        browser.close()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """A real unposed pair when ../shared/data is there (nicer screenshots), else a synthetic room pair."""
    if UNPOSED_PAIR.is_dir():
        return [UNPOSED_PAIR / "livingroom_1.png", UNPOSED_PAIR / "livingroom_2.png"]
    folder = tmp_path_factory.mktemp("photos")
    frames, _, _, _ = render_scene(5, 0, 2, 192, 288)
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"view_{index}.png")
    return [folder / "view_0.png", folder / "view_1.png"]


def screenshot_path(name: str, tmp_path: Path) -> Path:
    return SCREENSHOTS / name if os.environ.get("VIDEOSCENE_SAVE_SCREENSHOTS") == "1" else tmp_path / name


def upload(page, first: Path, second: Path) -> None:
    page.locator("#image-a input[type=file]").set_input_files(str(first))
    page.locator("#image-b input[type=file]").set_input_files(str(second))
    page.locator("#image-a img").wait_for()
    page.locator("#image-b img").wait_for()


def splats_drawn(page, seconds: float = 30) -> bool:
    """Whether the splat viewer (WebGL) has drawn the Gaussians: its canvas is no longer one flat colour."""
    canvas = page.locator("#gaussians canvas")
    canvas.wait_for()
    for _ in range(int(seconds)):
        pixels = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB")).astype(float)
        if pixels.std(axis=(0, 1)).max() > 2.0:
            return True
        page.wait_for_timeout(1000)
    return False


def download_names(page) -> str:
    """The download list's text; Gradio shows each file's stem and suffix on lines of their own."""
    return page.locator("#downloads").inner_text().replace("\n.", ".")


def test_upload_generate_and_watch_the_video(page, app_url, photos, tmp_path):
    page.goto(app_url, wait_until="networkidle")
    upload(page, *photos)
    page.locator("#generate").click()
    # The generated video has loaded and decodes in the browser (H.264 mp4), and the summary is filled in.
    page.wait_for_function(
        "() => { const v = document.querySelector('#video video'); return v && v.readyState >= 2 && "
        "v.videoWidth > 0 }"
    )
    page.locator("#coarse-video video").wait_for()
    summary = page.locator("#summary").inner_text()
    assert "Timestep" in summary and "inlier matches" in summary and "vae_decode" in summary
    names = download_names(page)
    assert "video.mp4" in names and "gaussians.ply" in names
    splats_drawn(page, seconds=5)  # for the screenshot; this pair's Gaussians may lie outside the first view
    shot = screenshot_path("app_result.png", tmp_path)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_an_example_gives_the_video_the_3d_view_and_the_downloads(page, app_url, tmp_path):
    page.goto(app_url, wait_until="networkidle")
    page.locator("#examples").get_by_text("Synthetic room, cameras given").click()
    page.locator("#image-a img").wait_for()
    page.locator("#image-b img").wait_for()
    assert "cams.json" in page.locator("#cameras").inner_text()
    with page.expect_response(lambda response: response.url.endswith("gaussians.ply")) as ply:
        page.locator("#generate").click()
        page.wait_for_function(
            "() => { const v = document.querySelector('#video video'); return v && v.readyState >= 2 && "
            "v.videoWidth > 0 }"
        )
    assert ply.value.ok  # (its body is gone: the viewer cancels the first read once it has the header)
    page.locator("#coarse-video video").wait_for()
    assert "Camera path" in page.locator("#summary").inner_text()
    names = download_names(page)
    assert all(name in names for name in DOWNLOADS), names
    assert splats_drawn(page), "the 3D view stayed one flat colour"
    shot = screenshot_path("app_example.png", tmp_path)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_a_refused_pair_shows_its_message(page, app_url, photos, tmp_path):
    page.goto(app_url, wait_until="networkidle")
    upload(page, photos[0], photos[0])
    page.locator("#generate").click()
    message = page.get_by_text("the two images are the same picture")
    message.first.wait_for()
    shot = screenshot_path("app_error.png", tmp_path)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
