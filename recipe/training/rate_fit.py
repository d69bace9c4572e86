"""`--fit_speaking_rate`: after training, the model's `speaking_rate` (its length scale) fitted to the recordings.

    figures = fit_speaking_rate(trainer, train_split, tokenizer)   # {} without --fit_speaking_rate

The texts of the training clips (at most `MAX_FIT_CLIPS`) are synthesized by the trained model, through the
inference path and its sampled durations (the seed of the run), and each clip's speaking rate is measured as
`recipe.compare` measures it (`recipe.evaluation.metrics.speaking_rate`: letters and digits per second of speech,
leading and trailing silence cut), beside the rate of its own recording. The median of the per-sentence ratios
recorded / synthesized scales `config.speaking_rate`, which `VitsModel` divides every predicted duration by
(`length_scale = 1 / speaking_rate`): the saved folder then speaks at the data's rate in `pipeline("text-to-speech")`,
and the exports carry it as their length scale. A second pass measures the rate it gives (the durations are rounded
up to whole frames, so the scale is not exactly proportional).

The durations the predictor learned per sound stay as they are: only their overall pace moves. It is the floor of
what a run can do for the rhythm; with a duration predictor that trains (`--freeze_duration_predictor false`) the
fit corrects what it did not learn. The figures go to `train_results.json` as `rate_fit_*`.
"""

from __future__ import annotations

import logging

import numpy as np

from recipe.evaluation.metrics import speaking_rate
from recipe.training.amplitude_probe import preserved_rng_state
from recipe.voices.synthesis import synthesize

logger = logging.getLogger(__name__)

# Training clips synthesized for the fit: a one-minute voice has about 15, a large set is sampled by its first ones
MAX_FIT_CLIPS = 50


def _rates(vits, tokenizer, rows: list[dict], sampling_rate: int, seed: int) -> list[float | None]:
    """The synthesized speaking rate of each row's text (`None` for a clip without speech)."""
    speakers = int(getattr(vits.config, "num_speakers", 1) or 1)
    rates = []
    with preserved_rng_state():
        for row in rows:
            speaker = row["speaker_id"] if speakers > 1 else None
            waveform, _ = synthesize(vits, tokenizer, row["text"], seed=seed, speaker_id=speaker)
            rates.append(speaking_rate(row["source_text"], waveform, sampling_rate).get("speaking_rate"))
    return rates


def _median_ratio(numerators: list, denominators: list) -> float | None:
    ratios = [a / b for a, b in zip(numerators, denominators) if a and b]
    return float(np.median(ratios)) if ratios else None


def set_speaking_rate(vits, value: float) -> None:
    """The rate the model speaks at, in its config (what `save_pretrained` writes) and in the live model."""
    vits.config.speaking_rate = float(value)
    vits.speaking_rate = float(value)


def fit_speaking_rate(trainer, train_split, tokenizer) -> dict:
    """With `--fit_speaking_rate`, set the trained model's `speaking_rate` so that it speaks the training texts at
    their recordings' rate (module docstring); returns the `rate_fit_*` figures (empty without the flag, or when
    no clip could be measured, which is logged)."""
    args = trainer.args
    if not getattr(args, "fit_speaking_rate", False):
        return {}
    vits = trainer.model.vits
    sampling_rate = int(vits.config.sampling_rate)
    columns = ["text", "source_text", "waveform", "speaker_id"]
    rows = list(train_split.select(range(min(MAX_FIT_CLIPS, len(train_split)))).select_columns(columns))
    recorded = [
        speaking_rate(row["source_text"], np.asarray(row["waveform"], np.float32), sampling_rate).get("speaking_rate")
        for row in rows
    ]
    before_scale = float(vits.config.speaking_rate)
    before = _rates(vits, tokenizer, rows, sampling_rate, args.seed)
    ratio = _median_ratio(recorded, before)
    if ratio is None:
        logger.warning("--fit_speaking_rate: no training clip has measurable speech in both: speaking_rate kept")
        return {}
    set_speaking_rate(vits, before_scale * ratio)
    after = _rates(vits, tokenizer, rows, sampling_rate, args.seed)
    figures = {
        "rate_fit_clips": len(rows),
        "rate_fit_recordings_rate": float(np.mean([r for r in recorded if r])),
        "rate_fit_synthesized_rate": float(np.mean([r for r in before if r])),
        "rate_fit_speaking_rate_before": before_scale,
        "rate_fit_speaking_rate": before_scale * ratio,
        "rate_fit_synthesized_rate_after": float(np.mean([r for r in after if r])),
        "rate_fit_ratio_after": _median_ratio(after, recorded),
    }
    logger.info(
        "--fit_speaking_rate: %d training texts spoken at %.2f characters/s against their recordings' %.2f: "
        "speaking_rate %.4g -> %.4g, then %.2f characters/s (median ratio to the recordings %.3f)",
        len(rows),
        figures["rate_fit_synthesized_rate"],
        figures["rate_fit_recordings_rate"],
        before_scale,
        figures["rate_fit_speaking_rate"],
        figures["rate_fit_synthesized_rate_after"],
        figures["rate_fit_ratio_after"],
    )
    return figures
