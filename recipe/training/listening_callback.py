"""`ListeningCallback`: the listening metrics of each evaluation, scored on the amplitude monitor's synthesis.

It runs after `AmplitudeMonitorCallback` in the same evaluation and scores the sentences the monitor has just
synthesized (`ListeningScorer.figures`), so the voice is synthesized once per evaluation. The figures go into the
evaluation's metrics (so `--metric_for_best_model` can pick by them and the Trainer keeps that checkpoint),
`log_history` and one log line. Before the first step it scores the starting model on the same sentences: the
`listener` metric compares each evaluation's CER with the start's. The start's figures are written into each
checkpoint and read back on resume, so a resumed run ranks its checkpoints as the uninterrupted one did.

Under DDP only the main process synthesizes and scores; the figures are broadcast so that every rank's Trainer holds
the same metrics and picks the same best checkpoint.
"""

from __future__ import annotations

import logging

from recipe.training.amplitude_monitor import AmplitudeMonitorCallback
from recipe.training.amplitude_probe import synthesize_texts
from recipe.training.checkpoint_hooks import CheckpointAwareCallback
from recipe.training.listening import ListeningScorer, format_figures, shared_figures

logger = logging.getLogger(__name__)


class ListeningCallback(CheckpointAwareCallback):
    """Scores the monitor's sentences at each evaluation (`eval_cer`, `eval_similarity`, `eval_quality`,
    `eval_listener`, `eval_listening_seconds`).

    Args:
        scorer (`ListeningScorer`): what to score with (`recipe.training.listening_setup.build_listening`).
        monitor (`AmplitudeMonitorCallback`): the monitor whose synthesis is scored; it must come before this
            callback in the Trainer's callbacks.
        sampling_rate (`int`): the model's sampling rate.
    """

    def __init__(self, scorer: ListeningScorer, monitor: AmplitudeMonitorCallback, sampling_rate: int):
        self.scorer = scorer
        self.monitor = monitor
        self.sampling_rate = sampling_rate
        self.resume_checkpoint: str | None = None

    def resuming_from(self, checkpoint: str) -> None:
        self.resume_checkpoint = checkpoint

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step > 0 and self.resume_checkpoint and self.scorer.load_start(self.resume_checkpoint):
            logger.info("Listening metrics of the starting model, from %s: %s", self.resume_checkpoint,
                        format_figures(self.scorer.start))  # fmt: skip
            return control
        if state.global_step > 0 and state.is_world_process_zero:
            logger.warning(
                "Listening metrics: the checkpoint this run resumes from has no starting figures; the resumed weights "
                "(step %d) are the start that `listener` compares with", state.global_step,
            )  # fmt: skip
        waveforms = None
        if state.is_world_process_zero:
            probe = self.monitor.probe
            waveforms = synthesize_texts(model.vits, probe.tokenizer, probe.texts, probe.seed)
        self.scorer.set_start(self._figures(args, state, model, waveforms), state.global_step)
        return control

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        waveforms = None
        if state.is_world_process_zero:
            waveforms = self.monitor.last_waveforms
            if waveforms is None:
                raise RuntimeError("ListeningCallback must come after the AmplitudeMonitorCallback it scores")
        figures = self.scorer.with_listener(self._figures(args, state, model, waveforms))
        if metrics is not None:
            metrics.update(figures)
        AmplitudeMonitorCallback.add_to_log_history(state, figures)
        if state.is_world_process_zero:
            logger.info("Listening metrics at step %d: %s", state.global_step, format_figures(figures))
        return control

    def save_to_checkpoint(self, folder: str, checkpoint: str, args, state) -> None:
        if args.should_save:
            self.scorer.save_start(folder)

    def _figures(self, args, state, model, waveforms) -> dict[str, float]:
        """The scorer's figures of `waveforms` (main process), on every process."""
        num_speakers = int(getattr(model.vits.config, "num_speakers", 1) or 1)
        names = self.scorer.names(num_speakers)
        mine = self.scorer.figures(waveforms, self.sampling_rate, num_speakers) if state.is_world_process_zero else None
        return shared_figures(args, mine, names)
