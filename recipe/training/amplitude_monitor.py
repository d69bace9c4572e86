"""The amplitude monitor: stops a run whose synthesized voice fades to silence (or blows up).

`AmplitudeMonitorCallback` wires an `AmplitudeProbe` (what the voice sounds like now) and an `AmplitudeHistory`
(the CRITICAL streak, the healthy checkpoints, `amplitude_status.json`) to the Trainer's events: it measures at each
evaluation, reports the figures in the metrics and the log, writes its status into each checkpoint, reads it back
on resume, and raises `AmplitudeCollapseError` after `patience` CRITICAL evaluations in a row. Under DDP only the
main process synthesizes and writes; its verdict is broadcast so that every rank stops together.
"""

from __future__ import annotations

import logging
import os

from recipe.evaluation.metrics import DEFAULT_CRITICAL_RATIO, DEFAULT_WARNING_RATIO
from recipe.training.amplitude_history import AMPLITUDE_STATUS_FILE, AmplitudeHistory
from recipe.training.amplitude_probe import AmplitudeProbe
from recipe.training.checkpoint_hooks import CheckpointAwareCallback
from recipe.training.distributed import broadcast_from_main

logger = logging.getLogger(__name__)

# CRITICAL evaluations in a row that stop the run: the monitor's default and `--amplitude_patience`'s. The two
# thresholds' defaults are `recipe.evaluation.metrics`', beside the function that applies them.
DEFAULT_PATIENCE = 3
# Numeric codes of the statuses, for `log_history` and TensorBoard scalars.
STATUS_CODES = {"OK": 0, "WARNING": 1, "CRITICAL": 2}
STATUS_NAMES = {code: name for name, code in STATUS_CODES.items()}


class AmplitudeCollapseError(RuntimeError):
    """The synthesized speech stayed CRITICAL (far too quiet or too loud) for `patience` evaluations in a row."""


class AmplitudeMonitorCallback(CheckpointAwareCallback):
    """Stops a run whose synthesized voice fades to silence (or blows up), naming the last healthy checkpoint.

    At each evaluation the main process synthesizes `texts` with `model.vits` through the inference path and
    compares their mean RMS with `reference_rms` (`recipe.evaluation.metrics.amplitude_status`): OK within
    `warning_ratio` of the reference, WARNING up to `critical_ratio`, CRITICAL beyond. The result goes to
        - the log (a line per evaluation),
        - the evaluation's metrics and `state.log_history` as `eval_amplitude_rms`, `eval_amplitude_peak`,
          `eval_amplitude_ratio` (RMS / reference), `eval_amplitude_reference_rms`, `eval_amplitude_status`
          (0 OK, 1 WARNING, 2 CRITICAL),
        - `amplitude_status.json` in each checkpoint saved after it.
    After `patience` CRITICAL evaluations in a row it raises `AmplitudeCollapseError` on every rank, unless the run
    is at its last step or over: then it logs the CRITICAL status at CRITICAL level, and the run ends with its model
    and results written. Each trained step counts once: the final evaluation of a step already measured reports
    its figures without adding to the streak.

    Args:
        tokenizer (`VitsTokenizer`): the model's tokenizer; `texts` are passed to it as they are.
        texts (`list[str]`): the fixed sentences (normalized like the training texts).
        reference_rms (`float`): RMS of the eval recordings (`reference_rms_from_dataset`).
        warning_ratio (`float`, *optional*, defaults to 0.3): relative RMS deviation above which it is WARNING.
        critical_ratio (`float`, *optional*, defaults to 0.6): relative RMS deviation above which it is CRITICAL.
        patience (`int`, *optional*, defaults to 3): CRITICAL evaluations in a row that stop the run; 0 never stops.
        sampling_rate (`int`, *optional*, defaults to 16000): the model's sampling rate (for durations and silence).
        seed (`int`, *optional*, defaults to 0): seed of the sampled noise, the same at every evaluation so that
            the figures move only with the weights.
    """

    def __init__(
        self,
        tokenizer,
        texts: list[str],
        reference_rms: float,
        warning_ratio: float = DEFAULT_WARNING_RATIO,
        critical_ratio: float = DEFAULT_CRITICAL_RATIO,
        patience: int = DEFAULT_PATIENCE,
        sampling_rate: int = 16000,
        seed: int = 0,
    ):
        self.probe = AmplitudeProbe(
            tokenizer, texts, reference_rms, warning_ratio, critical_ratio, sampling_rate, seed
        )
        if patience < 0:
            raise ValueError(f"patience must be >= 0 (0 never stops), got {patience}")
        self.patience = patience
        # Run state, saved in each checkpoint's amplitude_status.json and restored on resume.
        self.run_history = AmplitudeHistory()
        # the checkpoint a resumed run restarts from, as the trainer names it (`resuming_from`)
        self.resume_checkpoint: str | None = None
        # set at the end of training: evaluations after it (the final one) report but never stop anything
        self.training_ended = False
        # the step whose checkpoint `save_to_checkpoint` wrote (VitsTrainer, before the folder's rename)
        self._saved_step: int | None = None
        # the last evaluation's synthesized sentences (main process), which `ListeningCallback` scores
        self.last_waveforms: list | None = None

    @property
    def critical_streak(self) -> int:
        """CRITICAL evaluations in a row, up to the last one."""
        return self.run_history.critical_streak

    @property
    def history(self) -> list[dict]:
        """One entry per evaluated step (`step`, `status`, `rms`, `peak`, `ratio`, `reference_rms`)."""
        return self.run_history.entries

    @property
    def last_result(self) -> dict | None:
        """The last evaluation's entry, with its per-sentence figures (None before the first evaluation)."""
        return self.run_history.last_result

    def last_healthy_checkpoint(self) -> dict | None:
        """The newest checkpoint saved with an OK / WARNING status that is still on disk (or None)."""
        return self.run_history.last_healthy_checkpoint()

    # -- callback events ------------------------------------------------------------------------------------------

    def resuming_from(self, checkpoint: str) -> None:
        """Called by `VitsTrainer` before `on_train_begin` when it resumes from `checkpoint` (any folder)."""
        self.resume_checkpoint = checkpoint

    def on_train_begin(self, args, state, control, **kwargs):
        self.training_ended = False
        # On resume, pick up the streak and the healthy checkpoints from the checkpoint the run restarts from.
        if state.global_step == 0:
            return
        if self.resume_checkpoint is None:
            # a trainer other than VitsTrainer does not say which checkpoint it resumed from; guessing
            # output_dir/checkpoint-N could read another run's history
            logger.warning(
                f"Amplitude monitor: training resumes at step {state.global_step} but the trainer did not name the "
                "checkpoint (VitsTrainer does; else call resuming_from(checkpoint) before training): starting with "
                "an empty history"
            )
            return
        path = os.path.join(self.resume_checkpoint, AMPLITUDE_STATUS_FILE)
        if not os.path.isfile(path):
            logger.info(f"Amplitude monitor: no {path}; starting with an empty history at step {state.global_step}")
            return
        self.run_history = AmplitudeHistory.load(self.resume_checkpoint)
        logger.info(f"Amplitude monitor: resumed from {path} (CRITICAL streak {self.critical_streak})")

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        """Measures the voice; each trained step counts once towards the CRITICAL streak.

        An evaluation of a step already measured (the final evaluation after training, of the last step's or the
        best checkpoint's weights) reports its figures but leaves the history and the streak alone. Evaluations at
        the last step or after training never raise: the run is over, and its results must be written; a CRITICAL
        status is logged at CRITICAL level instead.
        """
        if model is None:
            raise ValueError("AmplitudeMonitorCallback needs the model passed to on_evaluate (a VitsForTraining)")
        result = self.probe.measure(model.vits) if state.is_world_process_zero else None
        # the sentences as synthesized, for the listening metrics (None on the other ranks); kept out of the history
        self.last_waveforms = result.pop("waveforms") if result is not None else None
        result = self._shared_verdict(args, result)
        reference_rms = self.probe.reference_rms
        ratio = result["rms"] / reference_rms
        entry = {
            "step": state.global_step,
            "status": result["status"],
            "rms": result["rms"],
            "peak": result["peak"],
            "ratio": ratio,
            "reference_rms": reference_rms,
            "sentences": result["sentences"],
        }
        run_over = self.training_ended or (state.max_steps > 0 and state.global_step >= state.max_steps)
        already_counted = self.run_history.add_evaluation(entry)

        figures = {
            "eval_amplitude_rms": entry["rms"],
            "eval_amplitude_peak": entry["peak"],
            "eval_amplitude_ratio": ratio,
            "eval_amplitude_reference_rms": reference_rms,
            "eval_amplitude_status": STATUS_CODES[entry["status"]],
        }
        if metrics is not None:
            metrics.update(figures)
        self.add_to_log_history(state, figures)

        line = (
            f"Amplitude monitor at step {state.global_step}: {entry['status']} - synthesized RMS {entry['rms']:.4f} "
            f"({ratio:.0%} of the eval recordings' {reference_rms:.4f}), peak {entry['peak']:.3f}"
        )
        if already_counted:
            line += " (final evaluation: this step is already counted)"
        elif entry["status"] == "CRITICAL":
            line += f"; CRITICAL {self.critical_streak} time(s) in a row"
            if self.patience and not run_over:
                line += f", the run stops at {self.patience}"
        if state.is_world_process_zero:
            (logger.info if entry["status"] == "OK" else logger.warning)(line)

        if entry["status"] == "CRITICAL" and run_over:
            # once per step and status: the final evaluation of a step already logged CRITICAL does not repeat it
            repeated = already_counted and self.history[-1]["status"] == "CRITICAL"
            if state.is_world_process_zero and not repeated:
                logger.critical(self._critical_at_end_message(entry))
        elif self.patience and self.critical_streak >= self.patience and not already_counted:
            control.should_training_stop = True
            raise AmplitudeCollapseError(self._collapse_message())
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.training_ended = True
        return control

    def save_to_checkpoint(self, folder: str, checkpoint: str, args, state) -> None:
        """Writes `amplitude_status.json` into `folder`, the checkpoint being written that becomes `checkpoint`.

        Called by `VitsTrainer` before it renames the folder into place, so that the status is part of the
        complete checkpoint; `on_save` does the same for other trainers, after their save.
        """
        self._record_checkpoint(checkpoint, state.global_step)
        if args.should_save:
            self._write_status(folder)

    def on_save(self, args, state, control, **kwargs):
        if self._saved_step == state.global_step:
            return control  # written into the checkpoint before it was renamed into place
        checkpoint = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        self._record_checkpoint(checkpoint, state.global_step)
        if args.should_save and os.path.isdir(checkpoint):
            self._write_status(checkpoint)
        return control

    # -- helpers --------------------------------------------------------------------------------------------------

    def _shared_verdict(self, args, result: dict | None) -> dict:
        """The main process's status, RMS and peak on every rank, so that all take the same decision.

        `result` is the main process's measure, None on the other ranks (which synthesize nothing and get no
        per-sentence figures).
        """
        placeholders = [0.0, 0.0, 0.0]
        mine = placeholders if result is None else [STATUS_CODES[result["status"]], result["rms"], result["peak"]]
        code, rms, peak = broadcast_from_main(mine, args.device)
        if result is not None:
            return result
        return {"status": STATUS_NAMES[int(code)], "rms": rms, "peak": peak, "sentences": []}

    def _record_checkpoint(self, checkpoint: str, step: int) -> None:
        self.run_history.add_checkpoint(checkpoint, step)
        self._saved_step = step

    def _write_status(self, folder: str) -> None:
        settings = {
            "reference_rms": self.probe.reference_rms,
            "warning_ratio": self.probe.warning_ratio,
            "critical_ratio": self.probe.critical_ratio,
            "patience": self.patience,
        }
        self.run_history.save(folder, settings)

    @staticmethod
    def add_to_log_history(state, figures: dict):
        # The Trainer logged the eval metrics just before `on_evaluate`: add the figures to that entry.
        last = state.log_history[-1] if state.log_history else None
        if last is not None and last.get("step") == state.global_step and any(k.startswith("eval_") for k in last):
            last.update(figures)
        else:
            state.log_history.append({**figures, "step": state.global_step})

    def _critical_at_end_message(self, entry: dict) -> str:
        healthy = self.last_healthy_checkpoint()
        where = (
            f"The last healthy checkpoint is {healthy['checkpoint']} (status {healthy['status']} at step "
            f"{healthy['step']})."
            if healthy is not None
            else "No checkpoint with a healthy status (OK or WARNING) is on disk."
        )
        return (
            f"The trained model's synthesized speech is CRITICAL at the end of the run (step {entry['step']}): RMS "
            f"{entry['rms']:.4f}, {entry['ratio']:.0%} of the eval recordings' {self.probe.reference_rms:.4f}, "
            f"CRITICAL {self.critical_streak} evaluation(s) in a row. The model is saved and its results written, "
            f"but listen before using it: it may be fading to silence (or clipping). {where}"
        )

    def _collapse_message(self) -> str:
        figures = "; ".join(
            f"step {h['step']}: RMS {h['rms']:.4f} ({h['ratio']:.0%} of reference), peak {h['peak']:.3f}"
            for h in self.run_history.critical_entries()
        )
        healthy = self.last_healthy_checkpoint()
        saved_healthy = self.run_history.healthy_checkpoints
        if healthy is not None:
            where = (
                f"The last healthy checkpoint is {healthy['checkpoint']} (status {healthy['status']} at step "
                f"{healthy['step']}): resume from it (--resume_from_checkpoint) with a lower learning rate, or "
                "turn on --amplitude_loss_weight / --normalized_mel_loss / --l2sp_weight."
            )
        elif saved_healthy:
            where = (
                f"The checkpoints saved with a healthy status ({', '.join(r['checkpoint'] for r in saved_healthy)}) "
                "are no longer on disk (save_total_limit?); no healthy checkpoint is left."
            )
        else:
            where = "No checkpoint with a healthy status (OK or WARNING) was saved in this run."
        return (
            f"The synthesized speech was CRITICAL at {self.critical_streak} evaluations in a row (patience "
            f"{self.patience}): its RMS is more than {self.probe.critical_ratio:.0%} off the eval recordings' RMS "
            f"{self.probe.reference_rms:.4f} - {figures}. The model is fading to silence (or clipping); training "
            "stopped. " + where
        )
