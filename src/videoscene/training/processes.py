"""The processes of a run, as accelerate sees them; every trainer (and what a command builds before its
trainer, such as the distillation caches) asks here, so that all of them count the processes alike.

A run is one process (`videoscene train ...`) or one per GPU (`accelerate launch` / `torchrun`). Without
CUDA the processes that `torchrun --nproc_per_node N` starts are CPU processes talking over gloo, and
accelerate has to be told so (`cpu=True`): otherwise it ignores torchrun's environment, and every process
runs the whole single-process job on its own.
"""

from __future__ import annotations

from typing import Literal

import torch
from accelerate import Accelerator, PartialState

from videoscene.errors import VideoSceneError


def process_state() -> PartialState:
    """This process's rank, the number of processes and its device (accelerate's state, shared by every
    `Accelerator` of the process)."""
    return PartialState(cpu=not torch.cuda.is_available())


def make_accelerator(mixed_precision: Literal["no", "fp16", "bf16"] = "no") -> Accelerator:
    """The accelerator of a training run: one process per GPU, or CPU processes without CUDA."""
    cpu = not torch.cuda.is_available()
    if cpu and mixed_precision != "no":
        # PyTorch's CPU bf16 convolution is wrong for some shapes, among them the tiny transformer's patch
        # embedding (16 channels in, 4×4 kernel, stride 4: relative error above 1 against fp32).
        raise VideoSceneError(
            f'mixed_precision {mixed_precision!r} needs a CUDA GPU; on CPU set "mixed_precision": "no" '
            "in the config"
        )
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu)
