"""LPIPS for evaluation: user-supplied weights by path, skipped without them; distance maths on random
weights."""

import pytest
import torch
from safetensors.torch import save_file

from videoscene.errors import VideoSceneError
from videoscene.metrics.lpips import LPIPS, load_lpips

# torchvision's vgg16().features: (index of each 3x3 convolution, in and out channels).
_VGG16_CONVOLUTIONS = [
    (0, 3, 64),
    (2, 64, 64),
    (5, 64, 128),
    (7, 128, 128),
    (10, 128, 256),
    (12, 256, 256),
    (14, 256, 256),
    (17, 256, 512),
    (19, 512, 512),
    (21, 512, 512),
    (24, 512, 512),
    (26, 512, 512),
    (28, 512, 512),
]
_LPIPS_WIDTHS = [64, 128, 256, 512, 512]


def random_weights(seed: int = 0) -> dict[str, torch.Tensor]:
    """He-initialised VGG16 convolutions and non-negative heads (LPIPS' trained heads are non-negative)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for index, cin, cout in _VGG16_CONVOLUTIONS:
        state[f"features.{index}.weight"] = (
            torch.randn(cout, cin, 3, 3, generator=generator) * (2 / (9 * cin)) ** 0.5
        )
        state[f"features.{index}.bias"] = 0.01 * torch.randn(cout, generator=generator)
    for k, width in enumerate(_LPIPS_WIDTHS):
        state[f"lin{k}.model.1.weight"] = torch.rand(1, width, 1, 1, generator=generator)
    return state


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lpips") / "vgg_lpips.safetensors"
    save_file(random_weights(), str(path))
    return path


def test_without_weights_lpips_is_skipped():
    assert load_lpips(None) is None
    assert load_lpips([]) is None


def test_missing_or_wrong_files_are_one_line_errors(tmp_path):
    with pytest.raises(VideoSceneError, match="does not exist"):
        load_lpips([tmp_path / "absent.safetensors"])
    partial = {k: v for k, v in random_weights().items() if not k.startswith("lin4")}
    save_file(partial, str(tmp_path / "partial.safetensors"))
    with pytest.raises(VideoSceneError, match="lack 1 tensors"):
        load_lpips([tmp_path / "partial.safetensors"])


def test_distance_properties_on_random_weights(weights_file):
    lpips = load_lpips([weights_file])
    assert isinstance(lpips, LPIPS)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 32, 48, generator=generator)
    slightly = (x + 0.02 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    other = torch.rand(3, 3, 32, 48, generator=generator)
    assert lpips(x, x).shape == (3,)
    torch.testing.assert_close(lpips(x, x), torch.zeros(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(lpips(x, other), lpips(other, x))
    assert (lpips(x, slightly) > 0).all() and (lpips(x, slightly) < lpips(x, other)).all()
    # Activations are unit vectors per pixel, so each depth adds at most 4 x (sum of its head's weights).
    bound = sum(4 * lin.weight.sum() for lin in lpips.lins)
    assert (lpips(x, other) <= bound).all()
    # Batched and one-by-one agree.
    torch.testing.assert_close(lpips(x[1:2], other[1:2])[0], lpips(x, other)[1])


def test_pth_and_safetensors_files_give_the_same_network(tmp_path, weights_file):
    state = random_weights()
    vgg = {k: v for k, v in state.items() if k.startswith("features.")}
    heads = {k: v for k, v in state.items() if k.startswith("lin")}
    torch.save(vgg, tmp_path / "vgg16.pth")
    save_file(heads, str(tmp_path / "heads.safetensors"))
    x, y = torch.rand(2, 3, 24, 24), torch.rand(2, 3, 24, 24)
    two_files = load_lpips([tmp_path / "vgg16.pth", tmp_path / "heads.safetensors"])
    torch.testing.assert_close(two_files(x, y), load_lpips([weights_file])(x, y))
