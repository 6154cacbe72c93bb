"""Oracle analysis of the timestep policy: how much quality does DDPNet's choice of t leave on the table?

For N held-out clips and the K candidate timesteps, the one-step student result is computed for every
(clip, t) pair with the same noise per clip, giving an error table E[n, k] (MSE against the ground truth:
latents, decoded frames, or the pipeline's render-skip output with its low-pass σ). Quality in dB is
Q = −10·log10(E) (PSNR with peak 1), and

    oracle     k*(n)  = argmin_k E[n, k]                  per clip, by enumeration
    policy     k_π(n) = DDPNet's greedy choice
    fixed      k_fix  = argmax_k mean_n Q[n, k]           the best single t for all clips
    regret     R(k(·)) = mean_n (Q[n, k*(n)] − Q[n, k(n)])  ≥ 0, in dB (also in MSE)

    videoscene policy oracle --weights RUN_DIR --cache VAL_CACHE_DIR [--space pixel|pipeline --sigma 3]
                             [--out oracle.json]
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from videoscene.distill.cache import ClipCache
from videoscene.distill.config import LeapConfig
from videoscene.distill.policy_fit import SPACES, Space, score_table
from videoscene.distill.student import load_distilled
from videoscene.errors import VideoSceneError
from videoscene.io_utils import write_json_atomic
from videoscene.policy.ddpnet import WEIGHTS_FILE, DDPNet
from videoscene.video.models import VideoBackbone

logger = logging.getLogger(__name__)


@dataclass
class OracleReport:
    candidates: list[int]
    space: str
    num_clips: int
    oracle_timesteps: list[int]  # per clip
    policy_timesteps: list[int]  # per clip
    fixed_timestep: int
    oracle_db: float  # mean quality −10·log10(MSE) of each strategy
    policy_db: float
    fixed_db: float
    policy_regret_db: float  # mean over clips of oracle − choice, dB
    fixed_regret_db: float
    policy_regret_mse: float  # mean over clips of MSE(choice) − MSE(oracle)
    fixed_regret_mse: float
    mse_table: list[list[float]]  # [N, K]

    def table(self) -> str:
        rows = [
            ("oracle (per clip)", self.oracle_db, 0.0, 0.0, "per clip"),
            ("DDPNet", self.policy_db, self.policy_regret_db, self.policy_regret_mse, "per clip"),
            (
                "best fixed t",
                self.fixed_db,
                self.fixed_regret_db,
                self.fixed_regret_mse,
                str(self.fixed_timestep),
            ),
        ]
        lines = [
            f"{self.num_clips} clips, {self.space} space, candidates {self.candidates}",
            f"{'strategy':<20}{'quality dB':>12}{'regret dB':>12}{'regret MSE':>14}  t",
        ]
        lines += [f"{name:<20}{q:>12.3f}{r:>12.3f}{m:>14.4g}  {t}" for name, q, r, m, t in rows]
        return "\n".join(lines)


def regret_analysis(
    mse_table: Float[Tensor, "clips K"],
    candidates: Sequence[int],
    policy_choice: Int[Tensor, " clips"],
    space: str = "latent",
) -> OracleReport:
    """The oracle / policy / best-fixed comparison of the module docstring, from an error table alone."""
    if (
        mse_table.ndim != 2
        or mse_table.shape[1] != len(candidates)
        or policy_choice.shape != mse_table.shape[:1]
    ):
        raise VideoSceneError(
            f"error table {tuple(mse_table.shape)}, {len(candidates)} candidates and "
            f"{tuple(policy_choice.shape)} choices do not match"
        )
    mse = mse_table.double().clamp_min(1e-20)
    quality = -10 * mse.log10()
    rows = torch.arange(mse.shape[0])
    oracle = quality.argmax(dim=1)
    fixed = int(quality.mean(dim=0).argmax())
    fixed_choice = torch.full_like(oracle, fixed)

    def mean_quality(choice: Tensor) -> float:
        return quality[rows, choice].mean().item()

    def regret_db(choice: Tensor) -> float:
        return (quality[rows, oracle] - quality[rows, choice]).mean().item()

    def regret_mse(choice: Tensor) -> float:
        return (mse[rows, choice] - mse[rows, oracle]).mean().item()

    policy_choice = policy_choice.long().cpu()
    return OracleReport(
        candidates=[int(t) for t in candidates],
        space=space,
        num_clips=int(mse.shape[0]),
        oracle_timesteps=[int(candidates[k]) for k in oracle],
        policy_timesteps=[int(candidates[k]) for k in policy_choice],
        fixed_timestep=int(candidates[fixed]),
        oracle_db=mean_quality(oracle),
        policy_db=mean_quality(policy_choice),
        fixed_db=mean_quality(fixed_choice),
        policy_regret_db=regret_db(policy_choice),
        fixed_regret_db=regret_db(fixed_choice),
        policy_regret_mse=regret_mse(policy_choice),
        fixed_regret_mse=regret_mse(fixed_choice),
        mse_table=mse_table.tolist(),
    )


@torch.no_grad()
def oracle_analysis(
    student: VideoBackbone,
    ddpnet: DDPNet,
    cache: ClipCache,
    leap: LeapConfig,
    seed: int = 0,
    max_clips: int | None = None,
    space: Space = "latent",
    sigma: float = 0.0,
) -> OracleReport:
    """Enumerate DDPNet's candidates on held-out clips; compare its choices with the oracle and the best fixed
    t."""
    if leap.no_leap:
        raise VideoSceneError(
            "a student distilled without the leap starts from pure noise: there is no t to choose"
        )
    ddpnet = ddpnet.to(student.device).eval()
    candidates = list(ddpnet.config.candidates)
    table = score_table(student, cache, candidates, leap, seed, max_clips, space, sigma).mse
    choices = torch.stack(
        [
            ddpnet(
                cache[i].render_latents[None].to(student.device),
                cache[i].view_disagreement[None].to(student.device),
            )
            .argmax(dim=-1)[0]
            .cpu()
            for i in range(table.shape[0])
        ]
    )
    return regret_analysis(table, candidates, choices, space)


# -- CLI -----------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights",
        required=True,
        help="a `videoscene train distill` output folder (student/, ddpnet.safetensors)",
    )
    parser.add_argument(
        "--cache", required=True, help="a held-out distillation cache folder (with manifest.json)"
    )
    parser.add_argument("--out", default=None, help="write the report as JSON here")
    parser.add_argument(
        "--space",
        choices=SPACES,
        default="latent",
        help="measure MSE on latents, decoded frames or the render-skip output",
    )
    parser.add_argument(
        "--sigma", type=float, default=0.0, help="the render skip's low-pass in pixels (pipeline space)"
    )
    parser.add_argument("--clips", type=int, default=None, help="use at most this many clips")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    distilled = load_distilled(args.weights, device)
    if distilled.ddpnet is None:
        raise VideoSceneError(
            f"{args.weights} has no {WEIGHTS_FILE}: this student was distilled without DDPNet"
        )
    report = oracle_analysis(
        distilled.student,
        distilled.ddpnet,
        ClipCache(args.cache),
        distilled.leap,
        args.seed,
        args.clips,
        args.space,
        args.sigma,
    )
    print(report.table())
    if args.out:
        write_json_atomic(args.out, asdict(report))
        logger.info("oracle report written to %s", args.out)
