"""The prior's multi-view backbone (prior/backbone.py): 1/4-resolution features, views that really attend to
each other (and only within their scene), view-permutation equivariance, windows and their shift mask,
gradients."""

import pytest
import torch
from weights_factory import HEIGHT, WIDTH

from videoscene.prior.backbone import (
    CNNEncoder,
    MultiViewBackbone,
    shifted_window_mask,
    sine_position_encoding,
    window_merge,
    window_partition,
)
from videoscene.prior.config import TINY

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def backbone() -> MultiViewBackbone:
    torch.manual_seed(0)
    return MultiViewBackbone(TINY).eval()


def features(backbone: MultiViewBackbone, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return backbone(images)


def test_features_are_d_feature_wide_at_a_quarter_of_the_resolution(backbone):
    images = torch.rand(2, 3, 3, HEIGHT, WIDTH)
    transformer, cnn = features(backbone, images)
    assert transformer.shape == cnn.shape == (2, 3, TINY.d_feature, HEIGHT // 4, WIDTH // 4)
    assert torch.isfinite(transformer).all() and torch.isfinite(cnn).all()
    # The CNN alone, on the ImageNet-normalised views one at a time, gives the second output.
    normalised = (images - backbone.mean) / backbone.std
    with torch.no_grad():
        torch.testing.assert_close(cnn[1, 2], backbone.backbone(normalised[1, 2:3])[0], atol=1e-5, rtol=1e-5)
    assert CNNEncoder(TINY)(torch.rand(1, 3, 64, 40)).shape == (1, TINY.d_feature, 16, 10)


def test_changing_view_1_changes_view_0_through_the_transformer_only(backbone):
    images = torch.rand(1, 2, 3, HEIGHT, WIDTH)
    edited = images.clone()
    edited[:, 1] = torch.rand(3, HEIGHT, WIDTH)
    (transformer, cnn), (transformer_edited, cnn_edited) = (
        features(backbone, images),
        features(backbone, edited),
    )
    torch.testing.assert_close(cnn_edited[:, 0], cnn[:, 0])  # the CNN sees each view alone
    assert not torch.allclose(cnn_edited[:, 1], cnn[:, 1])
    # Cross-view attention: view 0's features depend on view 1's content, at every position.
    change = (transformer_edited[:, 0] - transformer[:, 0]).abs().amax(dim=1)  # [1, h/4, w/4]
    assert (change > 1e-4).all(), change.min()


def test_batch_elements_stay_separate(backbone):
    """Views are flattened batch-major; attention must not leak from one scene to another."""
    images = torch.rand(2, 2, 3, HEIGHT, WIDTH)
    edited = images.clone()
    edited[1] = torch.rand(2, 3, HEIGHT, WIDTH)
    (transformer, _), (transformer_edited, _) = features(backbone, images), features(backbone, edited)
    torch.testing.assert_close(transformer_edited[0], transformer[0], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(transformer_edited[1], transformer[1])


@pytest.mark.parametrize("order", [[1, 0], [2, 0, 1], [1, 2, 0, 3]])
def test_permuting_the_views_permutes_the_features(backbone, order):
    """Each view attends to all others with one set of weights, so the views have no order."""
    images = torch.rand(1, len(order), 3, HEIGHT, WIDTH)
    transformer, cnn = features(backbone, images)
    transformer_permuted, cnn_permuted = features(backbone, images[:, order])
    torch.testing.assert_close(transformer_permuted, transformer[:, order], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cnn_permuted, cnn[:, order])


def test_gradients_reach_every_parameter_and_the_images():
    torch.manual_seed(0)
    model = MultiViewBackbone(TINY).train()
    images = torch.rand(1, 2, 3, HEIGHT, WIDTH, requires_grad=True)
    transformer, _ = model(images)
    generator = torch.Generator().manual_seed(1)
    (transformer * torch.randn(transformer.shape, generator=generator)).sum().backward()
    missing = [
        name
        for name, p in model.named_parameters()
        if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0
    ]
    assert not missing, missing
    assert (
        images.grad is not None and images.grad[:, 1].abs().sum() > 0
    )  # view 1's pixels shape view 0's (and its own) features


def test_window_partition_and_merge_are_inverse():
    x = torch.randn(3, 8, 12, 5)
    windows = window_partition(x, 2)
    assert windows.shape == (3, 4, 4 * 6, 5)
    torch.testing.assert_close(windows[:, 1], x[:, :4, 6:].reshape(3, 24, 5))  # window 1 = top-right quarter
    assert torch.equal(window_merge(windows, 2, 8, 12), x)


def test_shifted_window_mask_keeps_regions_apart():
    """After rolling by −shift, the last window row/column mixes tokens from the other side of the map."""
    scores = shifted_window_mask(8, 8, 2)
    assert scores.shape == (4, 16, 16) and set(scores.unique().tolist()) == {0.0, -100.0}
    mask = scores == 0  # may attend
    assert torch.equal(mask, mask.transpose(1, 2)) and mask.diagonal(dim1=1, dim2=2).all()
    # Top-left window: one region; top-right and bottom-left: two; bottom-right: four (2x2 quarters of 4
    # tokens).
    regions = [len(torch.unique(mask[w].int(), dim=0)) for w in range(4)]
    assert regions == [1, 2, 2, 4]
    assert mask.sum(dim=(1, 2)).tolist() == [256, 128, 128, 64]


def test_sine_position_encoding_gives_every_position_its_own_code():
    code = sine_position_encoding(4, 6, 16)
    assert code.shape == (16, 4, 6) and code.abs().max() <= 1
    flat = code.flatten(1).T  # [positions, channels]
    assert torch.cdist(flat, flat).add(torch.eye(24)).min() > 1e-3
    # The first half encodes y only, the second half x only.
    assert torch.equal(code[:8, :, 0:1].expand(8, 4, 6), code[:8]) and torch.equal(
        code[8:, 0:1].expand(8, 4, 6), code[8:]
    )
