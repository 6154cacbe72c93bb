"""`Trainer`: the one step-and-log loop of every `videoscene train ...`, on `accelerate` (one process, or one
process per GPU, or CPU processes, with `accelerate launch` / `torchrun`: `training.processes`).

A run of a subclass:
  1. checks its inputs and the output folder (an existing run is continued only with `resume`);
  2. builds the model, optimiser and schedule, seeded, so a seed always gives the same initial weights;
  3. resumes from the newest usable checkpoint (a corrupt one is set aside, see `resume_latest`) and drops the
     log lines of steps after it;
  4. prepares model and optimiser with accelerate and loads its data, checked before anything is written;
  5. optimises: per step a generator that is a function of (trainer, seed, step, process), the trainer's loss,
     backward, gradient clipping, the optimiser and schedule steps, the trainer's `after_step` (EMA, a policy
     update); JSONL logs, validation and checkpoints at their cadences;
  6. once the last step is done, exports (the trainer's `export`) and writes run.json.

With several processes each reads its own share of every step's batch (`training.randomness.batch_indices`)
and accelerate averages the gradients, so every process holds the same weights after every step; the main
process alone writes logs, checkpoints and the export. `videoscene -v` logs, per process, the items it read
each step and the sha256 of its final state, with which to check both.

Output folder: train_config.json (or the trainer's own config file), train_log.jsonl, validation.jsonl,
run.json, checkpoints/step_NNNNNNN/, and what the trainer exports.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from videoscene.errors import VideoSceneError
from videoscene.io_utils import check_output_location, read_json_object, write_json_atomic
from videoscene.training.checkpoints import (
    append_jsonl,
    checkpoint_fingerprint,
    load_checkpoint_tensors,
    load_optimizer,
    read_checkpoint_state,
    resume_latest,
    save_checkpoint,
    trim_log,
)
from videoscene.training.config import RunConfig, config_to_dict
from videoscene.training.processes import make_accelerator
from videoscene.training.randomness import step_generator

logger = logging.getLogger(__name__)

LOGS = ("train_log.jsonl", "validation.jsonl")
RUN_FILE = "run.json"


@dataclass(frozen=True)
class LoopSettings:
    """What the loop itself reads from a trainer's config."""

    steps: int
    seed: int
    grad_clip: float
    checkpoint_every: int
    keep_checkpoints: int
    validate_every: int
    log_every: int = 1
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"

    @classmethod
    def of(cls, config: RunConfig) -> LoopSettings:
        return cls(
            config.steps,
            config.seed,
            config.grad_clip,
            config.checkpoint_every,
            config.keep_checkpoints,
            config.validate_every,
            config.log_every,
            config.mixed_precision,
        )


@dataclass
class Optimisation:
    """What a trainer's `build` returns: the module accelerate prepares (its forward is what the loss calls,
    so that DDP's hooks see the calls), the optimiser, the parameters it updates (clipped), the lr
    schedule."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    trainable: list[nn.Parameter]
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None


class Trainer:
    """The loop (module docstring). A subclass sets `name` and `export_name` and supplies the hooks below;
    it sets its own attributes first and then calls `Trainer.__init__`, which runs steps 1-4."""

    name = "model"  # progress label and tag of the step generators
    export_name = "model"  # file or folder under OUT that exists once the run has finished
    checkpoint_files: tuple[str, ...] = ()  # NAME.safetensors of every checkpoint (see `checkpoint_tensors`)

    def __init__(self, config: Any, settings: LoopSettings, out: str | Path, resume: bool = False):
        self.config, self.settings, self.out = config, settings, Path(out)
        self.accelerator = make_accelerator(settings.mixed_precision)
        self.step = 0

        # 1. Check inputs and the output folder.
        self.check_inputs()
        check_new_run(self.out, resume)

        # 2. Model, optimiser, schedule (identical initial weights for a seed).
        torch.manual_seed(settings.seed)
        built = self.build()
        self.trainable, self.scheduler = built.trainable, built.scheduler

        # 3. Resume (the scheduler is stepped by hand once per optimiser step: accelerate would step it per
        # process).
        self.optimizer = built.optimizer
        if resume:
            # The main process first: it sets a corrupt checkpoint aside, the others then load the one it did.
            with self.accelerator.main_process_first():
                resumed = resume_latest(self.out, self._load_checkpoint)
            if resumed is None:
                logger.info("no usable checkpoint in %s: starting from step 0", self.out)
            else:
                self.step = resumed[0]
                logger.info("resuming from %s (step %d)", resumed[1], self.step)
            if self.accelerator.is_main_process:
                for log in LOGS:
                    trim_log(self.out / log, self.step)
        self.finished = self.step >= settings.steps and (self.out / self.export_name).exists()

        # 4. Prepare for accelerate; data (checked before anything is written); the run's config.
        self.model, self.optimizer = self.accelerator.prepare(built.model, self.optimizer)
        if not self.finished:
            self.load_data()
            if self.accelerator.is_main_process:
                self.out.mkdir(parents=True, exist_ok=True)
                self.write_config()

    # -- what a trainer supplies -----------------------------------------------------------------------------
    def check_inputs(self) -> None:
        """Refuse what cannot train (missing data, sizes the model cannot take) before anything is built."""

    def build(self) -> Optimisation:
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must have been made with for this run to resume it (JSON values)."""
        return {}

    def load_data(self) -> None:
        """Caches, in-memory frames, held-out clips: everything the steps and the validation read."""

    def write_config(self) -> None:
        write_json_atomic(self.out / "train_config.json", config_to_dict(self.config))

    def loss(self, generator: torch.Generator) -> tuple[Tensor, dict[str, Any]]:
        """The loss of step `self.step` (inside accelerate's autocast) and what to log beside it."""
        raise NotImplementedError

    def after_step(self, generator: torch.Generator) -> dict[str, Any]:
        """Anything after the optimiser step (EMA, a policy update); returns what to log."""
        return {}

    def validate(self, final: bool) -> dict[str, Any] | None:
        """Held-out scores at step `self.step` (main process only); `final`: the last step of the run."""
        return None

    def checkpoint_tensors(self) -> dict[str, dict[str, Tensor]]:
        """NAME → tensors, one file each in every checkpoint (names as in `checkpoint_files`)."""
        raise NotImplementedError

    def restore(self, tensors: dict[str, dict[str, Tensor]], state: dict[str, Any], folder: Path) -> None:
        """Put a checkpoint's tensors (and anything the trainer keeps in state.json) back; a file that does
        not fit is a `LoadError`."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def checkpoint_state(self) -> dict[str, Any]:
        """Anything else the trainer keeps in state.json (JSON values)."""
        return {}

    def export(self, summary: dict[str, Any], validation: dict[str, Any] | None) -> dict[str, Any]:
        """Write the trained model under OUT (main process, after the last step); returns run.json's
        content."""
        raise NotImplementedError

    # -- the loop --------------------------------------------------------------------------------------------
    def train(self, stop_after: int | None = None) -> dict[str, Any]:
        """Optimise to the last step, or for `stop_after` steps of this call (checkpointing first, e.g. to
        train in time slices); returns the run summary (run.json once the run has finished)."""
        settings, accelerator = self.settings, self.accelerator
        if self.finished:
            logger.info("training already finished at step %d", self.step)
            run_file = self.out / RUN_FILE
            return read_json_object(run_file, "run summary") if run_file.is_file() else {"step": self.step}
        end = settings.steps if stop_after is None else min(settings.steps, self.step + stop_after)
        start, step_seconds, validation = self.step, 0.0, None
        progress = tqdm(
            total=settings.steps,
            initial=start,
            desc=f"train {self.name}",
            unit="step",
            disable=not accelerator.is_local_main_process,
        )
        while self.step < end:
            tic = time.perf_counter()
            generator = step_generator(self.name, settings.seed, self.step, accelerator.process_index)
            self.model.train()
            with accelerator.autocast():
                loss, record = self.loss(generator)
            accelerator.backward(loss)
            grad_norm = accelerator.clip_grad_norm_(self.trainable, settings.grad_clip)
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            record.update(self.after_step(generator))
            self.step += 1
            step_seconds += time.perf_counter() - tic
            progress.update(1)

            if self.step % settings.log_every == 0 or self.step == end:
                record = {
                    "step": self.step,
                    "loss": accelerator.reduce(loss.detach(), "mean").item(),  # every process takes part
                    **record,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "grad_norm": float(grad_norm),
                    "seconds_per_step": step_seconds / (self.step - start),
                }
                record = {
                    key: value.item() if isinstance(value, Tensor) else value for key, value in record.items()
                }
                progress.set_postfix(
                    {key: f"{record[key]:.4g}" for key in ("loss", "train_psnr") if key in record}
                )
                if accelerator.is_main_process:
                    append_jsonl(self.out / "train_log.jsonl", record)
            if self.step % settings.validate_every == 0 or self.step == settings.steps:
                validation = self._validate(final=self.step == settings.steps) or validation
            if self.step % settings.checkpoint_every == 0 or self.step == end:
                accelerator.wait_for_everyone()
                if accelerator.is_main_process:
                    self._save_checkpoint()
        progress.close()
        accelerator.wait_for_everyone()
        if logger.isEnabledFor(logging.DEBUG):  # a pass over every weight: only when asked for
            logger.debug(
                "step %d, process %d of %d: state sha256 %s",
                self.step,
                accelerator.process_index,
                accelerator.num_processes,
                checkpoint_fingerprint(*self._checkpoint_contents()),
            )

        # 6. Export once the last step is done.
        summary: dict[str, Any] = {
            "step": self.step,
            "seconds_per_step": round(step_seconds / max(1, self.step - start), 4),
        }
        if self.step < settings.steps or not accelerator.is_main_process:
            return summary
        summary = self.export(summary, validation)
        write_json_atomic(self.out / RUN_FILE, summary)
        return summary

    def _validate(self, final: bool) -> dict[str, Any] | None:
        if not self.accelerator.is_main_process:
            return None
        scores = self.validate(final)
        if scores is None:
            return None
        scores = {"step": self.step, **scores}
        append_jsonl(self.out / "validation.jsonl", scores)
        return scores

    # -- checkpoints -----------------------------------------------------------------------------------------
    def _save_checkpoint(self) -> Path:
        return save_checkpoint(
            self.out, self.step, *self._checkpoint_contents(), self.settings.keep_checkpoints
        )

    def _checkpoint_contents(
        self,
    ) -> tuple[dict[str, dict[str, Tensor]], dict[str, torch.optim.Optimizer], dict[str, Any]]:
        """A checkpoint's tensors, optimizers and state.json (without the step)."""
        state = {**self._identity(), "train_config": config_to_dict(self.config), **self.checkpoint_state()}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return self.checkpoint_tensors(), self.optimizers(), state

    def _identity(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.identity()))  # as stored: tuples read back as lists

    def _load_checkpoint(self, folder: Path) -> int:
        identity = self._identity()
        required = ("step", *identity, *(("scheduler",) if self.scheduler is not None else ()))
        state = read_checkpoint_state(folder, required)
        for key, value in identity.items():
            if state[key] != value:
                raise VideoSceneError(
                    f"checkpoint {folder} was made with a different {key.replace('_', ' ')}; "
                    "resume with the run's own config and inputs"
                )
        tensors = load_checkpoint_tensors(folder, self.checkpoint_files)
        self.restore(tensors, state, folder)
        for name, optimizer in self.optimizers().items():
            load_optimizer(folder / f"{name}.safetensors", optimizer)
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        return int(state["step"])


def check_new_run(out: Path, resume: bool) -> None:
    """A run writes into a folder where it may (`check_output_location`) and, unless it resumes, an empty one,
    so that it never mixes its files with another run's or a user's."""
    check_output_location(out)
    if not resume and out.is_dir() and any(out.iterdir()):
        raise VideoSceneError(
            f"{out} is not empty (a training run?); pass --resume to continue the run in it or choose "
            "another --out"
        )


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's CPU thread count within the block (None: unchanged); restored afterwards, so a config's
    `num_threads` applies to its own run only."""
    threads = torch.get_num_threads()
    try:
        if count:
            torch.set_num_threads(count)
        yield
    finally:
        torch.set_num_threads(threads)
