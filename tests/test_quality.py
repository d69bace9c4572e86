"""The DNSMOS quality score (`recipe.data.quality`) and `--min_quality`: a noisy clip scores below its clean self, and
is dropped as `low_quality` by `prepare_datasets`; without the `quality` extra, the flag names how to install it.

The tests that run the model need the `quality` extra (speechmos, which ships the model, and onnxruntime)."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import DEMO_DIR, make_tiny_config

from recipe.training.arguments import DataArguments

RATE = 16000
WAVS = DEMO_DIR / "kmr_ljspeech" / "wavs"


def needs_quality_extra():
    pytest.importorskip("speechmos", reason='DNSMOS needs the quality extra: pip install -e ".[quality]"')
    pytest.importorskip("onnxruntime", reason='DNSMOS needs the quality extra: pip install -e ".[quality]"')


def with_noise(samples: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """`samples` with white noise at `snr_db` below their mean power."""
    power = float(np.mean(np.square(samples, dtype=np.float64)))
    noise = np.sqrt(power / 10 ** (snr_db / 10)) * np.random.default_rng(seed).standard_normal(len(samples))
    return np.clip(samples + noise, -1, 1).astype(np.float32)


def test_a_clean_clip_scores_above_itself_with_noise_at_0_db():
    needs_quality_extra()
    from recipe.data.quality import quality_scores

    clean = sf.read(WAVS / "KMR-0002.wav", dtype="float32")[0]
    scored, noisy = quality_scores(clean, RATE), quality_scores(with_noise(clean, 0), RATE)
    # benchmarks/quality_score.py: the demo clips' OVRL 1.5-3.0 clean, 1.2-1.6 with noise at 0 dB
    assert noisy.overall < scored.overall - 0.5
    assert noisy.background < scored.background - 1
    # the same clip at 22.05 kHz is resampled to DNSMOS's 16 kHz and scores about the same
    import soxr

    resampled = quality_scores(soxr.resample(clean, RATE, 22050).astype(np.float32), 22050)
    assert resampled.overall == pytest.approx(scored.overall, abs=0.1)


def test_min_quality_drops_the_noisy_clip_as_low_quality(tmp_path):
    """Ten demo clips, one with noise mixed at 5 dB, the SNR check off: with --min_quality 1.6 the noisy clip is
    `low_quality` and the clean ones stay; every clip has its score in data_clips.tsv and the report's spread."""
    needs_quality_extra()
    from transformers import VitsTokenizer

    from recipe.data.pipeline import format_report, prepare_datasets

    tokenizer = VitsTokenizer.from_pretrained(str(DEMO_DIR / "tiny_model"))
    config = make_tiny_config(vocab_size=len(tokenizer))
    folder = tmp_path / "lj"
    (folder / "wavs").mkdir(parents=True)
    lines = (DEMO_DIR / "kmr_ljspeech" / "metadata.csv").read_text(encoding="utf-8").splitlines()[:10]
    noisy = lines[0].split("|")[0]
    for line in lines:
        clip_id = line.split("|")[0]
        samples = sf.read(WAVS / f"{clip_id}.wav", dtype="float32")[0]
        sf.write(folder / "wavs" / f"{clip_id}.wav", with_noise(samples, 5) if clip_id == noisy else samples, RATE)
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def prepare(name, **overrides):
        # SNR off, so that the noisy clip reaches the quality check (it would be low_snr first)
        data_args = DataArguments(
            dataset_name=str(folder), eval_fraction=0.1, cache_dir=str(tmp_path / "cache"), min_snr_db=0, **overrides
        )
        features, report = prepare_datasets(data_args, tokenizer, config, str(tmp_path / name))
        with open(tmp_path / name / "data_clips.tsv", encoding="utf-8") as handle:
            rows = {Path(row["path"]).stem: row for row in csv.DictReader(handle, delimiter="\t")}
        return features, report, rows

    # the ten clips score 1.74-2.91 clean (espeak-ng, a synthetic voice: DNSMOS rates it low), the noisy one 1.42
    # (at 0 dB the detector finds no speech in it: `no_speech` comes first)
    features, report, rows = prepare("scored", min_quality=1.6)
    assert {clip: row["drop_reason"] for clip, row in rows.items() if row["drop_reason"]} == {noisy: "low_quality"}
    for split in report.values():
        assert split["seen"] == split["kept"] + sum(entry["count"] for entry in split["dropped"].values())
    scores = {clip: float(row["quality"]) for clip, row in rows.items()}
    assert scores[noisy] < 1.6 <= min(score for clip, score in scores.items() if clip != noisy)
    spreads = [entry["quality"] for split in report.values() for entry in split["screening"]["speakers"]]
    assert all(spread["min"] <= spread["median"] <= spread["max"] for spread in spreads)
    assert "low_quality" in format_report(report) and "DNSMOS" in format_report(report)

    # off (the default): a new cache (the flag is in the key), no score, no low_quality (the noisy clip's speech,
    # longer with the noise, may make it a rate outlier)
    features, report, rows = prepare("off")
    assert all(row["quality"] == "" for row in rows.values())
    assert {row["drop_reason"] for clip, row in rows.items() if clip != noisy} == {""}
    assert rows[noisy]["drop_reason"] in ("", "rate_outlier")
    assert all(entry["quality"] is None for split in report.values() for entry in split["screening"]["speakers"])
    assert "DNSMOS" not in format_report(report)


def test_min_quality_without_the_extra_names_the_flag_and_the_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "speechmos" else real_find_spec(name, *a)
    )
    with pytest.raises(ValueError, match=r'--min_quality .*pip install -e "\.\[quality\]"'):
        DataArguments(dataset_name="x", min_quality=2.5)
    DataArguments(dataset_name="x")  # off: nothing is needed
    from recipe.data.quality import require_quality_model
    from recipe.errors import MissingExtraError

    with pytest.raises(MissingExtraError, match=r"\.\[quality\]"):
        require_quality_model()


def test_min_quality_out_of_range_is_refused():
    for value in (-1, 6):
        with pytest.raises(ValueError, match="--min_quality"):
            DataArguments(dataset_name="x", min_quality=value)
