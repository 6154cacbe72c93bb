"""The test suite checks every annotation at call time (pyproject addopts: --jaxtyping-packages); users do
not. A test that feeds a wrong shape on purpose, to reach the code's own one-line error, turns the checks off
around that call so that it tests what users get."""

from contextlib import contextmanager

import jaxtyping


@contextmanager
def unchecked():
    before = jaxtyping.config.jaxtyping_disable
    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        yield
    finally:
        jaxtyping.config.update("jaxtyping_disable", before)
