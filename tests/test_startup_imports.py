"""What each command imports before it works (issue 14; timings: benchmarks/bench_startup.py). Each check
runs in a fresh interpreter, since this one has imported everything already.

torch._dynamo is not checked: diffusers imports it with any of its models (diffusers.utils.torch_utils)."""

import subprocess
import sys


def modules_after(code: str) -> set[str]:
    """The modules loaded once `code` has run in a new interpreter."""
    report = "import sys; print(*sys.modules, sep='\\n', file=sys.stderr)"
    result = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"], capture_output=True, text=True, check=True
    )
    return set(result.stderr.split())


def test_help_starts_without_torch():
    loaded = modules_after("from videoscene.cli import main\nassert main(['--help']) == 0")
    assert "videoscene.cli" in loaded and not {"torch", "numpy"} & loaded


def test_generating_from_given_cameras_loads_no_opencv_gradio_or_matplotlib():
    """OpenCV is for unposed input, Gradio for the app, matplotlib for comparison.png after generating."""
    loaded = modules_after("import videoscene.demo, videoscene.generate, videoscene.pipeline")
    assert "diffusers" in loaded and not {"cv2", "gradio", "matplotlib"} & loaded
