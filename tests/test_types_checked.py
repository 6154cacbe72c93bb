"""The jaxtyping import hook (pyproject addopts) really checks videoscene's annotations in the tests."""

import pytest
import torch
from jaxtyping import TypeCheckError
from shape_checks import unchecked

from videoscene.geometry.rotations import quaternion_to_matrix
from videoscene.types import Cameras


def test_wrong_shape_is_refused():
    assert quaternion_to_matrix(torch.randn(5, 4)).shape == (5, 3, 3)
    with pytest.raises(TypeCheckError):
        quaternion_to_matrix(torch.randn(5, 3))


def test_dataclass_fields_are_checked():
    with pytest.raises(TypeCheckError):
        Cameras(torch.eye(4).expand(2, 4, 4), torch.eye(3).expand(3, 3, 3))


def test_unchecked_turns_the_checks_off_only_inside():
    with unchecked(), pytest.raises(ValueError):  # the function's own failure, not the checker's
        quaternion_to_matrix(torch.randn(5, 3))
    with pytest.raises(TypeCheckError):
        quaternion_to_matrix(torch.randn(5, 3))
