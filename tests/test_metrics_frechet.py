import numpy as np
import pytest

from videoscene.errors import VideoSceneError
from videoscene.metrics.frechet import I3DFeatures, frechet_distance, frechet_distance_of_features


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    std1, std2 = np.array([1.0, 2.0, 0.5]), np.array([3.0, 1.0, 0.5])
    expected = ((mu1 - mu2) ** 2).sum() + ((std1 - std2) ** 2).sum()  # diagonal: Tr term = Σ (σ₁ − σ₂)²
    assert frechet_distance(mu1, np.diag(std1**2), mu2, np.diag(std2**2)) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_is_zero_for_identical_and_rotation_invariant():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 4))
    sigma = a @ a.T + np.eye(4)
    assert frechet_distance(np.zeros(4), sigma, np.zeros(4), sigma) == pytest.approx(0, abs=1e-8)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    sigma2 = np.diag([1.0, 2.0, 3.0, 4.0])
    d = frechet_distance(np.ones(4), sigma, np.zeros(4), sigma2)
    d_rotated = frechet_distance(q @ np.ones(4), q @ sigma @ q.T, np.zeros(4), q @ sigma2 @ q.T)
    assert d == pytest.approx(d_rotated, rel=1e-7)


def test_sample_estimate_converges_to_the_true_distance():
    rng = np.random.default_rng(1)
    real = rng.normal(0, 1, size=(20000, 2))
    generated = rng.normal([2, 0], [1, 2], size=(20000, 2))
    assert frechet_distance_of_features(real, generated) == pytest.approx(4 + 1, rel=0.05)


def test_missing_detector_is_a_clear_error(tmp_path):
    with pytest.raises(VideoSceneError, match="never downloaded"):
        I3DFeatures(tmp_path / "i3d_torchscript.pt")
