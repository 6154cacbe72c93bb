"""Evaluation against ground truth (`videoscene eval`, issue 6): methods by name (methods.py), which
generated frame stands for which target (protocol.py), the loop and the scores (runner.py), the
report files (report.py), and DDPNet's timestep choice against the per-clip oracle (oracle.py, `videoscene
policy oracle`). How frames are compared: docs/evaluation.md."""

from videoscene.evaluation.methods import (
    GenerationRequest,
    MethodResources,
    MethodSpec,
    parse_method,
    register_family,
)
from videoscene.evaluation.protocol import FramePlan, plan_frames
from videoscene.evaluation.runner import EvalConfig, evaluate

__all__ = [
    "EvalConfig",
    "FramePlan",
    "GenerationRequest",
    "MethodResources",
    "MethodSpec",
    "evaluate",
    "parse_method",
    "plan_frames",
    "register_family",
]
