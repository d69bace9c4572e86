"""`VitsTrainer`: the `transformers.Trainer` that fine-tunes a `VitsForTraining` with its discriminator.

What it changes in `Trainer`, and why:
    - `training_step`: the generator's forward, loss and backward, then the discriminator's own update on the
      detached generated audio, with its own AdamW optimizer and schedule prepared by the trainer's accelerator
      (DDP, mixed precision). While the generator's adversarial terms are computed the discriminator's weights do not
      require grad, so the generator's backward leaves the discriminator's gradients untouched (`None`).
    - `compute_loss` / `prediction_step` / `evaluation_loop` / `log`: the loss components (`mel`, `kl`, `duration`,
      `generator`, `feature_matching`, `amplitude`, `l2sp`, `discriminator`, ...) are summed on the device and
      averaged over the logging window (training) or the eval split (`eval_` prefix), reduced over processes once per
      log: the metrics add no host sync per step. (`--target_hours` under DDP does: its deadline guard broadcasts
      the main process's stop decision at every step, one scalar, so that all processes stop at the same step.)
    - Checkpoints: `checkpoint-N` is a `VitsModel` folder (`save_for_inference`: training-time weight norm removed)
      with the tokenizer and the discriminator, so `VitsModel.from_pretrained` and `pipeline("text-to-speech")` load
      it. Its `training_state/` subfolder holds what exact resume needs and a plain model folder cannot: the
      training module's weights as trained (weight-norm parametrized), the discriminator's, its optimizer, schedule
      and gradient scaler, and the step plan of `--target_hours`. Resume and `load_best_model_at_end` read it. On
      resume, callbacks with a `resuming_from(checkpoint)` method (`AmplitudeMonitorCallback`) are told which
      checkpoint the run restarts from, before `on_train_begin`.
    - `create_scheduler`: also creates the discriminator's optimizer and schedule (the only point where the number of
      steps is known and the generator is prepared), and follows the `--target_hours` plan (`replan`).
    - `_save_checkpoint`: the same files as `Trainer`'s, written into `partial-checkpoint-N` and renamed to
      `checkpoint-N` once complete (`recipe.training.checkpoints`): a checkpoint is all there or not there. Callbacks with a
      `save_to_checkpoint(folder, checkpoint, args, state)` method (`AmplitudeMonitorCallback`) write their files
      into it before the rename.
    - `train`: checks the output folder (writable, room for a few checkpoints) before the first step; resumes only
      from an intact checkpoint (`--resume_from_checkpoint True`: the newest intact one, skipping damaged ones with
      a warning each); on Ctrl-C / SIGTERM finishes the step, saves and raises `TrainingInterrupted`
      (`recipe.training.signals`); turns a broken connection between processes into an error that says so.
    - Batches carry their clips' paths (`VitsDataCollator`'s `paths`): a non-finite loss is reported with the clips
      of the batch it came from, without a host sync per step.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import math
import os
import re
import shutil
import warnings

import torch
from safetensors.torch import load_file, save_file
from transformers import Trainer
from transformers.optimization import get_scheduler
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, SaveStrategy, rotate_checkpoints

from recipe.model.discriminator import DISCRIMINATOR_WEIGHTS_NAME, save_discriminator
from recipe.model.losses import L2SPReference, LossWeights, discriminator_objective, generator_objective
from recipe.model.training_forward import save_for_inference
from recipe.training.checkpoint_hooks import CheckpointAwareCallback
from recipe.training.checkpoints import (
    PARTIAL_PREFIX,
    CheckpointLoadError,
    CheckpointSaveError,
    check_room,
    check_writable,
    checkpoint_step,
    checkpoints_to_hold,
    commit,
    describe_save_failure,
    estimate_checkpoint_bytes,
    newest_intact_checkpoint,
    partial_path,
    remove_partial_checkpoints,
    verify_checkpoint,
)
from recipe.training.signals import StopOnSignalCallback, StopRequest, TrainingInterrupted
from recipe.training.time_budget import TimeBudgetCallback

logger = logging.getLogger(__name__)

TRAINING_STATE_DIR = "training_state"
TRAINING_MODEL_WEIGHTS = "training_model.safetensors"
DISCRIMINATOR_TRAINING_WEIGHTS = "discriminator_training.safetensors"
DISCRIMINATOR_OPTIMIZER = "discriminator_optimizer.pt"
DISCRIMINATOR_SCHEDULER = "discriminator_scheduler.pt"
DISCRIMINATOR_SCALER = "discriminator_scaler.pt"
PLAN_FILE = "plan.json"
# `max_steps` while `--target_hours` times the first steps: an upper bound, lowered by the plan
PROVISIONAL_MAX_STEPS = 10_000_000
# Trainer's own checkpoint files (transformers.trainer's names)
TRAINER_STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
# micro-batches whose clips and loss finiteness are kept for naming the clips of a non-finite loss
TRACKED_BATCHES = 1024
# messages of the errors torch.distributed raises when a peer process died, hangs or is unreachable
_PEER_FAILURE = re.compile(r"gloo|nccl|connection closed|connection reset|broken pipe|timed out|timeout", re.I)


@contextlib.contextmanager
def frozen(module: torch.nn.Module):
    """Turn `requires_grad` off for `module`'s parameters inside the block (restored on exit).

    Gradients still flow through the module to its inputs; none reach its own weights.
    """
    parameters = list(module.parameters())
    flags = [parameter.requires_grad for parameter in parameters]
    for parameter in parameters:
        parameter.requires_grad_(False)
    try:
        yield module
    finally:
        for parameter, flag in zip(parameters, flags):
            parameter.requires_grad_(flag)


class VitsTrainer(Trainer):
    """A `Trainer` for `VitsForTraining`, with an optional discriminator and the VITS objectives.

    Args:
        model (`VitsForTraining`): the training module (its `.vits` is the `VitsModel`).
        args (`VitsTrainingArguments`): training arguments, including the loss weights and `--target_hours`.
        discriminator (`VitsDiscriminator`, *optional*): trained alongside; `None` trains without adversarial terms.
        l2sp (`L2SPReference`, *optional*): the snapshot of the starting weights of `model.vits`, for `--l2sp_weight`.
        loss_weights (`LossWeights`, *optional*): defaults to `LossWeights.from_training_args(args)`.
        budget_started_at (`float`, *optional*): `time.monotonic()` value `--target_hours` counts from (e.g. the
            start of the script, so that preprocessing counts); the start of training when `None`.
        **kwargs: passed to `Trainer` (`train_dataset`, `eval_dataset`, `data_collator`, `processing_class`,
            `callbacks`, ...).
    """

    def __init__(
        self,
        model,
        args,
        discriminator=None,
        l2sp: L2SPReference | None = None,
        loss_weights: LossWeights | None = None,
        budget_started_at: float | None = None,
        **kwargs,
    ):
        self.loss_weights = loss_weights or LossWeights.from_training_args(args)
        if self.loss_weights.l2sp > 0 and l2sp is None:
            raise ValueError("--l2sp_weight > 0 needs an L2SPReference of the starting weights (l2sp=...)")
        self.discriminator = discriminator
        self.l2sp = l2sp
        self.discriminator_optimizer = None
        self.discriminator_lr_scheduler = None
        self._discriminator_wrapped = None
        self._metric_sums = {"train": {}, "eval": {}}
        self._metric_counts = {"train": {}, "eval": {}}
        self._planned_max_steps: int | None = None
        # per micro-batch since the last log: (step, clip paths) on the host and the loss's finiteness on the device
        self._batch_clips: collections.deque = collections.deque(maxlen=TRACKED_BATCHES)
        self._batch_finite: collections.deque = collections.deque(maxlen=TRACKED_BATCHES)
        self._non_finite_batches: list[tuple[int, list[str] | None]] = []
        max_steps_cap = args.max_steps if args.max_steps > 0 else None
        if args.target_hours is not None and args.max_steps <= 0:
            # the epoch loop is sized from max_steps before the plan exists: give it an upper bound
            args.max_steps = PROVISIONAL_MAX_STEPS
        super().__init__(model=model, args=args, **kwargs)
        if discriminator is not None:
            discriminator.to(self.args.device)
        self.budget: TimeBudgetCallback | None = None
        if args.target_hours is not None:
            self.budget = TimeBudgetCallback(
                target_hours=args.target_hours,
                timing_steps=args.target_hours_timing_steps,
                replan=self.replan,
                eval_batches=self._eval_batches(),
                max_steps_cap=max_steps_cap,
                already_planned=lambda: self._planned_max_steps is not None,
                started_at=budget_started_at,
            )
            self.add_callback(self.budget)
        self.stop_request = StopRequest()
        self.add_callback(StopOnSignalCallback(self.stop_request))

    def _eval_batches(self) -> int:
        if self.eval_dataset is None or self.args.eval_strategy == "no":
            return 0
        per_step = self.args.per_device_eval_batch_size * max(1, self.args.world_size)
        return math.ceil(len(self.eval_dataset) / per_step)

    # -- loss components ------------------------------------------------------------------------------------------

    def _record(self, mode: str, components: dict[str, torch.Tensor]) -> None:
        """Add detached components to the window's on-device sums (no host sync)."""
        sums, counts = self._metric_sums[mode], self._metric_counts[mode]
        for name, value in components.items():
            value = value.detach().float()
            sums[name] = sums[name] + value if name in sums else value
            counts[name] = counts.get(name, 0) + 1

    def _reduce_metrics(self, mode: str) -> dict[str, float]:
        """Means of the recorded components over the window and all processes; resets the window.

        Every process must call it at the same point (it is a collective under DDP); they record the same names.
        """
        sums, counts = self._metric_sums[mode], self._metric_counts[mode]
        names = sorted(sums)
        if not names:
            return {}
        packed = torch.stack(
            [torch.stack([sums[name], torch.tensor(float(counts[name]), device=sums[name].device)]) for name in names]
        )
        if self.accelerator.num_processes > 1:
            packed = self.accelerator.reduce(packed, reduction="sum")
        self._metric_sums[mode], self._metric_counts[mode] = {}, {}
        return {name: total / count for name, (total, count) in zip(names, packed.tolist())}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The generator's loss (`generator_objective`); its components are recorded for logging.

        The discriminator's weights are frozen while it scores the generated audio (see `frozen`).
        """
        mode = "train" if model.training else "eval"
        outputs = model(**inputs)
        discriminator_context = (
            frozen(self.discriminator) if self.discriminator is not None else contextlib.nullcontext()
        )
        # the unwrapped discriminator: its DDP wrapper would wait for gradients that frozen weights never get;
        # autocast by hand, as accelerate only adds it to the forward of the modules it prepared
        with discriminator_context as discriminator, self.accelerator.autocast():
            loss, components = generator_objective(
                outputs,
                self.loss_weights,
                discriminator=discriminator,
                l2sp=self.l2sp,
                model=self.model.vits if self.l2sp is not None else None,
            )
        self._record(mode, components)
        return (loss, outputs) if return_outputs else loss

    # -- training -------------------------------------------------------------------------------------------------

    def training_step(self, model, inputs, num_items_in_batch=None):
        """Generator forward + backward, then the discriminator's update on the same (detached) generated audio."""
        model.train()  # evaluation and the callbacks' synthesis put it in eval mode
        paths = inputs.pop("paths", None)
        inputs = self._prepare_inputs(inputs)
        try:
            with self.compute_loss_context_manager():
                loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
        except RuntimeError as error:
            # Weights made non-finite by an earlier step (a NaN loss in fp32 / bf16, where no grad scaler skips it)
            # break VITS's spline flow with an unrelated-looking error; say what happened. Checked only on failure.
            broken = [name for name, parameter in model.named_parameters() if not torch.isfinite(parameter).all()]
            if broken:
                self._find_non_finite_batches()
                raise FloatingPointError(
                    f"The model's weights are no longer finite at step {self.state.global_step} ({len(broken)} "
                    f"tensors, e.g. {', '.join(broken[:3])}): an earlier step's loss was NaN or infinite"
                    f"{self._describe_non_finite_batches()}. {self._where_to_resume()} with a lower learning rate, "
                    "or train in fp32, after checking those clips."
                ) from error
            raise
        # kept on the device: read at the next log (or failure), so naming the clips adds no sync per step
        self._batch_clips.append((self.state.global_step + 1, paths))
        self._batch_finite.append(torch.isfinite(loss.detach()))
        # a per-batch mean: scale it for gradient accumulation as Trainer does
        loss = loss / self.current_gradient_accumulation_steps
        self.accelerator.backward(loss)
        if self.discriminator is not None:
            self._discriminator_step(outputs)
        return loss.detach()

    def _discriminator_step(self, outputs) -> None:
        discriminator = self._discriminator_wrapped
        discriminator.train()
        sync = self.accelerator.sync_gradients
        # accumulate like the generator: reduce and step only on the last micro-batch of an accumulation window
        with contextlib.nullcontext() if sync else self.accelerator.no_sync(discriminator):
            loss, components = discriminator_objective(discriminator, outputs)
            loss = loss / self.current_gradient_accumulation_steps
            scaler = self.discriminator_optimizer.scaler
            if scaler is not None:
                scaler.scale(loss).backward()
            else:
                self.accelerator.backward(loss)
        if sync:
            self.discriminator_optimizer.step()
            if not self.discriminator_optimizer.step_was_skipped:
                self.discriminator_lr_scheduler.step()
            # set_to_none: the next window starts from no gradient, and unscaling by the generator's clipping
            # (accelerate unscales every prepared optimizer) finds nothing to touch
            self.discriminator_optimizer.optimizer.zero_grad(set_to_none=True)
        self._record("train", components)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """The generator's schedule, then the discriminator's optimizer and schedule, for the planned steps."""
        if self._planned_max_steps is not None:
            # a resumed --target_hours run keeps the plan it was started with
            num_training_steps = self._planned_max_steps
            self.state.max_steps = num_training_steps
        scheduler = super().create_scheduler(num_training_steps, optimizer)
        if self.discriminator is not None and self.discriminator_optimizer is None:
            args = self.args
            discriminator_optimizer = torch.optim.AdamW(
                self.discriminator.parameters(),
                lr=args.discriminator_learning_rate or args.learning_rate,
                betas=(args.adam_beta1, args.adam_beta2),
                eps=args.adam_epsilon,
                weight_decay=args.weight_decay,
                # the same implementation as the generator's (`optim`): fused is 1.3-7x faster on the optimizer phase
                # (benchmarks/README.md)
                fused=True if args.optim == "adamw_torch_fused" else None,
            )
            self._discriminator_wrapped, self.discriminator_optimizer = self.accelerator.prepare(
                self.discriminator, discriminator_optimizer
            )
            if self.discriminator_optimizer.scaler is not None:
                # fp16: a scaler of its own. With the generator's, the discriminator's step would update the loss
                # scale between the generator's backward and its unscaling.
                self.discriminator_optimizer.scaler = torch.amp.GradScaler(self.args.device.type)
            self.discriminator_lr_scheduler = self._schedule(self.discriminator_optimizer, num_training_steps, 0)
        return scheduler

    def _schedule(self, optimizer, num_training_steps: int, current_step: int):
        """`args.lr_scheduler_type` planned for `num_training_steps`, positioned at `current_step`."""
        scheduler = get_scheduler(
            self.args.lr_scheduler_type,
            optimizer=optimizer,
            num_warmup_steps=self.args.get_warmup_steps(num_training_steps),
            num_training_steps=num_training_steps,
            scheduler_specific_kwargs=self.args.lr_scheduler_kwargs,
        )
        if current_step > 0:
            # the schedules are closed-form in the step (LambdaLR): jump to it
            scheduler.last_epoch = current_step - 1
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                scheduler.step()
        return scheduler

    def replan(self, max_steps: int) -> None:
        """Train for `max_steps` steps in all: both learning-rate schedules are re-planned for that many steps."""
        self._planned_max_steps = max_steps
        self.state.max_steps = max_steps
        step = self.state.global_step
        self.lr_scheduler = self._schedule(self.optimizer, max_steps, step)
        self.callback_handler.lr_scheduler = self.lr_scheduler
        if self.discriminator_optimizer is not None:
            self.discriminator_lr_scheduler = self._schedule(self.discriminator_optimizer, max_steps, step)

    # -- evaluation -----------------------------------------------------------------------------------------------

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """The training losses on an eval batch (no gradient); the discriminator's loss too."""
        inputs.pop("paths", None)  # clip names, for training-time reports only
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
            if self.discriminator is not None:
                self.discriminator.eval()
                with self.accelerator.autocast():
                    _, components = discriminator_objective(self.discriminator, outputs)
                self._record("eval", components)
        return loss.detach(), None, None

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        """Trainer's loop, then the components averaged over the split (`eval_mel`, ...) added to its metrics."""
        self._metric_sums["eval"], self._metric_counts["eval"] = {}, {}
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        output.metrics.update(
            {f"{metric_key_prefix}_{name}": value for name, value in self._reduce_metrics("eval").items()}
        )
        return output

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the training window's loss components to a training log (the one with `loss`)."""
        if "loss" in logs:
            logs.update(self._reduce_metrics("train"))
            broken = sorted(
                name for name, value in logs.items() if isinstance(value, float) and not math.isfinite(value)
            )
            if broken:
                # checked here, once per logging window, where the values are on the host anyway
                new = self._find_non_finite_batches()
                logger.warning(
                    "Non-finite training values in the logging window that ends at step %d: %s%s. With fp16 a few "
                    "overflowing steps are expected (the grad scaler skips them); if it persists, lower the learning "
                    "rate or train in bf16 / fp32 from the last checkpoint.",
                    self.state.global_step,
                    ", ".join(f"{name}={logs[name]}" for name in broken),
                    self._describe_non_finite_batches(new),
                )
            self._batch_clips.clear()
            self._batch_finite.clear()
        super().log(logs, start_time)

    def _find_non_finite_batches(self) -> list[tuple[int, list[str] | None]]:
        """The tracked micro-batches whose loss was not finite, added to `_non_finite_batches`; returns the new ones.

        One host sync for all of them; the tracked batches are then forgotten.
        """
        if not self._batch_finite:
            return []
        finite = torch.stack(list(self._batch_finite)).tolist()
        new = [batch for batch, ok in zip(self._batch_clips, finite) if not ok]
        self._batch_clips.clear()
        self._batch_finite.clear()
        self._non_finite_batches.extend(new)
        return new

    def _describe_non_finite_batches(self, batches: list | None = None, limit: int = 3) -> str:
        """`" (step 1: clips a.wav, b.wav; ...)"` for the first non-finite batches, or `""` when none is known."""
        batches = self._non_finite_batches if batches is None else batches
        if not batches:
            return ""
        parts = []
        for step, paths in batches[:limit]:
            clips = ", ".join(paths) if paths else "clip paths unknown (the batches carry no 'paths')"
            parts.append(f"step {step}: {clips}")
        more = f"; {len(batches) - limit} more batch(es)" if len(batches) > limit else ""
        return f" (the non-finite loss came from the batch of {'; '.join(parts)}{more})"

    def _where_to_resume(self) -> str:
        """Names the newest intact checkpoint to resume from, or says there is none yet."""
        run_dir = self.args.output_dir
        checkpoint, _ = newest_intact_checkpoint(run_dir, self._checkpoint_files())
        if checkpoint is None:
            return f"No checkpoint was saved in {run_dir} yet: start again"
        return f"Resume from {checkpoint} (--resume_from_checkpoint {checkpoint})"

    # -- saving and loading ---------------------------------------------------------------------------------------

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """A folder `VitsModel.from_pretrained` and `pipeline("text-to-speech")` load, with tokenizer and discriminator."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        name = os.path.basename(os.path.normpath(output_dir))
        if name.startswith(PARTIAL_PREFIX):
            logger.info(f"Saving {name[len(PARTIAL_PREFIX) :]} (into {output_dir}, renamed when complete)")
        else:
            logger.info(f"Saving model to {output_dir}")
        save_for_inference(self.model.vits, output_dir)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        if self.discriminator is not None:
            save_discriminator(self.discriminator, output_dir)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, **kwargs):
        """`Trainer.train`, with the output folder and the checkpoint to resume from checked first, a clean stop on
        Ctrl-C / SIGTERM, and a broken connection between processes reported as such.

        Overridden because `Trainer.train(resume_from_checkpoint=True)` takes the highest-numbered `checkpoint-N`
        even when it is incomplete or damaged, and fails on it with a loader's raw error.

        Raises:
            `TrainingInterrupted`: a signal stopped training after a checkpoint was saved.
            `CheckpointSaveError`: the output folder cannot be written or lacks room for a few checkpoints.
            `CheckpointLoadError`: the checkpoint to resume from is damaged (or none is intact).
        """
        run_dir = self._get_output_dir(trial)
        resume = self._resolve_resume(resume_from_checkpoint, run_dir)
        if self.args.should_save:
            check_writable(run_dir)
            remove_partial_checkpoints(run_dir)
            sizes = estimate_checkpoint_bytes(self.model, self.discriminator, self.args.save_only_model)
            room = check_room(run_dir, sizes["checkpoint"], checkpoints_to_hold(self.args), sizes["final_model"])
            logger.info(
                f"{run_dir}: a checkpoint takes about {sizes['checkpoint'] / 1e6:.1f} MB; "
                f"{room['free'] / 1e9:.1f} GB free"
            )
        with self.stop_request.listening():
            try:
                output = super().train(resume_from_checkpoint=resume, trial=trial, **kwargs)
            except RuntimeError as error:
                # the recipe's own errors (RuntimeError subclasses) say what they mean already
                peer_error = type(error) is RuntimeError or isinstance(error, torch.distributed.DistError)
                if self.args.world_size > 1 and peer_error and _PEER_FAILURE.search(str(error)):
                    raise RuntimeError(
                        f"Process {self.args.process_index} of {self.args.world_size}: the connection to another "
                        f"process of the run broke or timed out at step {self.state.global_step} "
                        f"({str(error).splitlines()[0][:300]}). A process that crashed logs its own error (on its "
                        f"machine); one that hangs is given up after --ddp_timeout ({self.args.ddp_timeout} s). "
                        f"{self._where_to_resume()}."
                    ) from error
                raise
        if self.stop_request.requested:
            checkpoint = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            if not os.path.isdir(checkpoint):
                checkpoint, _ = newest_intact_checkpoint(run_dir, self._checkpoint_files())
            raise TrainingInterrupted(self.stop_request.signum, self.state.global_step, checkpoint)
        return output

    def _checkpoint_files(self) -> list[str]:
        """The files of a checkpoint that resuming this trainer loads (relative paths)."""
        files = [TRAINER_STATE_FILE, "model.safetensors", os.path.join(TRAINING_STATE_DIR, TRAINING_MODEL_WEIGHTS)]
        if self.discriminator is not None:
            files += [DISCRIMINATOR_WEIGHTS_NAME, os.path.join(TRAINING_STATE_DIR, DISCRIMINATOR_TRAINING_WEIGHTS)]
        if not self.args.save_only_model:
            files += [OPTIMIZER_FILE, SCHEDULER_FILE]
            if self.discriminator is not None:
                files += [
                    os.path.join(TRAINING_STATE_DIR, name)
                    for name in (DISCRIMINATOR_OPTIMIZER, DISCRIMINATOR_SCHEDULER)
                ]
        return files

    def _resolve_resume(self, resume: str | bool | None, run_dir: str) -> str | None:
        """The checkpoint folder to resume from, checked intact; `True`: the newest intact one in `run_dir`."""
        if resume is None or resume is False:
            return None
        required = self._checkpoint_files()
        if resume is True:
            checkpoint, skipped = newest_intact_checkpoint(run_dir, required)
            for path, problems in skipped:
                logger.warning(f"Skipping {path}, incomplete or damaged: {'; '.join(problems)}")
            if checkpoint is None:
                found = f"{len(skipped)} checkpoint(s), none intact" if skipped else "no checkpoint-N folder"
                raise CheckpointLoadError(
                    f"--resume_from_checkpoint True: nothing to resume from in {run_dir} ({found}). Start without "
                    "--resume_from_checkpoint, or name a checkpoint folder."
                )
            if skipped:
                logger.warning(f"Resuming from {checkpoint}, the newest intact checkpoint in {run_dir}")
            return checkpoint
        if not os.path.isfile(os.path.join(resume, TRAINING_STATE_DIR, TRAINING_MODEL_WEIGHTS)) and os.path.isfile(
            os.path.join(resume, "config.json")
        ):
            raise FileNotFoundError(
                f"{os.path.join(resume, TRAINING_STATE_DIR, TRAINING_MODEL_WEIGHTS)} is missing: {resume} is not a "
                "checkpoint written by VitsTrainer (to start from a model folder, pass it as --model_name_or_path "
                "instead of resuming from it)"
            )
        problems = verify_checkpoint(resume, required)
        if problems:
            intact, _ = newest_intact_checkpoint(os.path.dirname(os.path.normpath(resume)), required)
            hint = f" The newest intact checkpoint beside it is {intact}." if intact else ""
            raise CheckpointLoadError(
                f"Cannot resume from {resume}, it is incomplete or damaged: {'; '.join(problems)}.{hint}"
            )
        return resume

    def _save_checkpoint(self, model, trial) -> None:
        """Trainer's checkpoint (model folder, optimizer, scheduler, scaler, RNG, state) plus `training_state/`,
        written into `partial-checkpoint-N` and renamed to `checkpoint-N` once complete.

        Overridden rather than extended: `Trainer._save_checkpoint` writes into `checkpoint-N` in place (an
        interrupted save leaves a partial folder that resuming picks) and records the best checkpoint and rotates
        from that folder. The same `Trainer` helpers write the same files here; best-model tracking and rotation
        follow the rename.
        """
        if self.hp_search_backend is None and trial is None:
            self.store_flos()
        run_dir = self._get_output_dir(trial)
        checkpoint = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        staging = partial_path(checkpoint)
        try:
            self.save_model(staging, _internal_call=True)
            if (
                self.args.save_strategy in (SaveStrategy.STEPS, SaveStrategy.EPOCH, SaveStrategy.BEST)
                and self.state.best_global_step
            ):
                best = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.best_global_step}")
                if self.state.best_global_step == self.state.global_step or os.path.isdir(best):
                    self.state.best_model_checkpoint = best
            if not self.args.save_only_model:
                self._save_optimizer_and_scheduler(staging)
                self._save_scaler(staging)
                self._save_rng_state(staging)
            if self.args.should_save:
                self._save_trainer_state(staging)
                self._save_training_state(staging)
                for callback in self.callback_handler.callbacks:
                    if isinstance(callback, CheckpointAwareCallback):
                        callback.save_to_checkpoint(staging, checkpoint, self.args, self.state)
        except Exception as error:  # noqa: BLE001 - re-raised with what failed and what is left
            raise self._save_failure(error, staging, checkpoint, run_dir) from error
        # every process has written its files (the RNG states) before the folder moves
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            try:
                commit(staging, checkpoint)
            except OSError as error:
                raise self._save_failure(error, staging, checkpoint, run_dir) from error
        self.accelerator.wait_for_everyone()
        if not self.args.should_save and os.path.isdir(staging):
            # this process's output_dir is not the main process's (storage not shared between machines): its RNG
            # state goes to a checkpoint folder of its own, as Trainer would write it
            commit(staging, checkpoint)
        if self.args.push_to_hub:
            self._push_from_checkpoint(checkpoint)
        if self.args.should_save:
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )

    def _save_trainer_state(self, folder: str) -> None:
        """`trainer_state.json` with the stateful callbacks' state, as `Trainer._save_checkpoint` writes it."""
        for callback in [*self.callback_handler.callbacks, self.control]:
            if not isinstance(callback, ExportableState):
                continue
            name, state = callback.__class__.__name__, callback.state()
            if isinstance(self.state.stateful_callbacks[name], list):
                self.state.stateful_callbacks[name].append(state)
            else:
                self.state.stateful_callbacks[name] = state
        self.state.save_to_json(os.path.join(folder, TRAINER_STATE_FILE))

    def _save_training_state(self, checkpoint: str) -> None:
        """`training_state/`: the weights as trained, the discriminator's optimizer and schedule, the step plan."""
        folder = os.path.join(checkpoint, TRAINING_STATE_DIR)
        os.makedirs(folder, exist_ok=True)
        save_file(_contiguous(self.model.state_dict()), os.path.join(folder, TRAINING_MODEL_WEIGHTS))
        with open(os.path.join(folder, PLAN_FILE), "w") as handle:
            json.dump({"planned_max_steps": self._planned_max_steps}, handle)
        if self.discriminator is None:
            return
        save_file(_contiguous(self.discriminator.state_dict()), os.path.join(folder, DISCRIMINATOR_TRAINING_WEIGHTS))
        if self.args.save_only_model or self.discriminator_optimizer is None:
            return
        torch.save(self.discriminator_optimizer.state_dict(), os.path.join(folder, DISCRIMINATOR_OPTIMIZER))
        torch.save(self.discriminator_lr_scheduler.state_dict(), os.path.join(folder, DISCRIMINATOR_SCHEDULER))
        if self.discriminator_optimizer.scaler is not None:
            torch.save(self.discriminator_optimizer.scaler.state_dict(), os.path.join(folder, DISCRIMINATOR_SCALER))

    def _save_failure(self, error: BaseException, staging: str, checkpoint: str, run_dir: str) -> CheckpointSaveError:
        """The error of a failed save: what failed, and which checkpoint is the last complete one.

        The partial folder is removed first: it frees the space a full disk needs and can never be resumed from.
        """
        if self.args.should_save and os.path.isdir(staging):
            try:
                shutil.rmtree(staging)
            except OSError as cleanup_error:
                logger.warning(f"Could not remove the unfinished {staging}: {cleanup_error}")
        size = estimate_checkpoint_bytes(self.model, self.discriminator, self.args.save_only_model)["checkpoint"]
        last, _ = newest_intact_checkpoint(run_dir, self._checkpoint_files())
        if last is not None:
            last_words = (
                f"The last complete checkpoint is {last} (step {checkpoint_step(last)}): resume from it with "
                f"--resume_from_checkpoint {last} once the cause is fixed."
            )
        else:
            last_words = f"There is no complete checkpoint in {run_dir}."
        return CheckpointSaveError(
            f"Saving {checkpoint} at step {self.state.global_step} failed: {describe_save_failure(error, run_dir, size)}. "
            f"Nothing of it was kept. {last_words}"
        )

    def _load_training_weights(self, checkpoint: str) -> None:
        """The generator's and the discriminator's weights exactly as trained (strict)."""
        folder = os.path.join(checkpoint, TRAINING_STATE_DIR)
        path = os.path.join(folder, TRAINING_MODEL_WEIGHTS)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} is missing: {checkpoint} is not a checkpoint written by VitsTrainer (to start from a model "
                "folder, pass it as --model_name_or_path instead of resuming from it)"
            )
        self.model.load_state_dict(_load_weights(path), strict=True)
        if self.discriminator is not None:
            path = os.path.join(folder, DISCRIMINATOR_TRAINING_WEIGHTS)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path} is missing: was {checkpoint} trained with --discriminator none?")
            self.discriminator.load_state_dict(_load_weights(path), strict=True)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        self._load_training_weights(resume_from_checkpoint)
        # the checkpoint may live outside output_dir: callbacks that keep state in it read it from there
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, CheckpointAwareCallback):
                callback.resuming_from(resume_from_checkpoint)
        plan_path = os.path.join(resume_from_checkpoint, TRAINING_STATE_DIR, PLAN_FILE)
        if os.path.isfile(plan_path):
            with open(plan_path) as handle:
                self._planned_max_steps = json.load(handle)["planned_max_steps"]

    def _load_best_model(self) -> None:
        logger.info(f"Loading the best model from {self.state.best_model_checkpoint} (score {self.state.best_metric})")
        self._load_training_weights(self.state.best_model_checkpoint)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        """Trainer's optimizer and schedule, then the discriminator's; a file that fails to load is named."""
        try:
            super()._load_optimizer_and_scheduler(checkpoint)
        except (RuntimeError, OSError, EOFError, ValueError) as error:
            # torch.load's errors name no file
            names = f"{os.path.join(checkpoint, OPTIMIZER_FILE)} or {os.path.join(checkpoint, SCHEDULER_FILE)}"
            raise CheckpointLoadError(f"Cannot load {names}: {type(error).__name__}: {error}") from error
        if checkpoint is None or self.discriminator_optimizer is None:
            return
        folder = os.path.join(checkpoint, TRAINING_STATE_DIR)
        for name in (DISCRIMINATOR_OPTIMIZER, DISCRIMINATOR_SCHEDULER):
            if not os.path.isfile(os.path.join(folder, name)):
                raise FileNotFoundError(f"{os.path.join(folder, name)} is missing: cannot resume the discriminator")
        self.discriminator_optimizer.load_state_dict(_torch_load(os.path.join(folder, DISCRIMINATOR_OPTIMIZER)))
        self.discriminator_lr_scheduler.load_state_dict(_torch_load(os.path.join(folder, DISCRIMINATOR_SCHEDULER)))
        if self.discriminator_optimizer.scaler is not None:
            scaler_path = os.path.join(folder, DISCRIMINATOR_SCALER)
            if not os.path.isfile(scaler_path):
                raise FileNotFoundError(
                    f"{scaler_path} is missing: cannot resume the discriminator's fp16 gradient scaler (was "
                    f"{checkpoint} saved by a run without fp16?)"
                )
            self.discriminator_optimizer.scaler.load_state_dict(_torch_load(scaler_path))


def _load_weights(path: str) -> dict[str, torch.Tensor]:
    """`safetensors.torch.load_file` on the CPU; a damaged file is named (safetensors' errors name none)."""
    try:
        return load_file(path, device="cpu")
    except Exception as error:  # noqa: BLE001 - SafetensorError has no narrower public base; re-raised with the file
        raise CheckpointLoadError(f"Cannot load {path}: {type(error).__name__}: {error}") from error


def _torch_load(path: str):
    """`torch.load` of a state dict on the CPU; a damaged file is named (torch's errors name none)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError) as error:
        raise CheckpointLoadError(f"Cannot load {path}: {type(error).__name__}: {error}") from error


def _contiguous(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses non-contiguous and shared tensors: save independent contiguous copies
    return {name: tensor.detach().contiguous().clone().cpu() for name, tensor in state_dict.items()}
