"""`VitsTrainer`: the `transformers.Trainer` that fine-tunes a `VitsForTraining` with its discriminator.

What it changes in `Trainer`, and why (each hook delegates to the part named in brackets):
    - `training_step`: the generator's forward, one discriminator pass over the real and generated audio that both
      objectives share, the discriminator's backward (into its parameters only), the generator's (into the
      generator's only), then the discriminator's step, with its own AdamW optimizer, schedule and fp16 scaler
      (`discriminator_update`); the same gradients as VITS's two passes (scored again on detached audio), one
      discriminator forward fewer. fp16 runs on a CPU too, and a step its scalers skip does not advance a schedule
      (`fp16`).
    - `compute_loss` / `prediction_step` / `evaluation_loop` / `log`: the loss components (`mel`, `kl`, `duration`,
      `generator`, `feature_matching`, `amplitude`, `l2sp`, `discriminator`, ...) are summed on the device and
      averaged over the logging window (training) or the eval split (`eval_` prefix), reduced over processes once per
      log: the metrics add no host sync per step (`loss_window`). (`--target_hours` under DDP does: its deadline
      guard broadcasts the main process's stop decision at every step, one scalar, so that all processes stop at the
      same step.)
    - Checkpoints (`checkpoint_layout`): `checkpoint-N` is a `VitsModel` folder (`save_for_inference`: training-time
      weight norm removed) with the tokenizer and the discriminator, so `VitsModel.from_pretrained` and
      `pipeline("text-to-speech")` load it. Its `training_state/` subfolder holds what exact resume needs and a plain
      model folder cannot: the training module's weights as trained (weight-norm parametrized), the
      discriminator's, its optimizer, schedule and gradient scaler, and the step plan of `--target_hours`. Resume and
      `load_best_model_at_end` read it. On resume, callbacks that subclass `CheckpointAwareCallback`
      (`checkpoint_hooks`; `AmplitudeMonitorCallback`) are told which checkpoint the run restarts from
      (`resuming_from`), before `on_train_begin`.
    - `create_optimizer`: Trainer's AdamW, with the parts of `--part_learning_rates` in groups of their own
      (`part_learning_rates.PartLearningRatesMixin`).
    - `create_scheduler`: also creates the discriminator's optimizer and schedule (the only point where the number of
      steps is known and the generator is prepared), and follows the `--target_hours` plan (`replan`, `step_plan`).
    - `_save_checkpoint`: the same files as `Trainer`'s, written into `partial-checkpoint-N` and renamed to
      `checkpoint-N` once complete (`checkpoints`): a checkpoint is all there or not there. `CheckpointAwareCallback`
      callbacks write their files into it before the rename (`save_to_checkpoint`).
    - `train`: checks the output folder (writable, room for a few checkpoints) before the first step; resumes only
      from an intact checkpoint (`--resume_from_checkpoint True`: the newest intact one, skipping damaged ones with
      a warning each); on Ctrl-C / SIGTERM finishes the step, saves and raises `TrainingInterrupted` (`signals`);
      turns a broken connection between processes into an error that says so (`peer_failure`); logs the checkpoint
      it resumes from and its step (`resume_log`).
    - Printed logs: each log once, as `TrainingLogLineCallback`'s line (transformers' printed dicts removed), the
      progress bar on a terminal only (`callbacks.show_progress_as_log_lines`).
    - The train sampler: with `--speaker_sampling balanced | temperature:T` on several speakers, a draw that weighs
      them, deterministic from the seed and the epoch (`speaker_sampling`); `proportional` keeps Trainer's own.
    - Batches carry their clips' paths (`VitsDataCollator`'s `paths`): a non-finite loss is reported with the clips
      of the batch it came from, without a host sync per step (`non_finite`).

The parts are modules of `recipe.training`.
"""

from __future__ import annotations

import logging
import os

import torch
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, SaveStrategy, rotate_checkpoints

from recipe.model.losses import L2SPReference, LossWeights, generator_objective
from recipe.training import checkpoint_layout, resume_log
from recipe.training.callbacks import show_progress_as_log_lines
from recipe.training.checkpoint_hooks import CheckpointAwareCallback
from recipe.training.checkpoints import commit, estimate_checkpoint_bytes, partial_path
from recipe.training.discriminator_update import DiscriminatorUpdate
from recipe.training.fp16 import SkippedStepsFromScale, enable_fp16_on_cpu
from recipe.training.loss_window import LossWindow
from recipe.training.non_finite import NonFiniteTracker
from recipe.training.part_learning_rates import PartLearningRatesMixin
from recipe.training.peer_failure import peer_failure_error
from recipe.training.signals import StopOnSignalCallback, StopRequest, TrainingInterrupted
from recipe.training.speaker_sampling import SpeakerSamplingMixin
from recipe.training.step_plan import StepPlan, bound_max_steps, schedule_at, time_budget

logger = logging.getLogger(__name__)


class VitsTrainer(PartLearningRatesMixin, SpeakerSamplingMixin, Trainer):
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
        self.discriminator_update = DiscriminatorUpdate(discriminator, args) if discriminator is not None else None
        self.loss_windows = {"train": LossWindow(), "eval": LossWindow()}
        self.non_finite = NonFiniteTracker()
        self.step_plan = StepPlan()
        cap = bound_max_steps(args)  # the user's own --max_steps, which the plan never exceeds
        super().__init__(model=model, args=args, **kwargs)
        enable_fp16_on_cpu(self.accelerator)  # before the model and optimizers are prepared
        self.add_callback(SkippedStepsFromScale())
        if discriminator is not None:
            discriminator.to(self.args.device)
        self.budget = time_budget(self.args, self.eval_dataset, self.step_plan, self.replan, cap, budget_started_at)
        if self.budget is not None:
            self.add_callback(self.budget)
        self.stop_request = StopRequest()
        self.add_callback(StopOnSignalCallback(self.stop_request))
        show_progress_as_log_lines(self)  # each log printed once, as the recipe's line; a bar only on a terminal

    @property
    def discriminator_optimizer(self):
        """The discriminator's optimizer as the accelerator prepared it; `None` before `create_scheduler`."""
        return self.discriminator_update.optimizer if self.discriminator_update is not None else None

    # -- training -------------------------------------------------------------------------------------------------

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The generator's loss (`generator_objective`); its components are recorded for logging. With
        `return_outputs`, also `(outputs, discriminated)`: the training forward's output and the discriminator's pass
        over it (`None` without a discriminator), which the discriminator's objective shares."""
        outputs = model(**inputs)
        discriminated = None
        if self.discriminator is not None:
            discriminated = self.discriminator_update.discriminate(self.accelerator, outputs, training=model.training)
        # autocast by hand, as accelerate only adds it to the forward of the modules it prepared
        with self.accelerator.autocast():
            loss, components = generator_objective(
                outputs,
                self.loss_weights,
                discriminated,
                l2sp=self.l2sp,
                model=self.model.vits if self.l2sp is not None else None,
            )
        self.loss_windows["train" if model.training else "eval"].record(components)
        return (loss, (outputs, discriminated)) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        """The generator's forward and one discriminator pass; the discriminator's backward, the generator's, then
        the discriminator's step (the generator's is Trainer's). Each backward reaches only its own network."""
        model.train()  # evaluation and the callbacks' synthesis put it in eval mode
        paths = inputs.pop("paths", None)
        inputs = self._prepare_inputs(inputs)
        with self.non_finite.naming_broken_weights(model, self.state.global_step, self._where_to_resume):
            with self.compute_loss_context_manager():
                loss, (_, discriminated) = self.compute_loss(model, inputs, return_outputs=True)
        # kept on the device: read at the next log (or failure), so naming the clips adds no sync per step
        self.non_finite.track(self.state.global_step + 1, paths, loss)
        # a per-batch mean: scale it for gradient accumulation as Trainer does
        accumulation = self.current_gradient_accumulation_steps
        loss = loss / accumulation
        if discriminated is None:
            self.accelerator.backward(loss)
            return loss.detach()
        # the discriminator's backward first: it keeps the shared pass's graph, which the generator's then frees
        self.loss_windows["train"].record(self.discriminator_update.backward(discriminated, accumulation))
        self.accelerator.backward(
            loss, inputs=[parameter for parameter in model.parameters() if parameter.requires_grad]
        )
        self.discriminator_update.step(self.accelerator)
        return loss.detach()

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """The generator's schedule, then the discriminator's optimizer and schedule, for the planned steps."""
        if self.step_plan.max_steps is not None:
            # a resumed --target_hours run keeps the plan it was started with
            num_training_steps = self.step_plan.max_steps
            self.state.max_steps = num_training_steps
        scheduler = super().create_scheduler(num_training_steps, optimizer)
        if self.discriminator is not None and self.discriminator_optimizer is None:
            self.discriminator_update.prepare(self.accelerator, num_training_steps)
        return scheduler

    def replan(self, max_steps: int) -> None:
        """Train for `max_steps` steps in all: both learning-rate schedules are re-planned for that many steps."""
        self.step_plan.max_steps = max_steps
        self.state.max_steps = max_steps
        step = self.state.global_step
        self.lr_scheduler = schedule_at(self.args, self.optimizer, max_steps, step)
        self.callback_handler.lr_scheduler = self.lr_scheduler
        if self.discriminator_optimizer is not None:
            self.discriminator_update.replan(max_steps, step)

    # -- evaluation and logs --------------------------------------------------------------------------------------

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """The training losses on an eval batch (no gradient); the discriminator's loss too."""
        inputs.pop("paths", None)  # clip names, for training-time reports only
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss, (_, discriminated) = self.compute_loss(model, inputs, return_outputs=True)
            if discriminated is not None:
                self.loss_windows["eval"].record(self.discriminator_update.evaluate(discriminated))
        return loss.detach(), None, None

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        """Trainer's loop, then the components averaged over the split (`eval_mel`, ...) added to its metrics."""
        self.loss_windows["eval"].reset()
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        metrics = self.loss_windows["eval"].reduce(self.accelerator)
        output.metrics.update({f"{metric_key_prefix}_{name}": value for name, value in metrics.items()})
        return output

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the training window's loss components to a training log (the one with `loss`)."""
        if "loss" in logs:
            logs.update(self.loss_windows["train"].reduce(self.accelerator))
            self.non_finite.check_log(logs, self.state.global_step)
        super().log(logs, start_time)

    # -- training loop --------------------------------------------------------------------------------------------

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
        resume = resume_log.resolve_resume(resume_from_checkpoint, run_dir, self._checkpoint_files())
        if self.args.should_save:
            checkpoint_layout.check_output_folder(run_dir, self.model, self.discriminator, self.args)
        with self.stop_request.listening():
            try:
                output = super().train(resume_from_checkpoint=resume, trial=trial, **kwargs)
            except RuntimeError as error:
                peer_failure = peer_failure_error(error, self.args, self.state.global_step, self._where_to_resume)
                if peer_failure is not None:
                    raise peer_failure from error
                raise
        if self.stop_request.requested:
            checkpoint = checkpoint_layout.checkpoint_saved_at(
                run_dir, self.state.global_step, self._checkpoint_files()
            )
            raise TrainingInterrupted(self.stop_request.signum, self.state.global_step, checkpoint)
        return output

    def _checkpoint_files(self) -> list[str]:
        """The files of a checkpoint that resuming this trainer loads (relative paths)."""
        return checkpoint_layout.checkpoint_files(self.discriminator is not None, not self.args.save_only_model)

    def _where_to_resume(self) -> str:
        return checkpoint_layout.where_to_resume(self.args.output_dir, self._checkpoint_files())

    # -- saving ---------------------------------------------------------------------------------------------------

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """A folder `VitsModel.from_pretrained` and `pipeline("text-to-speech")` load, with tokenizer and
        discriminator (`checkpoint_layout.save_model_folder`)."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if self.args.should_save:
            checkpoint_layout.save_model_folder(
                output_dir, self.model.vits, self.processing_class, self.discriminator, self.args
            )

    # `_save_checkpoint` is a near copy of `Trainer._save_checkpoint` of this transformers version, whose dedented
    # source has this sha256: tests/test_trainer_drift.py fails when the installed transformers' method changes
    SAVE_CHECKPOINT_FOLLOWS_TRANSFORMERS = "5.24.0"
    SAVE_CHECKPOINT_FOLLOWS_SHA256 = "4638fc7aeef978e1b9e6ed7c6ba9a120e1370a56bcea2e26cdaa597d2d41fc05"

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
                checkpoint_layout.save_trainer_state(
                    staging, self.state, [*self.callback_handler.callbacks, self.control]
                )
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

    def _save_training_state(self, checkpoint: str) -> None:
        """`training_state/`: the weights as trained, the step plan, the discriminator's optimizer and schedule."""
        checkpoint_layout.save_training_weights(checkpoint, self.model, self.discriminator)
        self.step_plan.save(checkpoint)
        if not self.args.save_only_model and self.discriminator_optimizer is not None:
            self.discriminator_update.save(checkpoint)

    def _save_failure(self, error: BaseException, staging: str, checkpoint: str, run_dir: str):
        """The `CheckpointSaveError` of a failed save (`checkpoint_layout.save_failure`)."""
        size = estimate_checkpoint_bytes(self.model, self.discriminator, self.args.save_only_model)["checkpoint"]
        step, required = self.state.global_step, self._checkpoint_files()
        return checkpoint_layout.save_failure(
            error, staging, checkpoint, run_dir, step, required, size, remove_staging=self.args.should_save
        )

    # -- loading --------------------------------------------------------------------------------------------------

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        checkpoint_layout.load_training_weights(resume_from_checkpoint, self.model, self.discriminator)
        # the checkpoint may live outside output_dir: callbacks that keep state in it read it from there
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, CheckpointAwareCallback):
                callback.resuming_from(resume_from_checkpoint)
        self.step_plan.load(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        logger.info(f"Loading the best model from {self.state.best_model_checkpoint} (score {self.state.best_metric})")
        checkpoint_layout.load_training_weights(self.state.best_model_checkpoint, self.model, self.discriminator)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        """Trainer's optimizer and schedule, then the discriminator's; a file that fails to load is named."""
        with checkpoint_layout.naming_trainer_files(checkpoint):
            super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None and self.discriminator_optimizer is not None:
            self.discriminator_update.load(checkpoint)
