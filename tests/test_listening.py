"""Listening metrics at evaluation: the monitor's sentences scored, the `listener` rule, the best checkpoint chosen
by them, their start kept across a resume, and a real run logging them."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
from test_run_finetune import _flags, tiny_files  # noqa: F401 (a fixture)
from trainer_helpers import tiny_trainer

from recipe.errors import ArgumentsError
from recipe.evaluation.speaker_similarity import similarity_available
from recipe.training.amplitude_monitor import AmplitudeMonitorCallback
from recipe.training.listening import DISQUALIFIED, START_FILE, ListeningScorer, listener_score
from recipe.training.listening_callback import ListeningCallback
from run_finetune import main, parse_arguments

SENTENCE = "roj baş"


class ScriptedListener:
    """A recognizer and a speaker encoder that hear what a script says, one row per scoring (the start first):
    (similarity to the reference, whether the sentence is understood). The encoder is called after the
    recognizer in a scoring, so it moves the script on."""

    def __init__(self, rows):
        self.rows, self.scored = rows, 0

    def _row(self):
        return self.rows[min(self.scored, len(self.rows) - 1)]

    def transcribe(self, waveform, rate):
        return SENTENCE if self._row()[1] else "x"

    def embed(self, waveforms, rate):
        similarity = self._row()[0]
        self.scored += 1
        return np.array([[similarity, math.sqrt(1 - similarity**2)]] * len(waveforms))


def scripted_run(tmp_path, tokenizer, config, rows, name="run", **overrides):
    listener = ScriptedListener(rows)
    scorer = ListeningScorer(
        [SENTENCE], listener.transcribe, listener.embed, references={None: np.array([1.0, 0.0])}, cer_margin=0.05
    )
    monitor = AmplitudeMonitorCallback(tokenizer, [SENTENCE], reference_rms=0.1, patience=0)
    settings = dict(
        max_steps=8, eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2,
        load_best_model_at_end=True, metric_for_best_model="listener", eval_asr_model="scripted-asr",
    )  # fmt: skip
    settings.update(overrides)
    trainer = tiny_trainer(
        config, str(tmp_path / name), tokenizer=tokenizer, callbacks=[monitor, ListeningCallback(scorer, monitor, 16000)],
        **settings,
    )  # fmt: skip
    return trainer, listener


def test_listener_is_the_likeness_among_the_intelligible_and_ranks_the_rest_below():
    assert listener_score(0.8, cer=0.10, start_cer=0.06, margin=0.05) == 0.8
    assert listener_score(0.99, cer=0.20, start_cer=0.06, margin=0.05) == pytest.approx(DISQUALIFIED - 0.09)
    assert listener_score(0.1, cer=0.12, start_cer=0.06, margin=0.05) > listener_score(0.9, 0.5, 0.06, 0.05)


def test_the_listener_rule_picks_a_checkpoint_that_the_lowest_eval_mel_would_not(tmp_path, tokenizer, model_config):
    # start, then steps 2, 4, 6, 8: step 4 sounds most alike but is not understood; step 2 is the best of the rest
    rows = [(0.5, True), (0.8, True), (0.95, False), (0.6, True), (0.7, True)]
    trainer, listener = scripted_run(tmp_path, tokenizer, model_config, rows)
    trainer.train()
    evaluations = [entry for entry in trainer.state.log_history if "eval_listener" in entry]
    assert [entry["step"] for entry in evaluations] == [2, 4, 6, 8]
    assert [round(entry["eval_similarity"], 6) for entry in evaluations] == [0.8, 0.95, 0.6, 0.7]
    assert [entry["eval_cer"] for entry in evaluations] == [0.0, 1.0, 0.0, 0.0]
    assert evaluations[1]["eval_listener"] < DISQUALIFIED
    assert all(entry["eval_listening_seconds"] >= 0 for entry in evaluations)
    assert trainer.state.best_model_checkpoint.endswith("checkpoint-2")
    lowest_mel = min(evaluations, key=lambda entry: entry["eval_mel"])["step"]
    assert lowest_mel != 2, "the test needs a run whose lowest eval_mel is elsewhere"
    # every checkpoint carries the starting figures a resumed run ranks against
    saved = json.loads((tmp_path / "run" / "checkpoint-4" / START_FILE).read_text())
    assert saved == {"eval_cer": 0.0, "eval_similarity": pytest.approx(0.5), "step": 0}


def test_a_resumed_run_ranks_against_the_start_it_saved_not_its_resumed_weights(tmp_path, tokenizer, model_config):
    first, _ = scripted_run(tmp_path, tokenizer, model_config, [(0.5, True), (0.8, True), (0.6, True)], max_steps=4)
    first.train()
    # resumed from step 4, where the recognizer no longer understands: were the resumed weights the start, every
    # later evaluation would be within the margin of a CER of 1
    resumed, listener = scripted_run(
        tmp_path, tokenizer, model_config, [(0.9, False)], name="resumed", max_steps=6
    )  # fmt: skip
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-4"))
    assert listener.scored == 1, "the start is read from the checkpoint, not scored again"
    last = [entry for entry in resumed.state.log_history if "eval_listener" in entry][-1]
    assert last["step"] == 6 and last["eval_listener"] < DISQUALIFIED


def test_the_direction_of_each_listening_metric_and_what_it_needs(tmp_path):
    base = ["--output_dir", str(tmp_path / "o")]
    for metric, greater in (("cer", False), ("eval_similarity", True), ("quality", True), ("eval_mel", False)):
        _, _, args = parse_arguments([*base, "--metric_for_best_model", metric, "--eval_asr_model", "some/asr"])
        assert args.greater_is_better is greater, metric
    _, _, args = parse_arguments([*base, "--metric_for_best_model", "listener", "--eval_asr_model", "some/asr"])
    assert args.greater_is_better is True
    with pytest.raises(ArgumentsError, match="needs a speech recognizer: give --eval_asr_model"):
        parse_arguments([*base, "--metric_for_best_model", "listener"])
    with pytest.raises(ArgumentsError, match="is better when lower"):
        parse_arguments([*base, "--metric_for_best_model", "cer", "--eval_asr_model", "a/b", "--greater_is_better", "1"])
    with pytest.raises(ArgumentsError, match="no such folder"):
        parse_arguments([*base, "--eval_asr_model", str(tmp_path / "missing" / "whisper")])


@pytest.mark.skipif(not similarity_available(), reason="the similarity extra is not installed")
def test_a_run_logs_the_likeness_at_each_evaluation_and_picks_its_best_by_it(tiny_files, tmp_path, caplog):  # noqa: F811
    config, discriminator = tiny_files
    flags = _flags(
        config, discriminator, tmp_path / "out", tmp_path / "cache", "--max_steps", "4", "--eval_strategy", "steps",
        "--eval_steps", "2", "--save_steps", "2", "--load_best_model_at_end", "true", "--amplitude_patience", "0",
        "--metric_for_best_model", "similarity",
    )  # fmt: skip
    with caplog.at_level(logging.INFO):
        metrics = main(flags)
    assert 0 < metrics["eval_similarity"] <= 1
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    scored = {entry["step"]: entry["eval_similarity"] for entry in state["log_history"] if "eval_similarity" in entry}
    assert {2, 4} <= set(scored)
    best = max((2, 4), key=lambda step: scored[step])
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{best}")
    lines = [record.getMessage() for record in caplog.records]
    assert any(line.startswith("Listening metrics at each evaluation: ") and "eval_cer needs --eval_asr_model" in line
               for line in lines)  # fmt: skip
    assert any(line.startswith("Listening metrics of the starting model: ") for line in lines)
    assert any(line.startswith("Listening metrics at step 4: ") and "similarity" in line for line in lines)
