"""Fixtures shared by several test files. The heavy imports (models, diffusers) happen inside the fixtures,
so a run of a few light test files does not pay for them."""

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """Torch on one thread for the test, restored after it. Tiny models are dominated by small ops, for which
    one thread beats two on the shared test machine. A module opts in with
    `pytestmark = pytest.mark.usefixtures("one_thread")` (module-scoped fixtures run outside it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def shared_data() -> Path:
    """The read-only real scenes beside the checkout; tests using them skip cleanly when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    """A pipeline weights folder of tiny random components (weights_factory.make_tiny_weights), one per
    module."""
    from weights_factory import make_tiny_weights

    return make_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def video_backbone():
    """The tiny video preset at 9×32×48 (weights_factory.SMALL_VIDEO), seeded, in eval mode; one per
    module."""
    from weights_factory import SMALL_VIDEO

    from videoscene.video.models import VideoBackbone

    torch.manual_seed(0)
    return VideoBackbone.build(SMALL_VIDEO).eval()
