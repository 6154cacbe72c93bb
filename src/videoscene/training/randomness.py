"""Randomness that makes a resumed run continue exactly as an uninterrupted one: every draw of a step comes
from a generator that is a function of the step, and batches walk through seeded epoch permutations."""

from __future__ import annotations

import hashlib
import logging

import torch

logger = logging.getLogger(__name__)


def step_generator(*parts) -> torch.Generator:
    """Every random draw of one training step comes from here, a function of `parts` alone (e.g. a tag,
    the seed, the step and the process), so a resumed run continues exactly as an uninterrupted one."""
    value = int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little") >> 1
    return torch.Generator().manual_seed(value)


def batch_indices(
    num_items: int, batch_size: int, num_processes: int, process: int, step: int, seed: int
) -> list[int]:
    """Items of `step` for `process`: every epoch is a seeded permutation of the items, read in order across
    steps and split between processes without overlap (an item recurs within one step only where the step's
    global batch spans two epochs). Logged at debug level (`videoscene -v`), so that a multi-process run
    shows which items each process read."""
    global_batch = batch_size * num_processes
    first = step * global_batch + process * batch_size
    indices = []
    for position in range(first, first + batch_size):
        epoch, offset = divmod(position, num_items)
        permutation = torch.randperm(
            num_items, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        )
        indices.append(int(permutation[offset]))
    logger.debug("step %d, process %d of %d: items %s", step, process, num_processes, indices)
    return indices
